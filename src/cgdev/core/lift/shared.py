"""A sub-program walked once for many majors: the lifter's answer to a shared minor search.

Why: cgdev's compiler (and any decision tree) sends every major whose minor map differs from a
shared one at a few points into that shared map's search after testing its own points (the
``*:N`` column pattern, ``StepFn.with_points``).  Walking the shared search with the merged
region of every such major costs majors x breakpoints and yields the fully expanded policy
(issue 12: 1.46 million boxes for 10,000 rules).  The search only tests the minor, so the
executor walks it once for "any major" (``engine.Executor._defer``) and pairs each outcome (the
minors ``T`` a block decided) with the region that arrived (``Entry``): the block decided
``arrived ∩ (any major x T)`` (``Restricted``), computed only when read, and the policy is built
from the outcome once per major with ``StepFn.with_points`` (``assembly``).
"""

from __future__ import annotations

import bisect

from cgdev.core.lift import intervals as iv
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.lift.region import Region

Piece = tuple[int, int, IntervalSet]  # (major_lo, major_hi, minors)


class Entry:
    """The contexts ``live`` and the region that arrived at a shared sub-program together.

    ``restrict(T)`` is the region cut to minors in ``T``.  Most majors arrive with every minor but
    a few (their own points, tested before): an index of those holes finds the majors a ``T``
    touches, and the untouched ones stay one run of major ranges with ``T`` as their minors."""

    __slots__ = ("_holes", "_lows", "_reach", "_untouched", "allowed", "live", "pieces", "region", "walked")

    def __init__(
        self, live: int, region: Region, allowed: list[tuple[int, IntervalSet]], walked: int
    ) -> None:
        self.live = live
        self.region = region
        # what the walk allowed for the contexts it ran with (``walked``): (contexts, minors); one
        # list object for all the entries of one walk, so the policy builds its map once
        self.allowed = allowed
        self.walked = walked
        self.pieces: list[Piece] | None = None
        self._untouched: IntervalSet | None = None  # all majors, when the pieces are disjoint
        self._holes: list[tuple[int, int, int]] = []  # (lo, hi, piece) of minors a piece lacks
        self._lows: list[int] = []
        self._reach: list[int] = []

    def _index(self) -> list[Piece]:
        pieces = self.pieces = sorted(self.region.pieces())
        disjoint = all(pieces[i][0] > pieces[i - 1][1] for i in range(1, len(pieces)))
        if disjoint:
            self._untouched = iv.union_all([tuple((lo, hi) for lo, hi, _minors in pieces)])
            holes = sorted(
                (lo, hi, k)
                for k, (_mlo, _mhi, minors) in enumerate(pieces)
                for lo, hi in iv.complement(minors, iv.U32)
            )
            running = -1
            for lo, hi, _k in holes:
                running = max(running, hi)
                self._reach.append(running)
                self._lows.append(lo)
            self._holes = holes
        return pieces

    def restrict(self, minors: IntervalSet) -> list[Piece]:
        """The arrived region's pieces with minors in ``minors``."""
        pieces = self.pieces if self.pieces is not None else self._index()
        untouched = self._untouched
        if untouched is None:  # overlapping pieces: cut each one
            out = []
            for lo, hi, piece_minors in pieces:
                cut = iv.intersect(piece_minors, minors)
                if cut:
                    out.append((lo, hi, cut))
            return out
        touched: set[int] = set()
        holes, lows, reach = self._holes, self._lows, self._reach
        for lo, hi in minors:
            j = bisect.bisect_right(lows, hi) - 1
            while j >= 0 and reach[j] >= lo:
                if holes[j][1] >= lo:
                    touched.add(holes[j][2])
                j -= 1
        if not touched:
            return [(lo, hi, minors) for lo, hi in untouched]
        cut_pieces = []
        for k in sorted(touched):
            lo, hi, piece_minors = pieces[k]
            cut = iv.intersect(piece_minors, minors)
            if cut:
                cut_pieces.append((lo, hi, cut))
        rest = iv.minus(untouched, iv.union_all([tuple(pieces[k][:2] for k in touched)]))
        return sorted([*((lo, hi, minors) for lo, hi in rest), *cut_pieces])


class Restricted:
    """What one block of a shared sub-program decided for one ``Entry``: the entry's region with
    minors in ``minors``.  Quacks like a ``Region`` for ``assembly.Pieces`` (``pieces()``)."""

    __slots__ = ("entry", "minors")

    def __init__(self, entry: Entry, minors: IntervalSet) -> None:
        self.entry = entry
        self.minors = minors

    def pieces(self) -> list[Piece]:
        return self.entry.restrict(self.minors)
