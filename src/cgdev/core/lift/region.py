"""Path conditions over (major, minor): a union of boxes, built for long rule chains.

Why this shape: runtimes emit one block per rule, ``if major != M goto next``.  Every block splits
the set of majors still possible into "is M" and "is not M"; walking a 10,000-rule chain with
copied interval sets is quadratic.  Here the "not M" side only adds M to a mutable exclusion set
(O(1)), a column for a single major lives in a dict keyed by that major (O(1) lookup when a later
block tests the same major), and states that reach the same instruction are merged by joining
their regions instead of being explored separately.  A region is owned by exactly one state;
whoever splits or merges it may mutate it.
"""

from __future__ import annotations

from collections.abc import Callable

from cgdev.core.lift import intervals as iv
from cgdev.core.lift.intervals import IntervalSet


class ValueSet:
    """A set of u32 values: ``base`` (immutable intervals) minus ``excluded`` points (mutable).

    Owned by exactly one region entry, so "not equal to C" is an O(1) in-place exclusion."""

    __slots__ = ("base", "count", "excluded")

    def __init__(self, base: IntervalSet, excluded: set[int] | None = None) -> None:
        self.base = base
        self.excluded = excluded if excluded is not None else set()
        if len(base) == 1:
            self.count = base[0][1] - base[0][0] + 1 - len(self.excluded)
        else:
            self.count = iv.size(base) - len(self.excluded)

    def __contains__(self, x: int) -> bool:
        return x not in self.excluded and iv.contains(self.base, x)

    def exclude(self, x: int) -> None:
        if x in self:
            self.excluded.add(x)
            self.count -= 1

    def materialize(self) -> IntervalSet:
        if not self.excluded:
            return self.base
        if len(self.base) == 1:  # the common case: one range with points taken out
            lo, hi = self.base[0]
            out = []
            for x in sorted(self.excluded):
                if x > lo:
                    out.append((lo, x - 1))
                lo = x + 1
            if lo <= hi:
                out.append((lo, hi))
            return tuple(out)
        holes = tuple((x, x) for x in sorted(self.excluded))
        return iv.minus(self.base, holes)

    def copy(self) -> ValueSet:
        return ValueSet(self.base, set(self.excluded))

    def single(self) -> int | None:
        if self.count != 1:
            return None
        for lo, hi in self.materialize():
            return lo if lo == hi else None
        return None  # pragma: no cover


def _point(x: int) -> ValueSet:
    return ValueSet(((x, x),))


def _split_at_one_point(
    taken: IntervalSet, rest: IntervalSet, split_point: Callable[[int], tuple[Region, Region]]
) -> tuple[Region, Region] | None:
    """The cheap split when ``taken`` or its complement is a single value (a rule chain's
    ``== N`` test and its negation); None otherwise."""
    point = _single_point(taken)
    if point is not None:
        return split_point(point)
    point = _single_point(rest)
    if point is not None:
        inside, outside = split_point(point)
        return outside, inside
    return None


def _single_point(taken: IntervalSet) -> int | None:
    return taken[0][0] if len(taken) == 1 and taken[0][0] == taken[0][1] else None


