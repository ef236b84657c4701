"""Rule reading: the terminals of each block of instructions -> one ``LiftedRule`` per block.

A block's own tests say the rule as its generator wrote it; where earlier blocks shadow part of
it, the rule is widened back to that plain rule whenever first-match order keeps it exact
(``_first_match_rules``), so a runc or crun chain reads as the rules in config.json.
"""

from __future__ import annotations

import bisect
from typing import Final

from cgdev.core.lift import intervals as iv
from cgdev.core.lift.assembly import Cells, Pieces
from cgdev.core.lift.engine import CTX_MASKS, CTX_TYPES, Terminal
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.lift.result import LiftedRule, single_or_any
from cgdev.core.lift.shared import Restricted
from cgdev.core.model import TYPE_OF_KERNEL

WIDEN_BUDGET: Final = 2_000_000  # piece comparisons spent on widening; beyond it, exact sets stay
# per set of contexts (a bitmask): the contexts of the types among them, and (types, masks) they
# hold; tables, because every block of a 100,000-rule program asks
_SAME_TYPE: Final = tuple(
    sum(1 << j for j in range(8) if any(live >> i & 1 and CTX_TYPES[i] == CTX_TYPES[j] for i in range(8)))
    for live in range(256)
)
_TYPES_MASKS: Final = tuple(
    (
        tuple(sorted({TYPE_OF_KERNEL[CTX_TYPES[i]] for i in range(8) if live >> i & 1})),
        tuple(sorted({CTX_MASKS[i] for i in range(8) if live >> i & 1})),
    )
    for live in range(256)
)


def lifted_rules(terminals: list[Terminal], pieces_of: Pieces, chain: bool) -> list[LiftedRule]:
    """One rule per block; ``chain`` (not a decision tree such as cgdev's) asks for the
    first-match widening, which a tree's leaves never pass and which would only cost time."""
    groups: dict[tuple[int, int, int], list[Terminal]] = {}
    for term in terminals:
        if isinstance(term.region, Restricted) and not pieces_of(term.region):
            continue  # a shared walk's block that none of the regions entering it reaches
        groups.setdefault((term.prov[0], term.prov[1], term.verdict), []).append(term)
    out: list[LiftedRule] = []
    majors: IntervalSet
    for (start, end, verdict), terms in sorted(groups.items()):
        if len(terms) == 1:  # the usual block: one terminal, often one piece (a point, a column)
            term = terms[0]
            live, accepted = term.live, term.prov[2]
            pieces = pieces_of(term.region)
            cells = [(live, pieces)]
            if len(pieces) == 1 and len(pieces[0][2]) <= iv.MAX_PIECES:  # an IntervalSet already
                lo, hi, minors = pieces[0]
                majors, remainder = ((lo, hi),), False
            else:
                majors, minors, remainder = _box_of(terms, pieces_of)
        else:
            live = accepted = 0
            for term in terms:
                live |= term.live
                accepted |= term.prov[2]
            majors, minors, remainder = _box_of(terms, pieces_of)
            cells = [(term.live, pieces_of(term.region)) for term in terms]
        # What the block's own tests accept, on the types that reach it: the rule as written.
        written = live | (accepted & _SAME_TYPE[live])
        types, masks = _TYPES_MASKS[written]
        out.append(
            LiftedRule(
                bool(verdict),
                types,
                masks,
                majors,
                minors,
                (start, end),
                remainder or written != live,
                cells=cells,
            )
        )
    return _first_match_rules(out) if chain else out


def _first_match_rules(rules: list[LiftedRule]) -> list[LiftedRule]:
    """Widen each block that is not yet a plain rule to the plainest rule that, in first-match
    order, still decides exactly what the block did.

    Rule ``i`` may be widened to box ``R`` when ``R`` holds everything block ``i`` decided and
    nothing a *later* block decides: then the first rule whose box holds a request is always the
    block that decided it.  Candidates go from the block's own single major/minor to ``*``.
    """
    index: DecidedIndex | None = None
    out = list(rules)
    for i, rule in enumerate(rules):
        if rule.rule() is not None and not rule.remainder:
            continue
        if rule.access is None or not rule.masks:
            continue
        contexts = sum(
            1 << ctx
            for ctx in range(8)
            if TYPE_OF_KERNEL[CTX_TYPES[ctx]] in rule.types and CTX_MASKS[ctx] in rule.masks
        )
        index = index or DecidedIndex([r.cells for r in rules])
        for majors, minors in _candidates(rule):
            if _box_holds(contexts, majors, minors, rule.cells) and not index.meets_after(
                i, contexts, majors, minors
            ):
                out[i] = LiftedRule(
                    rule.allow, rule.types, rule.masks, majors, minors, rule.insn_range,
                    remainder=False, shadowed=True, cells=rule.cells,
                )  # fmt: skip
                break
            if index.budget <= 0:
                return out
    return out


