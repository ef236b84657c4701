"""Policy assembly: the terminal states of the symbolic executor -> the exact ``Policy`` they allow.

Each terminal holds contexts x (major pieces x minor sets); the policy is their union, built by
sweeping interval end points once per type (so a 100,000-rule chain costs a sort, not a product).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cgdev.core.lift.engine import CTX_MASKS, CTX_TYPES, Terminal
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.lift.region import Region
from cgdev.core.model import REQUEST_MASKS, U32_MAX
from cgdev.core.policy import MajorMap, MinorMap, Policy, StepFn

Cells = list[tuple[int, list[tuple[int, int, IntervalSet]]]]
# what one block decided: (contexts, pieces (major_lo, major_hi, minors)) per region


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


class Pieces:
    """``Region.pieces()`` once per region object (terminals split by verdict share regions)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Region, list[tuple[int, int, IntervalSet]]]] = {}

    def __call__(self, region: Region) -> list[tuple[int, int, IntervalSet]]:
        hit = self._cache.get(id(region))  # a cache only (pieces() is pure): a miss is equivalent
        if hit is None:
            hit = self._cache[id(region)] = (region, region.pieces())
        return hit[1]


def policy_of_terminals(terminals: list[Terminal], pieces_of: Pieces) -> Policy:
    return policy_of_cells([(t.live, pieces_of(t.region)) for t in terminals if t.verdict == 1])


def policy_of_cells(cells: Sequence[tuple[int, list[tuple[int, int, IntervalSet]]]]) -> Policy:
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