class Region:
    """``points[major] = minors`` for single-major columns, plus ``boxes`` of (majors, minors).

    ``pending[major]`` holds minor sets joined into an existing column but not yet merged into
    it: a leaf block shared by thousands of paths (a decision tree's ``w0 = 1; exit``) receives
    one join per path, and merging each at once would re-sort the growing column every time
    (quadratic; issue 12's 10,000-rule lists spent most of their lift there).  They are merged
    in one sort when the region is next split or read (``_flush``).
    """

    __slots__ = ("boxes", "pending", "points")

    def __init__(
        self,
        points: dict[int, ValueSet] | None = None,
        boxes: list[tuple[ValueSet, ValueSet]] | None = None,
    ) -> None:
        self.points = points if points is not None else {}
        self.boxes = boxes if boxes is not None else []
        self.pending: dict[int, list[IntervalSet]] = {}

    def _flush(self) -> None:
        points = self.points
        for major, parts in self.pending.items():
            parts.append(points[major].materialize())
            points[major] = ValueSet(iv.union_all(parts))
        self.pending = {}

    @staticmethod
    def everything() -> Region:
        return Region({}, [(ValueSet(iv.ALL_U32), ValueSet(iv.ALL_U32))])

    def is_empty(self) -> bool:
        return not self.points and not self.boxes

    def copy(self) -> Region:
        if self.pending:
            self._flush()
        return Region(
            {major: minors.copy() for major, minors in self.points.items()},
            [(majors.copy(), minors.copy()) for majors, minors in self.boxes],
        )

    def _add_point(self, major: int, minors: ValueSet) -> None:
        if minors.count <= 0:
            return
        if major not in self.points:
            self.points[major] = minors
        else:
            parts = self.pending.get(major)
            if parts is None:
                self.pending[major] = [minors.materialize()]
            else:
                parts.append(minors.materialize())

    def _add_box(self, majors: ValueSet, minors: ValueSet) -> None:
        if minors.count <= 0 or majors.count <= 0:
            return
        single = majors.single() if majors.count == 1 else None
        if single is not None:
            self._add_point(single, minors)
        else:
            self.boxes.append((majors, minors))

    def absorb(self, other: Region) -> Region:
        """Union with a disjoint region (another path reaching the same state); consumes both."""
        big, small = (self, other) if len(self.points) >= len(other.points) else (other, self)
        for major, minors in small.points.items():
            big._add_point(major, minors)
        for major, parts in small.pending.items():
            big.pending.setdefault(major, []).extend(parts)
        big.boxes.extend(small.boxes)
        return big

    # -- splitting ----------------------------------------------------------------------------

    def split_major(self, taken: IntervalSet) -> tuple[Region, Region]:
        """(the part whose major is in ``taken``, the rest); consumes ``self``."""
        if self.pending:
            self._flush()
        rest = iv.complement(taken, iv.U32)
        by_point = _split_at_one_point(taken, rest, self.split_major_point)
        if by_point is not None:
            return by_point
        yes, no = Region(), Region()
        for major, minors in self.points.items():
            (yes if iv.contains(taken, major) else no).points[major] = minors
        for majors, minors in self.boxes:
            whole = majors.materialize()
            inside, outside = iv.intersect(whole, taken), iv.intersect(whole, rest)
            if inside and outside:
                yes._add_box(ValueSet(inside), minors.copy())
                no._add_box(ValueSet(outside), minors)
            elif inside:
                yes._add_box(majors, minors)
            else:
                no._add_box(majors, minors)
        return yes, no

    def split_major_point(self, major: int) -> tuple[Region, Region]:
        if self.pending:
            self._flush()
        column = self.points.pop(major, None)
        inside = Region({major: column} if column is not None else {})
        kept = []
        for majors, minors in self.boxes:
            if major in majors:
                majors.exclude(major)
                inside._add_point(major, minors.copy() if majors.count > 0 else minors)
            if majors.count > 0:
                kept.append((majors, minors))
        self.boxes = kept
        return inside, self

    def split_minor(self, taken: IntervalSet) -> tuple[Region, Region]:
        if self.pending:
            self._flush()
        rest = iv.complement(taken, iv.U32)
        by_point = _split_at_one_point(taken, rest, self.split_minor_point)
        if by_point is not None:
            return by_point
        yes, no = Region(), Region()
        for major, minors in self.points.items():
            whole = minors.materialize()
            yes._add_point(major, ValueSet(iv.intersect(whole, taken)))
            no._add_point(major, ValueSet(iv.intersect(whole, rest)))
        for majors, minors in self.boxes:
            whole = minors.materialize()
            inside, outside = iv.intersect(whole, taken), iv.intersect(whole, rest)
            if inside and outside:
                yes._add_box(majors.copy(), ValueSet(inside))
                no._add_box(majors, ValueSet(outside))
            elif inside:
                yes._add_box(majors, minors)
            else:
                no._add_box(majors, minors)
        return yes, no

    def split_minor_point(self, minor: int) -> tuple[Region, Region]:
        if self.pending:
            self._flush()
        inside = Region()
        kept_points: dict[int, ValueSet] = {}
        for major, minors in self.points.items():
            if minor in minors:
                minors.exclude(minor)
                inside.points[major] = _point(minor)
            if minors.count > 0:
                kept_points[major] = minors
        kept_boxes = []
        for majors, minors in self.boxes:
            if minor in minors:
                minors.exclude(minor)
                inside._add_box(majors.copy() if minors.count > 0 else majors, _point(minor))
            if minors.count > 0:
                kept_boxes.append((majors, minors))
        self.points = kept_points
        self.boxes = kept_boxes
        return inside, self

    def max_major(self) -> int:
        return max([*self.points, *(majors.base[-1][1] for majors, _ in self.boxes)], default=0)

    def max_minor(self) -> int:
        if self.pending:
            self._flush()
        sets = [*self.points.values(), *(minors for _, minors in self.boxes)]
        return max((minors.base[-1][1] for minors in sets if minors.base), default=0)

    def pieces(self) -> list[tuple[int, int, IntervalSet]]:
        """``(major_lo, major_hi, minors)`` covering the region (for building a policy)."""
        if self.pending:
            self._flush()
        if not self.boxes and len(self.points) == 1:  # a rule's leaf: one column, often one point
            for major, minors in self.points.items():
                return [(major, major, minors.base if not minors.excluded else minors.materialize())]
        out = [(major, major, minors.materialize()) for major, minors in self.points.items()]
        for majors, minors in self.boxes:
            whole = minors.materialize()
            out.extend((lo, hi, whole) for lo, hi in majors.materialize())
        return out
