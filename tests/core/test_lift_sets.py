"""The lifter's set arithmetic against brute force: interval sets, preimages of field arithmetic,
symbolic expressions and (major, minor) regions (issue 12 item 21: the mutants these left alive).

Every operation is checked exhaustively on a small domain (or on every boundary of a large one),
so a wrong bound, a dropped piece or a swapped side shows up as a concrete value."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core.arith import compare
from cgdev.core.lift import intervals as iv
from cgdev.core.lift.intervals import Inexact, IntervalSet
from cgdev.core.lift.region import Region, ValueSet
from cgdev.core.lift.symbolic import MAJOR, MINOR, Sym, branch_set, evaluate, extend, preimage, rebase

U32 = 0xFFFF_FFFF
FAST = settings(max_examples=150, deadline=None, derandomize=True)


def as_set(values: IntervalSet) -> set[int]:
    return {v for lo, hi in values for v in range(lo, hi + 1)}


def of_set(values: set[int]) -> IntervalSet:
    return iv.normalize((v, v) for v in values)


def canonical(values: IntervalSet) -> bool:
    """Sorted, disjoint, non-adjacent, non-empty pieces: the one form equal sets share."""
    return all(lo <= hi for lo, hi in values) and all(
        values[i][1] + 1 < values[i + 1][0] for i in range(len(values) - 1)
    )


small_sets = st.lists(st.tuples(st.integers(0, 63), st.integers(0, 63)), max_size=6).map(iv.normalize)
byte_sets = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=5).map(iv.normalize)


# -- interval sets ------------------------------------------------------------------------------


@FAST
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 63)), max_size=8))
def test_normalize_is_the_set_of_its_pieces(pieces: list[tuple[int, int]]) -> None:
    values = iv.normalize(pieces)
    assert canonical(values)
    assert as_set(values) == {v for lo, hi in pieces for v in range(lo, hi + 1)}


def test_normalize_merges_adjacent_and_nested_pieces() -> None:
    assert iv.normalize([(5, 9), (0, 4)]) == ((0, 9),)
    assert iv.normalize([(0, 9), (2, 3)]) == ((0, 9),)
    assert iv.normalize([(0, 3), (5, 6), (4, 4)]) == ((0, 6),)
    assert iv.normalize([(0, 3), (5, 6)]) == ((0, 3), (5, 6))
    assert iv.normalize([(3, 2)]) == ()


def test_normalize_refuses_more_pieces_than_the_budget() -> None:
    assert len(iv.normalize((2 * k, 2 * k) for k in range(iv.MAX_PIECES))) == iv.MAX_PIECES
    with pytest.raises(Inexact, match=f"more than {iv.MAX_PIECES} separate ranges"):
        iv.normalize((2 * k, 2 * k) for k in range(iv.MAX_PIECES + 1))


@FAST
@given(small_sets, small_sets, st.integers(0, 70), st.integers(0, 70))
def test_set_operations_are_the_set_operations(a: IntervalSet, b: IntervalSet, top: int, x: int) -> None:
    sa, sb = as_set(a), as_set(b)
    for result, expected in (
        (iv.intersect(a, b), sa & sb),
        (iv.union(a, b), sa | sb),
        (iv.minus(a, b), sa - sb),
        (iv.complement(a, top), set(range(top + 1)) - sa),
        (iv.clip(a, top), {v for v in sa if v <= top}),
    ):
        assert canonical(result) and as_set(result) == expected
    assert iv.contains(a, x) == (x in sa)
    assert iv.size(a) == len(sa)


def test_set_operations_at_the_top_of_u32() -> None:
    assert iv.complement(((0, U32),), U32) == ()
    assert iv.complement((), U32) == iv.ALL_U32
    assert iv.complement(((5, 5),), U32) == ((0, 4), (6, U32))
    assert iv.complement(((0, 3), (10, 20)), 12) == ((4, 9),)
    assert iv.minus(iv.ALL_U32, ((U32, U32),)) == ((0, U32 - 1),)
    assert iv.minus(((3, 3),), ()) == ((3, 3),) and iv.minus((), ((3, 3),)) == ()
    assert iv.union((), ((1, 2),)) == ((1, 2),) and iv.union(((1, 2),), ()) == ((1, 2),)
    assert iv.contains(iv.ALL_U32, U32) and iv.contains(((0, 0),), 0) and not iv.contains((), 0)
    assert iv.size(iv.ALL_U32) == 1 << 32


@pytest.mark.parametrize("bits", [3, 6])
def test_comparison_sets_are_the_values_that_compare(bits: int) -> None:
    top = (1 << bits) - 1
    for c in range(-2, top + 3):
        for op in ("jeq", "jne", "jgt", "jge", "jlt", "jle"):
            expected = {v for v in range(top + 1) if compare(op, v, c, bits)}
            result = iv.unsigned_set(op, c, bits)
            assert canonical(result), (op, c)  # e.g. ``v < 0`` is EMPTY, not the piece (0, -1)
            assert as_set(result) == expected, (op, c)
        for op in ("jsgt", "jsge", "jslt", "jsle"):
            result = iv.signed_set(op, c, bits)
            assert canonical(result), (op, c)
            assert as_set(result) == {v for v in range(top + 1) if compare(op, v, c, bits)}, (op, c)
    with pytest.raises(ValueError):
        iv.unsigned_set("jset", 1, bits)
    with pytest.raises(ValueError):
        iv.signed_set("jeq", 1, bits)


# -- preimages ----------------------------------------------------------------------------------


@FAST
@given(byte_sets, st.integers(0, 255), st.integers(0, 255))
def test_and_or_xor_preimages_are_exact(target: IntervalSet, const: int, top: int) -> None:
    wanted = as_set(target)
    assert as_set(iv.pre_and(target, const, top)) == {v for v in range(top + 1) if v & const in wanted}
    assert as_set(iv.pre_or(target, const, 255)) == {v for v in range(256) if v | const in wanted}
    assert as_set(iv.pre_xor(target, const, 255)) == {v for v in range(256) if v ^ const in wanted}


@FAST
@given(byte_sets, st.integers(0, 255))
def test_add_and_neg_preimages_wrap_exactly(target: IntervalSet, const: int) -> None:
    wanted = as_set(target)
    assert as_set(iv.pre_add(target, const, 8)) == {v for v in range(256) if (v + const) & 255 in wanted}
    assert as_set(iv.pre_neg(target, 8)) == {v for v in range(256) if -v & 255 in wanted}


@FAST
@given(byte_sets, st.integers(0, 7), st.integers(0, 1023))
def test_shift_preimages_are_exact(target: IntervalSet, shift: int, hi_in: int) -> None:
    wanted = as_set(target)
    lsh = iv.pre_lsh(target, shift, 8, hi_in)
    assert as_set(lsh) == {v for v in range(hi_in + 1) if (v << shift) & 255 in wanted}
    rsh = iv.pre_rsh(target, shift, hi_in)
    assert as_set(rsh) == {v for v in range(hi_in + 1) if v >> shift in wanted}


@FAST
@given(small_sets, st.integers(1, 6), st.integers(0, 300))
def test_periodic_repeats_the_base_up_to_the_bound(base: IntervalSet, period_bits: int, hi_in: int) -> None:
    period = 1 << period_bits
    base = iv.clip(base, period - 1)  # the residues: values below one period
    expected = {v for v in range(hi_in + 1) if v % period in as_set(base)}
    assert as_set(iv._periodic(base, period_bits, hi_in)) == expected


def test_preimages_that_would_explode_are_refused() -> None:
    with pytest.raises(Inexact, match="wraps into too many ranges"):
        iv._periodic(((0, 0),), 1, 2 * iv.MAX_PIECES)
    assert len(iv._periodic(((0, 0),), 1, 2 * iv.MAX_PIECES - 1)) == iv.MAX_PIECES
    with pytest.raises(Inexact, match="mask 0x55555555 splits the field"):
        iv.pre_and(((0, 0), (3, 3), (0x10, 0x10)), 0x5555_5555, U32)


# -- symbolic expressions -----------------------------------------------------------------------

OPS = ("and", "or", "xor", "add", "sub", "neg", "lsh", "rsh", "trunc")


@st.composite
def expressions(draw: st.DrawFn) -> Sym:
    x_hi = draw(st.sampled_from([0, 1, 7, 200, 1023, 0xFFFF, U32]))
    sym = rebase(Sym(draw(st.sampled_from([MAJOR, MINOR]))), x_hi)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(OPS))
        bits = draw(st.sampled_from([32, 64]))
        if name in ("lsh", "rsh"):
            const = draw(st.integers(0, bits - 1))
        else:
            const = draw(
                st.one_of(st.integers(0, 300), st.sampled_from([0xFF, 0xFF00, U32, -1, -7, 1 << 40]))
            )
        with contextlib.suppress(Inexact):
            sym = extend(sym, name, const, bits)
    return sym


def _probe_points(sym: Sym, sets: list[IntervalSet], rng: random.Random) -> list[int]:
    x_hi = sym.ops[0][3] if sym.ops else sym.hi
    points = {0, 1, x_hi, min(x_hi + 1, U32), U32}
    for values in sets:
        for lo, hi in values[:50]:
            points |= {lo - 1, lo, hi, hi + 1}
    points |= {rng.randrange(x_hi + 1) for _ in range(60)}
    if x_hi <= 1100:
        points |= set(range(x_hi + 1))
    return sorted(p for p in points if 0 <= p <= U32)


@FAST
@given(expressions(), byte_sets)
def test_preimage_is_the_inverse_of_evaluation(sym: Sym, target: IntervalSet) -> None:
    try:
        pre = preimage(sym, target)
    except Inexact:
        return
    x_hi = sym.ops[0][3] if sym.ops else sym.hi
    for x in _probe_points(sym, [pre, target], random.Random(repr(sym))):
        value = evaluate(sym, x)
        if x <= x_hi:
            assert value <= sym.hi, (sym, x)  # the bound the executor relies on
            assert iv.contains(pre, x) == (value in as_set(target)), (sym.describe(), x)
        elif sym.ops:
            assert not iv.contains(pre, x)  # outside the path's bound: never in the preimage


@FAST
@given(
    expressions(),
    st.sampled_from(["jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle"]),
    st.one_of(st.integers(0, 300), st.sampled_from([0x7FFF_FFFF, 0x8000_0000, U32, (1 << 64) - 1, 1 << 40])),
    st.sampled_from([32, 64]),
)
def test_branch_set_is_the_inputs_that_take_the_branch(sym: Sym, op: str, const: int, bits: int) -> None:
    const &= (1 << bits) - 1
    try:
        taken = branch_set(sym, op, const, bits)
    except Inexact:
        return
    x_hi = sym.ops[0][3] if sym.ops else sym.hi
    for x in _probe_points(sym, [taken], random.Random(op)):
        if x > x_hi:
            continue
        value = evaluate(sym, x)
        expected = value & const != 0 if op == "jset" else compare(op, value, const, bits)
        assert iv.contains(taken, x) == expected, (sym.describe(), op, const, bits, x)


def test_extend_keeps_the_expression_when_the_operation_changes_nothing() -> None:
    x = Sym(MAJOR)
    for name, const in (("add", 0), ("or", 0), ("xor", 0), ("lsh", 0), ("rsh", 0), ("trunc", 0)):
        assert extend(x, name, const, 32) == x, name
    assert extend(x, "and", U32, 32) == x
    assert extend(x, "sub", 0, 32) == x
    small = Sym(MINOR, (), 0xFF)
    assert extend(small, "and", 0x1FF, 32) == small
    assert extend(small, "and", 0xF0, 32) == Sym(MINOR, (("and", 0xF0, 32, 0xFF),), 0xF0)
    # 64-bit arithmetic can leave the u32 range; truncating it again is then an operation
    wide = extend(x, "lsh", 8, 64)
    assert wide.hi == U32 << 8
    assert extend(wide, "trunc", 0, 32) == Sym(MAJOR, (*wide.ops, ("trunc", 0, 32, U32 << 8)), U32)
    assert extend(wide, "add", 0, 32).ops[-1] == ("trunc", 0, 32, U32 << 8)


def test_extend_bounds_each_result() -> None:
    x = Sym(MAJOR)
    small = Sym(MAJOR, (), 100)
    assert extend(x, "and", 0xFF, 32).hi == 0xFF
    assert extend(small, "and", 0xFFF, 32).hi == 100
    assert extend(x, "rsh", 8, 32).hi == 0xFF_FFFF
    assert extend(small, "lsh", 2, 32).hi == 400
    assert extend(x, "lsh", 4, 32).hi == U32
    assert extend(small, "add", 5, 32).hi == 105
    assert extend(x, "add", 1, 32).hi == U32  # wraps: any value
    assert extend(x, "add", 1, 64).hi == 1 << 32
    assert extend(small, "sub", 1, 32).hi == U32  # x - 1 wraps at 0
    assert extend(small, "or", 0x100, 32).hi == 0x1FF
    assert extend(small, "xor", 3, 32).hi == 127
    assert extend(small, "neg", 0, 32).hi == U32
    assert extend(small, "neg", 0, 64).hi == (1 << 64) - 1
    assert extend(Sym(MAJOR, (), 1 << 40), "trunc", 0, 32).hi == U32


def test_extend_refuses_what_it_cannot_invert() -> None:
    for name in ("mul", "div", "mod", "arsh", "end"):
        with pytest.raises(Inexact, match=f"^{name} on minor cannot be inverted exactly$"):
            extend(Sym(MINOR), name, 3, 32)
    with pytest.raises(Inexact, match=r"^shift by 32$"):
        extend(Sym(MAJOR), "lsh", 32, 32)
    with pytest.raises(Inexact, match=r"^shift by 64$"):
        extend(Sym(MAJOR), "rsh", 64, 64)
    assert extend(Sym(MAJOR), "rsh", 63, 64).hi == 0


def test_an_expression_describes_itself_and_evaluates_like_the_cpu() -> None:
    sym = extend(extend(extend(Sym(MAJOR), "rsh", 8, 32), "and", 0xFF, 32), "sub", 1, 64)
    assert sym.describe() == "major rsh 0x8/32 and 0xff/32 add 0xffffffffffffffff/64"
    assert evaluate(sym, 0x0300) == 2
    assert evaluate(sym, 0x00FF) == (1 << 64) - 1
    assert Sym(MINOR).describe() == "minor"
    neg = extend(Sym(MINOR), "neg", 0, 32)
    assert [evaluate(neg, v) for v in (0, 1, U32)] == [0, U32, 1]
    xor_or = extend(extend(Sym(MINOR), "xor", 0xF0, 32), "or", 1, 32)
    assert evaluate(xor_or, 0x0F) == 0xFF and evaluate(xor_or, 0xF0) == 1
    assert evaluate(extend(Sym(MINOR), "lsh", 4, 32), 0x1000_0001) == 0x10


def test_rebase_tightens_the_bounds_of_every_step() -> None:
    sym = extend(extend(Sym(MAJOR), "add", 10, 32), "rsh", 2, 32)
    tight = rebase(sym, 100)
    assert tight.ops == (("add", 10, 32, 100), ("rsh", 2, 32, 110))
    assert tight.hi == 27
    assert rebase(Sym(MAJOR), 1 << 40).hi == U32


# -- regions ------------------------------------------------------------------------------------


def test_value_sets_count_and_exclude() -> None:
    values = ValueSet(((0, 9),))
    assert values.count == 10 and 9 in values and 10 not in values
    values.exclude(3)
    values.exclude(3)  # already out: counted once
    values.exclude(42)  # never in
    assert values.count == 9 and 3 not in values
    assert values.materialize() == ((0, 2), (4, 9))
    values.exclude(0)
    values.exclude(9)
    assert values.materialize() == ((1, 2), (4, 8))
    values.exclude(7)
    assert values.materialize() == ((1, 2), (4, 6), (8, 8))
    tail = ValueSet(((0, 9),))
    tail.exclude(8)
    assert tail.materialize() == ((0, 7), (9, 9))  # a last piece of one value stays
    two = ValueSet(((0, 1), (5, 6)))
    assert two.count == 4
    two.exclude(5)
    assert two.materialize() == ((0, 1), (6, 6)) and two.count == 3
    copy = two.copy()
    copy.exclude(6)
    assert 6 in two and two.count == 3 and copy.count == 2
    assert ValueSet(((7, 7),)).single() == 7
    assert ValueSet(((7, 8),)).single() is None
    left = ValueSet(((7, 8),))
    left.exclude(8)
    assert left.single() == 7
    assert ValueSet(((1, 1), (3, 3))).single() is None


def _region_has(region: Region, major: int, minor: int) -> bool:
    return any(lo <= major <= hi and iv.contains(minors, minor) for lo, hi, minors in region.pieces())


SPLITS = st.lists(
    st.tuples(
        st.sampled_from(["major", "minor"]),
        st.one_of(
            st.integers(0, 12).map(lambda v: ((v, v),)),
            st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=3).map(
                iv.normalize
            ),
        ),
        st.booleans(),
    ),
    max_size=7,
)


@FAST
@given(SPLITS)
def test_splitting_a_region_keeps_exactly_the_points_on_each_side(
    splits: list[tuple[str, IntervalSet, bool]],
) -> None:
    """Walk a path of tests on major or minor, keeping one side each time; the other side and
    the kept one partition what was there, and absorbing them back restores it."""
    region = Region.everything()
    conditions: list[tuple[str, set[int], bool]] = []
    grid = [*range(15), U32]
    for field, taken, keep in splits:
        if not as_set(taken):
            continue
        before = {(a, b) for a in grid for b in grid if _region_has(region, a, b)}
        copy = region.copy()
        yes, no = region.split_major(taken) if field == "major" else region.split_minor(taken)
        ins = {(a, b) for a in grid for b in grid if _region_has(yes, a, b)}
        outs = {(a, b) for a in grid for b in grid if _region_has(no, a, b)}
        assert not ins & outs and ins | outs == before
        assert all((a if field == "major" else b) in as_set(taken) for a, b in ins)
        assert {(a, b) for a in grid for b in grid if _region_has(copy, a, b)} == before
        assert yes.is_empty() == (not yes.pieces()) and no.is_empty() == (not no.pieces())
        kept, other = (yes, no) if keep else (no, yes)
        conditions.append((field, as_set(taken), keep))
        region = kept.copy()
        joined = kept.absorb(other)
        assert {(a, b) for a in grid for b in grid if _region_has(joined, a, b)} == before
    for a in grid:
        for b in grid:
            expected = all(((a if f == "major" else b) in values) == keep for f, values, keep in conditions)
            assert _region_has(region, a, b) == expected, (a, b)
    pieces = region.pieces()
    if pieces:
        assert region.max_major() >= max(hi for _lo, hi, _m in pieces)
        assert region.max_minor() >= max(m[-1][1] for _lo, _hi, m in pieces if m)


def test_a_rule_chain_splits_columns_off_one_point_at_a_time() -> None:
    region = Region.everything()
    col1, region = region.split_major(((1, 1),))
    col5, region = region.split_major_point(5)
    assert list(col1.points) == [1] and col1.boxes == [] and list(col5.points) == [5]
    assert region.max_major() == U32 and region.max_minor() == U32
    three, rest1 = col1.split_minor(((3, 3),))
    assert three.pieces() == [(1, 1, ((3, 3),))]
    assert rest1.pieces() == [(1, 1, ((0, 2), (4, U32)))]
    others, three_again = rest1.copy().split_minor(iv.complement(((3, 3),), U32))
    assert three_again.pieces() == [] and others.pieces() == rest1.pieces()
    assert not _region_has(region, 1, 3) and not _region_has(region, 5, 0) and _region_has(region, 6, 0)
    assert region.pieces() == [(0, 0, iv.ALL_U32), (2, 4, iv.ALL_U32), (6, U32, iv.ALL_U32)]
    # a test of a major already split off finds it in the columns, not the box
    again, region = region.split_major_point(6)
    assert again.pieces() == [(6, 6, iv.ALL_U32)]
    none, region = region.split_major_point(6)
    assert none.is_empty() and not _region_has(region, 6, 0)
    narrow = Region({7: ValueSet(((0, 3),)), 2: ValueSet(((0, 9),))})
    assert narrow.max_major() == 7 and narrow.max_minor() == 9
    assert Region().max_major() == 0 and Region().max_minor() == 0 and Region().is_empty()


def test_absorbing_joins_columns_of_the_same_major() -> None:
    a = Region({4: ValueSet(((0, 2),))})
    b = Region({4: ValueSet(((3, 5),)), 9: ValueSet(((1, 1),))})
    joined = a.absorb(b)
    assert sorted(joined.pieces()) == [(4, 4, ((0, 5),)), (9, 9, ((1, 1),))]
    box = Region({}, [(ValueSet(((10, 20),)), ValueSet(((0, 0),)))])
    assert sorted(box.absorb(Region({1: ValueSet(((7, 7),))})).pieces()) == [
        (1, 1, ((7, 7),)),
        (10, 20, ((0, 0),)),
    ]
