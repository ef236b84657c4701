"""Lifting: a device program -> the exact policy it enforces, its rules, and who generated it.

``lift`` symbolically executes the program (``engine``) and assembles the terminal states into a
canonical ``Policy`` (so ``lift(p) == lift(q)`` is semantic equality of programs), a list of
``LiftedRule`` (each the region one block of instructions decided, with that block's instruction
range), and the generator's name.  A program it cannot follow exactly is *opaque*, with the
reason; its verdicts are then only available concretely, through ``decide`` (the interpreter).
"""

from __future__ import annotations

import bisect
import gc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cgdev.core import interp
from cgdev.core.fingerprint import is_cgdev_program
from cgdev.core.isa import BPF_REG_AX, CLASS_JMP, JMP_OPS, OPCODE_EXIT, Insn, jump_target
from cgdev.core.lift import intervals as iv
from cgdev.core.lift.engine import CTX_MASKS, CTX_TYPES, Opaque, Terminal, execute
from cgdev.core.lift.generators import recognise
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.lift.region import Region
from cgdev.core.model import (
    KERNEL_TYPE,
    REQUEST_MASKS,
    TYPE_OF_KERNEL,
    U32_MAX,
    Request,
    Rule,
    access_to_str,
    maskset_for_bits,
)
from cgdev.core.policy import MajorMap, MinorMap, Policy, StepFn

__all__ = ["Decision", "LiftResult", "LiftedRule", "lift"]


def _format_set(values: IntervalSet | None, limit: int = 6) -> str:
    if values is None or values == iv.ALL_U32:
        return "*"
    parts = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in values[:limit]]
    if len(values) > limit:
        parts.append(f"...(+{len(values) - limit})")
    return ",".join(parts) if parts else "{}"


Cells = list[tuple[int, list[tuple[int, int, IntervalSet]]]]
# what one block decided: (contexts, pieces (major_lo, major_hi, minors)) per region
EXACT_TEXT_RULES: Final = 3  # a remainder block whose decided set renders in this many rules says it


