"""The lift speed rework's data structures against brute force (issue 12 item 21).

The rework (``shared.Entry``/``Restricted``, ``Region.pending``, ``intervals.union_all``, the
assembly's spliced minor maps, widen's tables) only changes how an answer is computed, never the
answer: each piece is checked here against the plain computation it replaced, on a small grid
that holds every boundary, so a dropped hole, a missed flush or a wrong seam shows as a value.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core.lift import assembly, widen
from cgdev.core.lift import intervals as iv
from cgdev.core.lift.engine import CTX_MASKS, CTX_TYPES
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.lift.region import Region, ValueSet
from cgdev.core.lift.shared import Entry, Restricted
from cgdev.core.model import MASKSET_ALL, TYPE_OF_KERNEL
from cgdev.core.policy import StepFn

U32 = 0xFFFF_FFFF
FAST = settings(max_examples=150, deadline=None, derandomize=True)
GRID = [*range(16), U32 - 1, U32]

small_sets = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=4).map(iv.normalize)
# minor sets that may reach the top of u32 (so complements and ``hi < U32`` edges are exercised)
minor_sets = st.one_of(small_sets, small_sets.map(lambda s: iv.normalize([*s, (13, U32)])))


def as_set(values: IntervalSet) -> set[int]:
    return {v for lo, hi in values for v in range(lo, hi + 1)}


def cells_of(pieces: list[tuple[int, int, IntervalSet]]) -> set[tuple[int, int]]:
    """The (major, minor) grid points the pieces hold."""
    return {
        (a, b)
        for lo, hi, minors in pieces
        for a in GRID
        if lo <= a <= hi
        for b in GRID
        if iv.contains(minors, b)
    }


# -- intervals.union_all -----------------------------------------------------------------------


@FAST
@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=5), max_size=5))
def test_union_all_is_the_union_in_canonical_form(raw: list[list[tuple[int, int]]]) -> None:
    parts = [tuple((min(a, b), max(a, b)) for a, b in part) for part in raw]
    got = iv.union_all(parts)
    assert as_set(got) == set().union(*(as_set(p) for p in parts))
    assert all(got[i][1] + 1 < got[i + 1][0] for i in range(len(got) - 1))  # disjoint, not adjacent
    assert got == iv.normalize(p for part in parts for p in part)


def test_union_all_joins_adjacent_and_nested_pieces_up_to_the_top() -> None:
    assert iv.union_all([((0, 4),), ((5, 9),)]) == ((0, 9),)
    assert iv.union_all([((0, 9),), ((2, 3),)]) == ((0, 9),)
    assert iv.union_all([((0, 3),), ((5, 9),)]) == ((0, 3), (5, 9))
    assert iv.union_all([((7, U32),), ((0, 6),)]) == ((0, U32),)
    assert iv.union_all([]) == () and iv.union_all([(), ()]) == ()


# -- Region.pending: joins merged when the region is next read ---------------------------------


def _joined_column() -> Region:
    """Major 4 joined three times (pending parts), major 9 once, and a box."""
    region = Region({4: ValueSet(((0, 2),))}, [(ValueSet(((20, 30),)), ValueSet(((1, 1),)))])
    for part in (Region({4: ValueSet(((5, 6),))}), Region({4: ValueSet(((3, 3),)), 9: ValueSet(((8, 8),))})):
        region = region.absorb(part)
    region = region.absorb(Region({4: ValueSet(((10, 11),))}))
    return region


WANTED = {(4, b) for b in (0, 1, 2, 3, 5, 6, 10, 11)} | {(9, 8)} | {(a, 1) for a in range(20, 31)}


def _has(region: Region) -> set[tuple[int, int]]:
    grid = [*range(32), U32]
    return {
        (a, b)
        for lo, hi, minors in region.pieces()
        for a in grid
        if lo <= a <= hi
        for b in grid
        if iv.contains(minors, b)
    }


def test_joins_of_one_column_are_pending_until_read_then_merged_in_one_set() -> None:
    region = _joined_column()
    assert region.pending  # not merged yet
    assert sorted(p for p in region.pieces() if p[0] == 4) == [(4, 4, ((0, 3), (5, 6), (10, 11)))]
    assert not region.pending and _has(region) == WANTED
    assert region.pieces() == region.pieces()  # reading twice gives the same pieces


def test_every_reader_of_a_region_sees_its_pending_joins() -> None:
    assert _has(_joined_column().copy()) == WANTED
    assert _joined_column().max_minor() == 11  # the joined part (10, 11) raises the column's top
    yes, no = _joined_column().split_major(((4, 4),))
    assert _has(yes) == {c for c in WANTED if c[0] == 4} and _has(no) == {c for c in WANTED if c[0] != 4}
    yes, no = _joined_column().split_major_point(4)
    assert _has(yes) == {c for c in WANTED if c[0] == 4} and _has(no) == {c for c in WANTED if c[0] != 4}
    yes, no = _joined_column().split_minor(((5, 10),))
    assert _has(yes) == {c for c in WANTED if 5 <= c[1] <= 10}
    assert _has(no) == {c for c in WANTED if not 5 <= c[1] <= 10}
    yes, no = _joined_column().split_minor_point(10)
    assert _has(yes) == {(4, 10)} and _has(no) == WANTED - {(4, 10)}
    copied = _joined_column()
    duplicate = copied.copy()
    assert not copied.pending and _has(duplicate) == _has(copied) == WANTED


def test_pending_joins_travel_with_the_smaller_region_into_the_bigger_one() -> None:
    small = Region({4: ValueSet(((0, 0),))}).absorb(Region({4: ValueSet(((7, 7),))}))
    assert small.pending
    big = Region({1: ValueSet(((1, 1),)), 2: ValueSet(((2, 2),)), 4: ValueSet(((3, 3),))})
    joined = big.absorb(small)
    assert joined is big
    assert sorted(joined.pieces()) == [(1, 1, ((1, 1),)), (2, 2, ((2, 2),)), (4, 4, ((0, 0), (3, 3), (7, 7)))]


def test_a_region_read_then_joined_again_keeps_every_join() -> None:
    """Reading merges the pending joins; the region stays joinable (a state's region is read by
    a split and then receives more paths)."""
    region = _joined_column()
    yes, rest = region.split_major_point(9)
    assert _has(yes) == {(9, 8)}
    rest = rest.absorb(Region({4: ValueSet(((20, 20),))})).absorb(Region({4: ValueSet(((21, 21),))}))
    other = Region({1: ValueSet(((0, 0),)), 2: ValueSet(((0, 0),)), 3: ValueSet(((0, 0),))})
    joined = other.absorb(rest)  # the read region, now the smaller one, hands over its joins
    assert _has(joined) == (WANTED - {(9, 8)}) | {(4, 20), (4, 21), (1, 0), (2, 0), (3, 0)}


def test_an_empty_join_adds_nothing() -> None:
    region = Region({4: ValueSet(((0, 2),))})
    empty = ValueSet(((5, 5),))
    empty.exclude(5)
    region = region.absorb(Region({4: empty}))
    assert not region.pending and region.pieces() == [(4, 4, ((0, 2),))]


# -- shared.Entry.restrict: the arrived region cut to a block's minors -------------------------


@st.composite
def regions(draw: st.DrawFn) -> Region:
    """Columns and boxes, disjoint in majors or not (a column inside a box's majors)."""
    points = {
        major: ValueSet(draw(minor_sets))
        for major in draw(st.lists(st.integers(0, 14), max_size=5, unique=True))
    }
    points = {m: v for m, v in points.items() if v.base}
    boxes = []
    for _ in range(draw(st.integers(0, 2))):
        majors = draw(small_sets.filter(bool))
        minors = draw(minor_sets.filter(bool))
        boxes.append((ValueSet(majors), ValueSet(minors)))
    if draw(st.booleans()):  # every major but the columns': the usual shape at a shared search
        rest = iv.complement(tuple((m, m) for m in sorted(points)), U32)
        if rest:
            boxes = [(ValueSet(rest), ValueSet(iv.ALL_U32))]
    return Region(points, boxes)


@FAST
@given(regions(), st.lists(minor_sets.filter(bool), min_size=1, max_size=3))
def test_restrict_is_the_arrived_region_cut_to_the_minors(region: Region, blocks: list[IntervalSet]) -> None:
    arrived = cells_of(region.pieces())
    entry = Entry(0b1, region, [], 0b1)
    for minors in blocks:  # several blocks of one walk read the same entry (its index is kept)
        got = entry.restrict(minors)
        assert cells_of(got) == {(a, b) for a, b in arrived if iv.contains(minors, b)}, minors
        assert all(cut for _lo, _hi, cut in got)  # no empty piece
        assert Restricted(entry, minors).pieces() == got


def test_restrict_leaves_untouched_majors_as_one_run_and_cuts_the_touched_ones() -> None:
    # majors 3 and 8 tested their own minors before the search: 3 lacks 5..6, 8 lacks 0
    region = Region(
        {3: ValueSet(((0, 4), (7, U32))), 8: ValueSet(((1, U32),))},
        [(ValueSet(((0, 2), (4, 7), (9, U32))), ValueSet(iv.ALL_U32))],
    )
    entry = Entry(0b1, region, [], 0b1)
    assert entry.restrict(((10, 20),)) == [(0, U32, ((10, 20),))]  # no hole touched: one run
    assert entry.restrict(((5, 5),)) == [(0, 2, ((5, 5),)), (4, U32, ((5, 5),))]  # 3 lacks 5
    assert entry.restrict(((6, 7),)) == [(0, 2, ((6, 7),)), (3, 3, ((7, 7),)), (4, U32, ((6, 7),))]
    assert entry.restrict(((0, 0),)) == [(0, 7, ((0, 0),)), (9, U32, ((0, 0),))]  # 8 lacks 0
    assert entry.restrict(((4, 5),)) == [(0, 2, ((4, 5),)), (3, 3, ((4, 4),)), (4, U32, ((4, 5),))]
    assert entry.restrict(((0, 6),)) == [
        (0, 2, ((0, 6),)),
        (3, 3, ((0, 4),)),
        (4, 7, ((0, 6),)),
        (8, 8, ((1, 6),)),
        (9, U32, ((0, 6),)),
    ]


def test_restrict_finds_a_hole_behind_a_longer_earlier_one() -> None:
    """Holes sorted by start: an early long hole (major 1 lacks 0..50) reaches past later short
    ones (major 2 lacks 10; major 5 lacks 20); a query at 30 must still find major 1."""
    region = Region(
        {1: ValueSet(((51, U32),)), 2: ValueSet(((0, 9), (11, U32))), 5: ValueSet(((0, 19), (21, U32)))}
    )
    entry = Entry(0b1, region, [], 0b1)
    assert entry.restrict(((30, 30),)) == [(2, 2, ((30, 30),)), (5, 5, ((30, 30),))]
    assert entry.restrict(((20, 20),)) == [(2, 2, ((20, 20),))]
    assert entry.restrict(((10, 10),)) == [(5, 5, ((10, 10),))]
    assert entry.restrict(((51, 51),)) == [(1, 2, ((51, 51),)), (5, 5, ((51, 51),))]


def test_restrict_of_overlapping_pieces_cuts_each_one() -> None:
    # a box over majors 0..9 with minors 0..4, and column 5 with minors 5..9: majors overlap
    region = Region({5: ValueSet(((5, 9),))}, [(ValueSet(((0, 9),)), ValueSet(((0, 4),)))])
    entry = Entry(0b1, region, [], 0b1)
    assert sorted(entry.restrict(((4, 5),))) == [(0, 9, ((4, 4),)), (5, 5, ((5, 5),))]
    assert entry.restrict(((20, 30),)) == []
    # two boxes whose majors overlap, the second reaching further, are not disjoint
    region = Region(
        {}, [(ValueSet(((0, 9),)), ValueSet(((0, 4),))), (ValueSet(((5, 12),)), ValueSet(((5, 9),)))]
    )
    entry = Entry(0b1, region, [], 0b1)
    assert entry.restrict(((3, 3),)) == [(0, 9, ((3, 3),))]
    assert entry.restrict(((4, 5),)) == [(0, 9, ((4, 4),)), (5, 12, ((5, 5),))]
    # a column at the last major of a box (pieces that meet at one major) is not disjoint either
    region = Region({5: ValueSet(((5, 9),))}, [(ValueSet(((0, 5),)), ValueSet(((0, 4),)))])
    entry = Entry(0b1, region, [], 0b1)
    assert sorted(entry.restrict(((3, 3),))) == [(0, 5, ((3, 3),))]
    assert sorted(entry.restrict(((4, 6),))) == [(0, 5, ((4, 4),)), (5, 5, ((5, 6),))]


# -- assembly: the spliced minor maps against their plain definitions ---------------------------


masks = st.integers(0, 0xFF).map(lambda v: v & MASKSET_ALL)  # sets of request masks
step_fns = st.lists(st.tuples(st.integers(1, 30), masks), max_size=6).map(
    lambda ps: StepFn.from_pieces([(0, 0), *sorted(dict(ps).items())])
)
MINOR_GRID = [*range(34), U32 - 1, U32]


@FAST
@given(
    step_fns, st.lists(st.tuples(st.integers(0, 31), st.integers(0, 31), st.integers(0, 0xFF)), max_size=4)
)
def test_overlay_is_the_map_with_each_patch_written_over_it(
    fn: StepFn, raw: list[tuple[int, int, int]]
) -> None:
    # disjoint, non-adjacent, sorted patches, each a few pieces
    patches: list[assembly.Patch] = []
    last = -2
    for a, b, v in sorted(raw):
        lo, hi = max(a, last + 2), max(a, b, last + 2)
        if lo > 31:
            break
        pieces = [(lo, v)] + ([(lo + 1, v ^ 1)] if hi > lo else [])
        patches.append((lo, hi, pieces))
        last = hi
    got = assembly._overlay(fn, patches)

    def expected(x: int) -> int:
        for lo, hi, pieces in patches:
            if lo <= x <= hi:
                return [value for start, value in pieces if start <= x][-1]
        return fn.at(x)

    assert [got.at(x) for x in MINOR_GRID] == [expected(x) for x in MINOR_GRID]
    assert all(a != b for a, b in itertools.pairwise(got.values))  # no two equal neighbours
    assert list(got.starts) == sorted(set(got.starts)) and got.starts[0] == 0


def test_overlay_up_to_the_top_and_at_the_start() -> None:
    fn = StepFn.from_pieces([(0, 1), (10, 2), (20, 3)])
    top = assembly._overlay(fn, [(15, U32, [(15, 4)])])
    assert (top.starts, top.values) == ((0, 10, 15), (1, 2, 4))
    start = assembly._overlay(fn, [(0, 4, [(0, 1)])])
    assert (start.starts, start.values) == (fn.starts, fn.values)  # an equal patch merges away
    mid = assembly._overlay(fn, [(12, 13, [(12, 2)]), (25, 25, [(25, 7)])])
    assert (mid.starts, mid.values) == ((0, 10, 20, 25, 26), (1, 2, 3, 7, 3))


@FAST
@given(step_fns, step_fns, st.integers(0, 33), st.integers(0, 33))
def test_agrees_is_equality_on_the_range(a: StepFn, b: StepFn, lo: int, hi: int) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    assert assembly._agrees(a, b, lo, hi) == all(a.at(x) == b.at(x) for x in range(lo, hi + 1))
    assert assembly._agrees(a, a, lo, hi)


def test_agrees_sees_a_difference_at_the_first_value_and_past_the_end() -> None:
    a = StepFn.from_pieces([(0, 1), (5, 2)])
    b = StepFn.from_pieces([(0, 3), (5, 2)])
    assert not assembly._agrees(a, b, 0, 0) and not assembly._agrees(a, b, 4, 9)
    assert assembly._agrees(a, b, 5, 9)
    c = StepFn.from_pieces([(0, 1), (6, 2)])
    assert assembly._agrees(a, c, 0, 4) and not assembly._agrees(a, c, 0, 5)
    assert not assembly._agrees(a, c, 5, 5)


@FAST
@given(step_fns, minor_sets, st.integers(0, 0xFF))
def test_cut_is_the_map_under_the_mask_on_the_minors(fn: StepFn, minors: IntervalSet, mask: int) -> None:
    items = assembly._cut(fn, minors, mask)
    got = {x: 0 for x in MINOR_GRID}
    for values, bits in items:
        assert bits and bits & ~mask == 0
        for x in MINOR_GRID:
            if iv.contains(values, x):
                assert got[x] == 0  # pieces do not overlap
                got[x] = bits
    assert got == {x: (fn.at(x) & mask if iv.contains(minors, x) else 0) for x in MINOR_GRID}


def test_starts_within_is_the_breakpoints_after_lo_up_to_hi() -> None:
    fn = StepFn.from_pieces([(0, 1), (5, 2), (9, 3), (12, 4)])
    assert assembly._starts_within(fn, 5, 12) == (9, 12)
    assert assembly._starts_within(fn, 4, 9) == (5, 9)
    assert assembly._starts_within(fn, 13, U32) == ()


def test_fill_points_fills_single_value_gaps_only() -> None:
    assert assembly._fill_points(((0, 3), (5, 9), (12, 14), (16, 16))) == ((0, 9), (12, 16))
    assert assembly._fill_points(((0, 3), (6, 9))) == ((0, 3), (6, 9))
    assert assembly._fill_points(()) == ()


def test_uneven_is_where_the_spans_give_fewer_masks_than_all() -> None:
    fn = StepFn.from_pieces([(0, 7)])
    a, b = assembly._Shared(fn, 0b01, 0b11), assembly._Shared(fn, 0b10, 0b11)
    covered = [(((0, 9),), ((0, 9),), a), (((5, 14),), ((5, 14),), b)]
    assert assembly._uneven(covered, 0b11) == ((0, 4), (10, 14))
    assert assembly._uneven([(((0, 9),), ((0, 9),), a)], 0b01) == ()
    # a gap between two spans is inside no span: not uneven (it is patched as outside the spans)
    apart = [(((0, 3),), ((0, 3),), a), (((6, 9),), ((6, 9),), b)]
    assert assembly._uneven(apart, 0b11) == ((0, 3), (6, 9))
    even = [(((0, 9),), ((0, 9),), a), (((0, 9),), ((0, 9),), assembly._Shared(fn, 0b11, 0b11))]
    assert assembly._uneven(even, 0b11) == ()  # the second span holds every mask everywhere


def _plain_minor_map(items: list[tuple[IntervalSet, int | assembly._Shared]], x: int) -> int:
    v = 0
    for minors, value in items:
        if iv.contains(minors, x):
            v |= value.fn.at(x) & value.mask if isinstance(value, assembly._Shared) else value
    return v


@FAST
@given(
    step_fns,
    st.lists(st.tuples(minor_sets, masks.filter(bool)), max_size=3),
    st.lists(
        st.tuples(minor_sets, masks.filter(bool), st.integers(0, 2), st.booleans()), min_size=1, max_size=4
    ),
)
def test_active_map_is_the_union_of_its_items(
    base_fn: StepFn, plain: list[tuple[IntervalSet, int]], shared: list[tuple[IntervalSet, int, int, bool]]
) -> None:
    """Shared items read through one of two bases (or through neither), a search entered by
    several paths (one item object, several minor sets), plus plain items: the spliced map
    equals the plain union at every minor."""
    other = StepFn.from_pieces([(0, 0), (3, MASKSET_ALL), (17, 0b110)])
    third = StepFn.from_pieces([(0, 0b10), (9, 0)])  # agrees with no base (in general)
    fns = [base_fn, other, third]
    items: list[tuple[IntervalSet, int | assembly._Shared]] = list(plain)
    last: assembly._Shared | None = None
    for minors, mask, which, again in shared:
        value = last if again and last is not None else assembly._Shared(fns[which], mask, MASKSET_ALL)
        items.append((minors, value))
        last = value
    got = assembly._active_map(items, [assembly._Base(base_fn), assembly._Base(other)])
    assert [got.at(x) for x in MINOR_GRID] == [_plain_minor_map(items, x) for x in MINOR_GRID]


def test_active_map_with_items_on_two_bases_and_a_search_entered_twice() -> None:
    low = StepFn.from_pieces([(0, 0), (2, 0b10), (6, 0b100)])
    high = StepFn.from_pieces([(0, 0b1000000), (20, 0b10)])
    twice = assembly._Shared(low, 0b110, MASKSET_ALL)
    items: list[tuple[IntervalSet, int | assembly._Shared]] = [
        (((0, 3),), twice),
        (((5, 9),), twice),  # the same search entered by another path
        (((10, 12),), assembly._Shared(low, 0b10, MASKSET_ALL)),
        (((15, 30),), assembly._Shared(high, 0b1000010, MASKSET_ALL)),  # the other base
        (((31, 31),), 0b100),
    ]
    got = assembly._active_map(items, [assembly._Base(low), assembly._Base(high)])
    assert [got.at(x) for x in MINOR_GRID] == [_plain_minor_map(items, x) for x in MINOR_GRID]
    assert got.at(2) == 0b10 and got.at(4) == 0 and got.at(7) == 0b100 and got.at(11) == 0
    assert got.at(15) == 0b1000000 and got.at(20) == 0b10 and got.at(31) == 0b100


# -- widen's tables: the per-block formulas they replaced ---------------------------------------


def test_same_type_and_types_masks_tables_are_the_formulas() -> None:
    for live in range(256):
        reaching = {CTX_TYPES[i] for i in range(8) if live >> i & 1}
        assert widen._SAME_TYPE[live] == sum(1 << j for j in range(8) if CTX_TYPES[j] in reaching), live
        types = tuple(sorted({TYPE_OF_KERNEL[CTX_TYPES[i]] for i in range(8) if live >> i & 1}))
        masks = tuple(sorted({CTX_MASKS[i] for i in range(8) if live >> i & 1}))
        assert widen._TYPES_MASKS[live] == (types, masks), live


# -- widen.DecidedIndex: "does a later block decide anything in this box?" ----------------------


@st.composite
def decided_blocks(draw: st.DrawFn) -> list[assembly.Cells]:
    """Blocks' cells: contexts x pieces, one-major columns and ranges of majors, on a small grid."""
    blocks: list[assembly.Cells] = []
    for _ in range(draw(st.integers(1, 5))):
        cells: assembly.Cells = []
        for _ in range(draw(st.integers(1, 2))):
            live = draw(st.integers(1, 255))
            pieces = []
            for _ in range(draw(st.integers(1, 3))):
                lo = draw(st.integers(0, 9))
                hi = draw(st.sampled_from([lo, lo, min(lo + draw(st.integers(1, 4)), 12)]))
                pieces.append((lo, hi, draw(minor_sets.filter(bool))))
            cells.append((live, pieces))
        blocks.append(cells)
    return blocks


@FAST
@given(
    decided_blocks(),
    st.integers(0, 4),
    st.integers(1, 255),
    st.one_of(st.integers(0, 13).map(lambda m: ((m, m),)), st.just(iv.ALL_U32)),
    minor_sets.filter(bool),
)
def test_decided_index_meets_after_is_the_scan_of_later_blocks(
    decided: list[assembly.Cells], after: int, contexts: int, majors: IntervalSet, minors: IntervalSet
) -> None:
    index = widen.DecidedIndex(decided)
    expected = any(
        live & contexts and iv.intersect(((lo, hi),), majors) and iv.intersect(piece_minors, minors)
        for cells in decided[after + 1 :]
        for live, pieces in cells
        for lo, hi, piece_minors in pieces
    )
    assert index.meets_after(after, contexts, majors, minors) == bool(expected)


def test_a_later_block_of_other_contexts_on_the_same_major_does_not_meet() -> None:
    char_read, block_read = 0b0000_0010, 0b0010_0000
    decided: list[assembly.Cells] = [
        [(char_read, [(5, 5, ((3, 3),))])],
        [(block_read, [(5, 5, ((3, 3),))])],  # the same major and minor, another type
        [(block_read, [(0, 9, ((3, 3),))])],
    ]
    index = widen.DecidedIndex(decided)
    assert not index.meets_after(0, char_read, ((5, 5),), ((3, 3),))
    assert index.meets_after(0, block_read, ((5, 5),), ((3, 3),))
    assert index.meets_after(1, block_read, ((5, 5),), ((3, 3),))  # the range block, after
    assert not index.meets_after(2, block_read, ((5, 5),), ((3, 3),))
    assert not index.meets_after(0, char_read, iv.ALL_U32, ((3, 3),))
    assert index.meets_after(0, block_read | char_read, iv.ALL_U32, ((3, 3),))
