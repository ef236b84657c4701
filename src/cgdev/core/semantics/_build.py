"""Rule list -> Policy without evaluating every rule at every cell.

Every semantics cgdev reads decides a cell (type, major, minor) from the rules that *match* it, and
a rule matches through at most four "metas": (*:*), (*:minor), (major:*) and (major:minor).  When
the decision is an associative, commutative fold over the matching rules (max of "last index with
this bit", min of "first index matching this mask", OR of mask sets), each meta group can be
folded once and a cell is just the fold of its four group summaries.  That makes 10,000 rules a
few tens of milliseconds instead of rules x cells.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

from cgdev.core.model import DEV_TYPES, Rule
from cgdev.core.policy import MajorMap, MinorMap, Policy, StepFn

S = TypeVar("S")


Classify = Callable[[Sequence[S]], Callable[[S], Hashable]]


class Fold(Generic[S]):
    """How one semantics summarises the rules of a meta group and turns a summary into a mask set.

    ``classify`` (optional) is given the summaries of the ``*:minor`` groups and returns a key
    function on row summaries (``*:*`` folded with ``major:*``) such that two rows with the same
    key get the same mask set at every ``*:minor`` column.  Without it the key is the summary
    itself (right for folds whose summaries are few, such as OR of mask sets).
    """

    def __init__(
        self,
        summarise: Callable[[int, Rule], S],
        combine: Callable[[S, S], S],
        identity: S,
        finalise: Callable[[S], int],
        classify: Classify[S] | None = None,
    ) -> None:
        self.summarise = summarise
        self.combine = combine
        self.identity = identity
        self.finalise = finalise
        self.classify = classify


def rank_classifier(verdict: Callable[[int], bool]) -> Classify[tuple[int, ...]]:
    """``classify`` for folds whose summary is one rule code per slot and where, per slot, the
    winning code (max for last-match, min for first-match) decides by ``verdict(code)``.

    Why it is exact: at a column with code ``x`` a row with code ``c`` gets ``verdict(c)`` unless
    ``x`` wins, and only winning columns of the *opposite* verdict change anything.  For max and
    min alike, which columns those are is fixed by how many opposite-verdict column codes lie
    below ``c`` — so (verdict, that count) per slot is the key.  (Codes of distinct rules
    differ; equal codes are "no rule", which has one verdict.)
    """

    def classify(columns: Sequence[tuple[int, ...]]) -> Callable[[tuple[int, ...]], Hashable]:
        slots = len(columns[0]) if columns else 0
        by_verdict: list[tuple[list[int], list[int]]] = []
        for k in range(slots):
            codes = [column[k] for column in columns]
            by_verdict.append(
                (sorted(x for x in codes if not verdict(x)), sorted(x for x in codes if verdict(x)))
            )

        def key(summary: tuple[int, ...]) -> Hashable:
            out = []
            for k, code in enumerate(summary):
                v = verdict(code)
                opposite = by_verdict[k][0 if v else 1] if by_verdict else []
                out.append((v, bisect.bisect_left(opposite, code)))
            return tuple(out)

        return key

    return classify


def fold_policy(rules: Iterable[Rule], fold: Fold[S]) -> Policy:
    """The policy whose mask set at a cell is ``finalise`` of the fold of the rules matching it.

    ``type`` ``a`` matches both device types; ``None`` major/minor are wildcards.  The rule's
    position in ``rules`` is passed to ``summarise`` (semantics that depend on order encode it).
    """
    groups: dict[str, dict[int | None, dict[int | None, S]]] = {t: {} for t in DEV_TYPES}
    combine = fold.combine
    for index, rule in enumerate(rules):
        summary = fold.summarise(index, rule)
        for t in DEV_TYPES if rule.type == "a" else (rule.type,):
            by_minor = groups[t].setdefault(rule.major, {})
            old = by_minor.get(rule.minor)
            by_minor[rule.minor] = summary if old is None else combine(old, summary)
    return Policy.from_types({t: _major_map(groups[t], fold) for t in DEV_TYPES})


def _major_map(groups: dict[int | None, dict[int | None, S]], fold: Fold[S]) -> MajorMap:
    """Every major's minor map, built as a shared column map (what the ``*:N`` groups make of
    the major's row) spliced with the major's own points.

    Why: building each map from scratch costs majors x ``*:N`` groups (10,000 rules with 3 %
    of ``c *:N`` took seconds and 100,000 minutes); rows of one class share one column map.
    """
    wild = groups.get(None, {})
    any_any = wild.get(None, fold.identity)
    any_points = {n: s for n, s in wild.items() if n is not None}
    combine, finalise = fold.combine, fold.finalise
    key_of: Callable[[S], Hashable] = (
        fold.classify(list(any_points.values())) if fold.classify is not None else _identity
    )
    columns: dict[Hashable, MinorMap] = {}

    def minor_map(by_minor: dict[int | None, S]) -> MinorMap:
        base = combine(any_any, by_minor.get(None, fold.identity))
        key = key_of(base)
        shared = columns.get(key)
        if shared is None:
            points = {n: finalise(combine(base, s)) for n, s in any_points.items()}
            shared = columns[key] = StepFn.from_points(finalise(base), points)
        own: dict[int, int] = {}
        for n, s in by_minor.items():
            if n is not None:
                summary = base if n not in any_points else combine(base, any_points[n])
                own[n] = finalise(combine(summary, s))
        return shared.with_points(own)

    default = minor_map({})
    majors = {m: minor_map(by_minor) for m, by_minor in groups.items() if m is not None}
    return StepFn.from_points(default, majors)


def _identity(summary: S) -> Hashable:
    return summary