@dataclass(frozen=True, slots=True)
class LiftedRule:
    """One block of instructions as a rule; the list, read top-down with the first match deciding
    the whole request, is the program.

    That reading is why a block shadowed in part by earlier ones (a chain's final ``r0 = 0; exit``,
    a wildcard after exact rules, systemd's ``1:3 rwm`` after ``char-* m``) can still print as the
    plain rule its generator wrote: the box types x majors x minors x ``masks`` is widened to that
    rule whenever the widening only covers requests earlier rules decide (``shadowed`` is then
    True).  Where no such rule exists ``remainder`` is True: the block decided the box *minus*
    what other blocks decided, and the sets are only the envelope.
    """

    allow: bool
    types: tuple[str, ...]
    masks: tuple[int, ...]
    majors: IntervalSet | None
    minors: IntervalSet | None
    insn_range: tuple[int, int]
    remainder: bool = False
    shadowed: bool = False
    cells: Cells = field(default_factory=list, compare=False, repr=False)  # what it decided, exactly

    @property
    def type(self) -> str:
        return self.types[0] if len(self.types) == 1 else "a"

    @property
    def access(self) -> int | None:
        """Rule access bits whose subset test lets exactly ``masks`` through, or None."""
        bits = 0
        for mask in self.masks:
            bits |= mask
        wanted = sum(1 << m for m in self.masks)
        return bits if maskset_for_bits(bits) == wanted else None

    def rule(self) -> Rule | None:
        """The single OCI-style rule this block is in first-match order, when it is one (never
        for a ``remainder``: its sets are only an envelope of what it decided)."""
        access = self.access
        if access is None or not self.masks or self.remainder:
            return None
        major = _single_or_any(self.majors)
        minor = _single_or_any(self.minors)
        if major is False or minor is False:
            return None
        return Rule(self.allow, self.type, major, minor, access)  # type: ignore[arg-type]

    def __str__(self) -> str:
        access = self.access
        acc = (
            access_to_str(access)
            if access is not None
            else "masks " + "/".join(access_to_str(m) for m in self.masks)
        )
        verb = "allow" if self.allow else "deny"
        majors, minors = self.majors, self.minors
        if self.remainder:
            exact = self._exact_text()
            if exact is not None:
                return f"{verb} {exact}"
            majors, minors = _span(majors), _span(minors)  # the holes are what other blocks decided
        text = f"{verb} {self.type} {_format_set(majors)}:{_format_set(minors)} {acc}"
        return text + (" (except what other blocks decided)" if self.remainder else "")

    def _exact_text(self) -> str | None:
        """What a leaf of a decision tree decided, when a few plain rules say it exactly."""
        if not self.cells:
            return None
        from cgdev.core.render import to_rules

        rendering = to_rules(_policy_of_cells(self.cells))
        rendered = rendering.rules
        if rendering.warnings or not rendered or len(rendered) > EXACT_TEXT_RULES:
            return None  # a mask set rules cannot say (w and rw but not r), or too many rules
        if not all(r.allow for r in rendered):
            return None
        return ", ".join(str(r).removeprefix("allow ") for r in rendered)

    def matches(self, request: Request) -> bool:
        """Whether the rule's box holds ``request`` (first match decides, see the class doc)."""
        return (
            request.type in self.types
            and request.access in self.masks
            and (self.majors is None or iv.contains(self.majors, request.major))
            and (self.minors is None or iv.contains(self.minors, request.minor))
        )

    def to_json(self) -> dict[str, Any]:
        rule = self.rule()
        return {
            "allow": self.allow,
            "type": self.type,
            "majors": None if self.majors is None else [list(p) for p in self.majors],
            "minors": None if self.minors is None else [list(p) for p in self.minors],
            "access": access_to_str(self.access) if self.access is not None else None,
            "masks": [access_to_str(m) for m in self.masks],
            "insn_range": list(self.insn_range),
            "remainder": self.remainder,
            "shadowed": self.shadowed,
            "rule": str(rule) if rule is not None else None,
            "text": str(self),
        }


def _span(values: IntervalSet | None) -> IntervalSet | None:
    return ((values[0][0], values[-1][1]),) if values else values


def _single_or_any(values: IntervalSet | None) -> int | bool | None:
    if values is None or values == iv.ALL_U32:
        return None
    if len(values) == 1 and values[0][0] == values[0][1]:
        return values[0][0]
    return False


@dataclass(frozen=True, slots=True)
class Decision:
    """Which block decided one request: ``rule`` is None for opaque programs."""

    allowed: bool
    rule: LiftedRule | None
    insn_range: tuple[int, int]
    executed: int


@dataclass(slots=True)
class LiftResult:
    insns: tuple[Insn, ...]
    policy: Policy | None
    opaque: str | None
    generator: str
    rules: list[LiftedRule] = field(default_factory=list)
    states: int = 0

    @property
    def reads_as_rules(self) -> bool:
        """Whether ``rules``, read top-down with the first match deciding, are the program (true
        for rule chains: runc, crun, systemd, hook prefixes; a decision tree's leaves are not)."""
        return self.policy is not None and not any(rule.remainder for rule in self.rules)

    def first_match(self, request: Request) -> LiftedRule:
        """The first rule whose box holds ``request``; meaningful only when ``reads_as_rules``."""
        return next(rule for rule in self.rules if rule.matches(request))

    def decide(self, request: Request) -> Decision:
        """Run the request concretely and name the block (and lifted rule) that decided it."""
        path: list[tuple[int, bool]] = []
        outcome = interp.run(self.insns, request, checked=True, path=path)
        insn_range = _deciding_block(self.insns, path)
        ctx = _ctx_index(request)
        rule = None
        for candidate in self.rules:
            if (
                candidate.insn_range == insn_range
                and candidate.allow == bool(outcome.verdict)
                and TYPE_OF_KERNEL[CTX_TYPES[ctx]] in candidate.types
                and request.access in candidate.masks
            ):
                rule = candidate
                break
        return Decision(bool(outcome.verdict), rule, insn_range, outcome.executed)

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "instructions": len(self.insns),
            "opaque": self.opaque,
            "rules": [r.to_json() for r in self.rules],
            "policy": None if self.policy is None else self.policy.to_json(),
        }