def _candidates(rule: LiftedRule) -> list[tuple[IntervalSet, IntervalSet]]:
    def options(values: IntervalSet | None) -> list[IntervalSet]:
        single = single_or_any(values)  # an int, None for "any", False for "not one value"
        return [((single, single),), iv.ALL_U32] if type(single) is int else [iv.ALL_U32]

    return [(majors, minors) for majors in options(rule.majors) for minors in options(rule.minors)]


def _box_holds(contexts: int, majors: IntervalSet, minors: IntervalSet, cells: Cells) -> bool:
    for live, pieces in cells:
        if live & ~contexts:
            return False
        for lo, hi, piece_minors in pieces:
            if iv.intersect(((lo, hi),), majors) != ((lo, hi),):
                return False
            if iv.minus(piece_minors, minors):
                return False
    return True


class DecidedIndex:
    """What every block decided, indexed by major, so that "does a later block decide anything in
    this box?" costs a dictionary look-up for a one-major box instead of a scan of every block
    (a 3,000-rule chain would otherwise take seconds).  ``*`` boxes still scan, within a budget."""

    def __init__(self, decided: list[Cells]) -> None:
        self.decided = decided
        self.budget = WIDEN_BUDGET
        self.points: dict[int, list[tuple[int, int, IntervalSet]]] = {}  # major -> (block, live, minors)
        # (block, live, pieces sorted by lo, their lows, running max of their highs)
        self.wide: list[tuple[int, int, list[tuple[int, int, IntervalSet]], list[int], list[int]]] = []
        for block, cells in enumerate(decided):
            for live, pieces in cells:
                wide = sorted(piece for piece in pieces if piece[0] != piece[1])
                for lo, hi, minors in pieces:
                    if lo == hi:
                        self.points.setdefault(lo, []).append((block, live, minors))
                if wide:
                    reach, running = [], -1
                    for _lo, hi, _minors in wide:
                        running = max(running, hi)
                        reach.append(running)
                    self.wide.append((block, live, wide, [lo for lo, _hi, _m in wide], reach))

    def meets_after(self, after: int, contexts: int, majors: IntervalSet, minors: IntervalSet) -> bool:
        if majors != iv.ALL_U32:
            ((major, _),) = majors
            return self._meets_major(after, contexts, major, minors)
        for cells in self.decided[after + 1 :]:
            for live, pieces in cells:
                if not live & contexts:
                    continue
                self.budget -= len(pieces)
                if any(iv.intersect(piece_minors, minors) for _lo, _hi, piece_minors in pieces):
                    return True
        return False

    def _meets_major(self, after: int, contexts: int, major: int, minors: IntervalSet) -> bool:
        # ``major`` is the block's own single major, always a key: the default is never used
        for block, live, piece_minors in self.points.get(major, ()):
            if block > after and live & contexts and iv.intersect(piece_minors, minors):
                return True
        for block, live, pieces, lows, reach in self.wide:
            if block <= after or not live & contexts:
                continue
            self.budget -= 1
            j = bisect.bisect_right(lows, major) - 1
            while j >= 0 and reach[j] >= major:
                _lo, hi, piece_minors = pieces[j]
                if hi >= major and iv.intersect(piece_minors, minors):
                    return True
                j -= 1
        return False


def _box_of(terms: list[Terminal], pieces_of: Pieces) -> tuple[IntervalSet, IntervalSet, bool]:
    """(majors, minors, remainder): the box the terminals decided, or its envelope (remainder)."""
    regions = list({id(t.region): t.region for t in terms}.values())
    per_region = [pieces_of(region) for region in regions]
    distinct_minors = {minors for pieces in per_region for _lo, _hi, minors in pieces}
    try:
        majors = iv.normalize((lo, hi) for pieces in per_region for lo, hi, _minors in pieces)
        minors = iv.normalize(p for m in distinct_minors for p in m)
    except iv.Inexact:
        return iv.ALL_U32, iv.ALL_U32, True
    exact = len(distinct_minors) == 1
    if exact and len(per_region) > 1:
        first = sorted(per_region[0])
        exact = all(sorted(pieces) == first for pieces in per_region[1:])
    return majors, minors, not exact
