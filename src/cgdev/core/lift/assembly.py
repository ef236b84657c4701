"""Policy assembly: the terminal states of the symbolic executor -> the exact ``Policy`` they allow.

Each terminal holds contexts x (major pieces x minor sets); the policy is their union, built by
sweeping interval end points once per type (so a 100,000-rule chain costs a sort, not a product).
Terminals of a shared sub-program (``shared``) are not expanded: what the sub-program allows is
one minor map per entry and type, and each major that arrived gets it spliced at its own few
points (``StepFn.with_points``), as the compiler built it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from typing import Final

from cgdev.core.lift import intervals as iv
from cgdev.core.lift.engine import CTX_MASKS, CTX_TYPES, Terminal
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.lift.region import Region
from cgdev.core.lift.shared import Entry, Restricted
from cgdev.core.model import REQUEST_MASKS, U32_MAX
from cgdev.core.policy import MajorMap, MinorMap, Policy, StepFn

Cells = list[tuple[int, list[tuple[int, int, IntervalSet]]]]
# what one block decided: (contexts, pieces (major_lo, major_hi, minors)) per region


class _Shared:
    """A shared sub-program's minor map in the major sweep: ``fn`` for the masks the walk ran
    with (``scope``), of which the entry's contexts keep ``mask``.  Hashed by identity, so the
    sweep's sets of active items never hash the map's breakpoints."""

    __slots__ = ("fn", "mask", "scope")

    def __init__(self, fn: MinorMap, mask: int, scope: int) -> None:
        self.fn = fn
        self.mask = mask
        self.scope = scope


Item = tuple[IntervalSet, "int | _Shared"]  # minors and what they allow there (mask bits)
Patch = tuple[int, int, list[tuple[int, int]]]  # lo, hi, the (start, value) pieces on [lo, hi]
BASES: Final = 8  # shared maps tried as the base a major's map is spliced from


class _Base:
    """The largest shared map of one type, and its restrictions to sets of masks (cached)."""

    def __init__(self, fn: MinorMap) -> None:
        self.fn = fn
        self._masked: dict[int, MinorMap] = {}

    def masked(self, mask: int) -> MinorMap:
        out = self._masked.get(mask)
        if out is None:
            out = self._masked[mask] = self.fn.map(lambda ms: ms & mask)
        return out


def _active_map(items: Iterable[Item], bases: list[_Base]) -> MinorMap:
    """The union of the items active on one major piece.

    Shared maps are read through a *base*, one of the largest shared maps: a major that tested a
    few minors of its own before entering a shared search (at its root or at sub-searches, whose
    maps agree with the root's on the minors they are entered with) gets the base spliced where
    its items make a difference (``_overlay``), which is at those few points.  A shared map that
    agrees with no base where it is entered is cut into plain items (exact, slower)."""
    plain: list[tuple[IntervalSet, int]] = []
    parts: dict[_Shared, list[IntervalSet]] = {}  # a major may enter one search by several paths
    for minors, value in items:
        if isinstance(value, _Shared):
            parts.setdefault(value, []).append(minors)
        else:
            plain.append((minors, value))
    by_base: dict[int, list[tuple[IntervalSet, IntervalSet, _Shared]]] = {}
    for value, sets in parts.items():
        minors = sets[0] if len(sets) == 1 else iv.union_all(sets)
        span = _fill_points(minors)
        for k, candidate in enumerate(bases):
            if all(_agrees(value.fn, candidate.masked(value.scope), lo, hi) for lo, hi in span):
                by_base.setdefault(k, []).append((minors, span, value))
                break
        else:
            plain.extend(_cut(value.fn, minors, value.mask))
    covered: list[tuple[IntervalSet, IntervalSet, _Shared]] = []  # (minors, span, item)
    if by_base:
        k = max(by_base, key=lambda k: len(by_base[k]))
        covered = by_base.pop(k)
        base = bases[k]
        for others in by_base.values():
            for minors, _span, value in others:
                plain.extend(_cut(value.fn, minors, value.mask))
    if not covered:
        return _minor_map(plain)
    mask = 0
    for _minors, _span, value in covered:
        mask |= value.mask
    # where the spans hold the base under every mask, the answer is ``base & mask``; elsewhere
    # (outside the spans, at their holes, under fewer masks, where plain items add) it is patched
    uneven = _uneven(covered, mask)
    edits = iv.union_all(
        [
            iv.complement(iv.union_all(span for _m, span, _v in covered), U32_MAX),
            *(iv.minus(span, minors) for minors, span, _v in covered),
            *(m for m, _ in plain),
            uneven,
        ]
    )
    background = base.masked(mask)
    if not edits:
        return background
    own = _minor_map(plain) if plain else None
    patches: list[Patch] = []
    for lo, hi in edits:
        xs = {lo}
        if lo != hi:
            for minors, _span, value in covered:
                for cut_lo, cut_hi in iv.intersect(minors, ((lo, hi),)):
                    xs.update((cut_lo, cut_hi + 1))
                    xs.update(_starts_within(value.fn, cut_lo, cut_hi))
            if own is not None:
                xs.update(_starts_within(own, lo, hi))
        pieces: list[tuple[int, int]] = []
        for x in sorted(x for x in xs if x <= hi):
            v = own.at(x) if own is not None else 0
            for minors, _span, value in covered:
                if iv.contains(minors, x):
                    v |= value.fn.at(x) & value.mask
            if not pieces or pieces[-1][1] != v:
                pieces.append((x, v))
        patches.append((lo, hi, pieces))
    return _overlay(background, patches)


def _uneven(covered: list[tuple[IntervalSet, IntervalSet, _Shared]], mask: int) -> IntervalSet:
    """The minors inside some span where the spans holding them give fewer masks than ``mask``."""
    if all(value.mask == mask for _m, _s, value in covered):
        return ()
    cuts = sorted({b for _m, span, _v in covered for lo, hi in span for b in (lo, hi + 1)})
    out = []
    for lo, nxt in itertools.pairwise(cuts):
        got = 0
        inside = False
        for _minors, span, value in covered:
            if iv.contains(span, lo):
                got |= value.mask
                inside = True
        if inside and got != mask:
            out.append((lo, nxt - 1))
    return iv.union_all([tuple(out)])


def _starts_within(fn: MinorMap, lo: int, hi: int) -> tuple[int, ...]:
    """The breakpoints of ``fn`` in ``(lo, hi]``."""
    return fn.starts[bisect.bisect_right(fn.starts, lo) : bisect.bisect_right(fn.starts, hi)]


def _fill_points(minors: IntervalSet) -> IntervalSet:
    """``minors`` with its single-value gaps filled: the ranges a search was entered on."""
    out: list[tuple[int, int]] = []
    for lo, hi in minors:
        if out and lo == out[-1][1] + 2:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _agrees(fn: MinorMap, other: MinorMap, lo: int, hi: int) -> bool:
    """Whether two maps are equal on ``[lo, hi]`` (tuple slices: compared at C speed)."""
    if fn is other:
        return True
    if fn.at(lo) != other.at(lo):
        return False
    a0, a1 = bisect.bisect_right(fn.starts, lo), bisect.bisect_right(fn.starts, hi)
    b0, b1 = bisect.bisect_right(other.starts, lo), bisect.bisect_right(other.starts, hi)
    return fn.starts[a0:a1] == other.starts[b0:b1] and fn.values[a0:a1] == other.values[b0:b1]


def _cut(fn: MinorMap, minors: IntervalSet, mask: int) -> list[tuple[IntervalSet, int]]:
    """``fn & mask`` on ``minors`` as plain items (one per piece that allows something)."""
    out: list[tuple[IntervalSet, int]] = []
    starts, values = fn.starts, fn.values
    for lo, hi in minors:
        i = bisect.bisect_right(starts, lo) - 1
        while i < len(starts) and starts[i] <= hi:
            if values[i] & mask:
                end = starts[i + 1] - 1 if i + 1 < len(starts) else U32_MAX
                out.append((((max(starts[i], lo), min(end, hi)),), values[i] & mask))
            i += 1
    return out


def _overlay(fn: MinorMap, patches: list[Patch]) -> MinorMap:
    """``fn`` with the given pieces on the (sorted, disjoint, non-adjacent) patched ranges.

    Like ``StepFn.with_points`` for ranges: the pieces between patches are copied as tuple slices,
    and only the seams are checked for equal neighbours."""
    starts, values = fn.starts, fn.values
    out_s: list[int] = []
    out_v: list[int] = []
    seams: list[int] = []
    taken = 0  # the first piece of ``fn`` not yet copied
    for lo, hi, pieces in patches:
        first = bisect.bisect_left(starts, lo)
        if first > taken:
            seams.append(len(out_s))
            out_s.extend(starts[taken:first])
            out_v.extend(values[taken:first])
        seams.append(len(out_s))
        for start, value in pieces:
            out_s.append(start)
            out_v.append(value)
        if hi >= U32_MAX:
            taken = len(starts)
            break
        resume = bisect.bisect_right(starts, hi + 1) - 1  # the piece of ``fn`` holding hi + 1
        seams.append(len(out_s))
        out_s.append(hi + 1)
        out_v.append(values[resume])
        taken = resume + 1
    seams.append(len(out_s))
    out_s.extend(starts[taken:])
    out_v.extend(values[taken:])
    for j in sorted(set(seams), reverse=True):
        if 0 < j < len(out_s) and out_v[j] == out_v[j - 1]:
            del out_s[j], out_v[j]
    return StepFn(tuple(out_s), tuple(out_v))


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


def _major_map(items: list[tuple[int, int, IntervalSet, int | _Shared]]) -> MajorMap:
    adds: dict[int, list[int]] = {}
    removes: dict[int, list[int]] = {}
    for idx, (lo, hi, _minors, _bits) in enumerate(items):
        adds.setdefault(lo, []).append(idx)
        if hi < U32_MAX:
            removes.setdefault(hi + 1, []).append(idx)
    points = sorted({0, *adds, *removes})
    active: dict[int, Item] = {}
    cache: dict[frozenset[Item], MinorMap] = {}
    fns = {id(item[3].fn): item[3].fn for item in items if isinstance(item[3], _Shared)}
    # the largest maps: the others are mostly their parts (sub-searches)
    bases = [_Base(fn) for fn in sorted(fns.values(), key=lambda fn: -len(fn.starts))[:BASES]]
    pieces: list[tuple[int, MinorMap]] = []
    for point in points:
        for idx in removes.get(point, ()):
            del active[idx]
        for idx in adds.get(point, ()):
            active[idx] = (items[idx][2], items[idx][3])
        key = frozenset(active.values())
        minor_map = cache.get(key)
        if minor_map is None:
            minor_map = cache[key] = _active_map(key, bases)
        pieces.append((point, minor_map))
    return StepFn.from_pieces(pieces)


class Pieces:
    """``Region.pieces()`` once per region object (terminals split by verdict share regions)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Region | Restricted, list[tuple[int, int, IntervalSet]]]] = {}

    def __call__(self, region: Region | Restricted) -> list[tuple[int, int, IntervalSet]]:
        hit = self._cache.get(id(region))  # a cache only (pieces() is pure): a miss is equivalent
        if hit is None:
            hit = self._cache[id(region)] = (region, region.pieces())
        return hit[1]