def _ctx_index(request: Request) -> int:
    return (KERNEL_TYPE[request.type] - 1) * len(REQUEST_MASKS) + REQUEST_MASKS.index(request.access)


def _deciding_block(insns: Sequence[Insn], path: Sequence[tuple[int, bool]]) -> tuple[int, int]:
    """The same block bounds the engine tracks: a block starts where a taken conditional jump
    lands (or at 0) and ends at its first ``goto`` or ``exit``."""
    start, end = 0, -1
    ja = CLASS_JMP | JMP_OPS["ja"]
    for pc, jumped in path:
        if jumped:
            start, end = jump_target(insns, pc), -1
        elif end < 0 and insns[pc].code in (ja, OPCODE_EXIT, 0x06):
            end = pc
    return start, end


# -- assembling the results ----------------------------------------------------------------------


def _minor_map(items: Iterable[tuple[IntervalSet, int]]) -> MinorMap:
    deltas: dict[int, list[int]] = {}
    for minors, bits in items:
        for lo, hi in minors:
            deltas.setdefault(lo, []).append(bits)
            if hi < U32_MAX:
                deltas.setdefault(hi + 1, []).append(-bits)
    counts = [0] * 8
    pieces: list[tuple[int, int]] = []
    if 0 not in deltas:
        pieces.append((0, 0))
    for point in sorted(deltas):
        for bits in deltas[point]:
            sign = 1 if bits > 0 else -1
            for m in REQUEST_MASKS:
                if abs(bits) >> m & 1:
                    counts[m] += sign
        pieces.append((point, sum(1 << m for m in REQUEST_MASKS if counts[m] > 0)))
    return StepFn.from_pieces(pieces)


def _major_map(items: list[tuple[int, int, IntervalSet, int]]) -> MajorMap:
    adds: dict[int, list[int]] = {}
    removes: dict[int, list[int]] = {}
    for idx, (lo, hi, _minors, _bits) in enumerate(items):
        adds.setdefault(lo, []).append(idx)
        if hi < U32_MAX:
            removes.setdefault(hi + 1, []).append(idx)
    points = sorted({0, *adds, *removes})
    active: dict[int, tuple[IntervalSet, int]] = {}
    cache: dict[frozenset[tuple[IntervalSet, int]], MinorMap] = {}
    pieces: list[tuple[int, MinorMap]] = []
    for point in points:
        for idx in removes.get(point, ()):
            del active[idx]
        for idx in adds.get(point, ()):
            active[idx] = (items[idx][2], items[idx][3])
        key = frozenset(active.values())
        minor_map = cache.get(key)
        if minor_map is None:
            minor_map = cache[key] = _minor_map(key)
        pieces.append((point, minor_map))
    return StepFn.from_pieces(pieces)