def policy_of_terminals(terminals: list[Terminal], pieces_of: Pieces) -> Policy:
    cells = []
    entries: dict[int, Entry] = {}
    for t in terminals:
        region = t.region
        if isinstance(region, Restricted):
            entries[id(region.entry)] = region.entry
        elif t.verdict == 1:
            cells.append((t.live, pieces_of(region)))
    items = _items_of_cells(cells)
    walked: dict[tuple[int, int], MinorMap] = {}  # (walk, type) -> what it allows, all contexts
    canonical: dict[MinorMap, MinorMap] = {}  # equal maps of different walks: one object
    values: dict[tuple[int, int, int], _Shared] = {}
    for entry in entries.values():
        entry_pieces = entry.pieces if entry.pieces is not None else entry.region.pieces()
        for kernel_type in (1, 2):
            mask = _bits(entry.live, kernel_type)
            scope = _bits(entry.walked, kernel_type)
            fn = walked.get((id(entry.allowed), kernel_type))
            if fn is None:
                fn = _minor_map((minors, _bits(live, kernel_type)) for live, minors in entry.allowed)
                fn = walked[(id(entry.allowed), kernel_type)] = canonical.setdefault(fn, fn)
            if not mask or not any(ms & mask for ms in fn.values):
                continue
            value = values.get((id(fn), mask, scope))
            if value is None:  # one object per map and mask: a major's paths join in the sweep
                value = values[(id(fn), mask, scope)] = _Shared(fn, mask, scope)
            items[kernel_type].extend((lo, hi, minors, value) for lo, hi, minors in entry_pieces)
    return Policy(_major_map(items[1]), _major_map(items[2]))


def _bits(live: int, kernel_type: int) -> int:
    """The request masks (as mask-set bits) of the contexts in ``live`` of one type."""
    bits = 0
    for i in range(8):
        if live >> i & 1 and CTX_TYPES[i] == kernel_type:
            bits |= 1 << CTX_MASKS[i]
    return bits


def policy_of_cells(cells: Sequence[tuple[int, list[tuple[int, int, IntervalSet]]]]) -> Policy:
    """The set of requests the cells (contexts x pieces) hold, as a policy that allows them."""
    items = _items_of_cells(cells)
    return Policy(_major_map(items[1]), _major_map(items[2]))


def _items_of_cells(
    cells: Sequence[tuple[int, list[tuple[int, int, IntervalSet]]]],
) -> dict[int, list[tuple[int, int, IntervalSet, int | _Shared]]]:
    items: dict[int, list[tuple[int, int, IntervalSet, int | _Shared]]] = {1: [], 2: []}
    for live, pieces in cells:
        for kernel_type in (1, 2):
            bits = _bits(live, kernel_type)
            if bits:
                items[kernel_type].extend((lo, hi, minors, bits) for lo, hi, minors in pieces)
    return items