class _Pieces:
    """``Region.pieces()`` once per region object (terminals split by verdict share regions)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Region, list[tuple[int, int, IntervalSet]]]] = {}

    def __call__(self, region: Region) -> list[tuple[int, int, IntervalSet]]:
        hit = self._cache.get(id(region))
        if hit is None:
            hit = self._cache[id(region)] = (region, region.pieces())
        return hit[1]


def _policy(terminals: list[Terminal], pieces_of: _Pieces) -> Policy:
    return _policy_of_cells([(t.live, pieces_of(t.region)) for t in terminals if t.verdict == 1])


def _policy_of_cells(cells: Sequence[tuple[int, list[tuple[int, int, IntervalSet]]]]) -> Policy:
    """The set of requests the cells (contexts x pieces) hold, as a policy that allows them."""
    items: dict[int, list[tuple[int, int, IntervalSet, int]]] = {1: [], 2: []}
    for live, pieces in cells:
        for kernel_type in (1, 2):
            bits = 0
            for i in range(8):
                if live >> i & 1 and CTX_TYPES[i] == kernel_type:
                    bits |= 1 << CTX_MASKS[i]
            if bits:
                items[kernel_type].extend((lo, hi, minors, bits) for lo, hi, minors in pieces)
    return Policy(_major_map(items[1]), _major_map(items[2]))


WIDEN_BUDGET: Final = 2_000_000  # piece comparisons spent on widening; beyond it, exact sets stay


def _rules(terminals: list[Terminal], pieces_of: _Pieces, chain: bool) -> list[LiftedRule]:
    """One rule per block; ``chain`` (not a decision tree such as cgdev's) asks for the
    first-match widening, which a tree's leaves never pass and which would only cost time."""
    groups: dict[tuple[int, int, int], list[Terminal]] = {}
    for term in terminals:
        groups.setdefault((term.prov[0], term.prov[1], term.verdict), []).append(term)
    out: list[LiftedRule] = []
    for (start, end, verdict), terms in sorted(groups.items()):
        live = accepted = 0
        for term in terms:
            live |= term.live
            accepted |= term.prov[2]
        # What the block's own tests accept, on the types that reach it: the rule as written.
        reaching_types = {CTX_TYPES[i] for i in range(8) if live >> i & 1}
        written = live | sum(1 << i for i in range(8) if accepted >> i & 1 and CTX_TYPES[i] in reaching_types)
        types = tuple(sorted({TYPE_OF_KERNEL[CTX_TYPES[i]] for i in range(8) if written >> i & 1}))
        masks = tuple(sorted({CTX_MASKS[i] for i in range(8) if written >> i & 1}))
        majors, minors, remainder = _box_of(terms, pieces_of)
        shadowed = written != live
        cells = [(term.live, pieces_of(term.region)) for term in terms]
        out.append(
            LiftedRule(
                bool(verdict), types, masks, majors, minors, (start, end), remainder or shadowed, cells=cells
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
    index: _DecidedIndex | None = None
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
        index = index or _DecidedIndex([r.cells for r in rules])
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
        single = _single_or_any(values)  # an int, None for "any", False for "not one value"
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


class _DecidedIndex:
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


def _box_of(terms: list[Terminal], pieces_of: _Pieces) -> tuple[IntervalSet, IntervalSet, bool]:
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


def lift(insns: Sequence[Insn]) -> LiftResult:
    """Lift a program; raises ``ProgramError`` for programs the kernel would refuse to load."""
    program = tuple(insns)
    if program and all(insn == Insn(0) for insn in program):
        return LiftResult(
            program,
            None,
            "all instruction bytes are zero: a blinded or restricted dump (bpf_jit_harden)",
            "unknown",
        )
    if any(insn.dst == BPF_REG_AX or insn.src == BPF_REG_AX for insn in program):
        return LiftResult(
            program, None, "constants are blinded (JIT hardening rewrote them through AX)", "unknown"
        )
    interp.check(program)
    generator = recognise(program, cgdev=is_cgdev_program(program))
    # The executor allocates many small, acyclic objects; the cyclic collector only slows it down.
    collecting = gc.isenabled()
    gc.disable()
    try:
        executor_terminals = execute(program)
        pieces_of = _Pieces()
        policy = _policy(executor_terminals, pieces_of)
        rules = _rules(executor_terminals, pieces_of, chain=generator != "cgdev")
    except Opaque as err:
        return LiftResult(program, None, err.reason, generator)
    finally:
        if collecting:
            gc.enable()
    return LiftResult(program, policy, None, generator, rules)
