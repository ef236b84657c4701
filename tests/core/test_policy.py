"""The policy algebra: canonical form, laws of intersection/union/difference, counter-examples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core.model import MASKSET_ALL, REQUEST_MASKS, U32_MAX, Request
from cgdev.core.policy import Policy, StepFn

# Small universe of interesting numbers so that random policies overlap and differ in few places.
NUMBERS = (0, 1, 2, 3, 5, 136, 195, 254, 255, 4095, U32_MAX - 1, U32_MAX)
numbers = st.sampled_from(NUMBERS)
masksets = st.integers(0, 255).map(lambda v: v & MASKSET_ALL)


@st.composite
def minor_maps(draw: st.DrawFn) -> StepFn[int]:
    return StepFn.from_points(draw(masksets), draw(st.dictionaries(numbers, masksets, max_size=4)))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    def major_map() -> StepFn[StepFn[int]]:
        return StepFn.from_points(
            draw(minor_maps()), draw(st.dictionaries(numbers, minor_maps(), max_size=3))
        )

    return Policy(major_map(), major_map())


requests = st.builds(Request, st.sampled_from(["b", "c"]), numbers, numbers, st.sampled_from(REQUEST_MASKS))


def test_stepfn_merges_equal_neighbours_so_equality_is_semantic() -> None:
    a = StepFn.from_pieces([(0, 1), (5, 1), (9, 2)])
    b = StepFn.from_points(1, {9: 2, 10: 2}).combine(StepFn.const(0), lambda x, _y: x)
    assert a.starts == (0, 9)
    assert StepFn.from_points(1, {}) == StepFn.const(1)
    assert b.at(11) == 1 and b.at(9) == 2 and b.at(10) == 2
    assert StepFn.from_points(0, {U32_MAX: 1}).at(U32_MAX) == 1


def test_stepfn_rejects_malformed_pieces() -> None:
    import pytest

    with pytest.raises(ValueError):
        StepFn.from_pieces([(1, 0)])
    with pytest.raises(ValueError):
        StepFn.from_pieces([(0, 0), (5, 1), (5, 2)])


@given(policies(), policies(), requests)
def test_intersection_union_minus_are_pointwise(p: Policy, q: Policy, r: Request) -> None:
    assert (p & q).allows(r) == (p.allows(r) and q.allows(r))
    assert (p | q).allows(r) == (p.allows(r) or q.allows(r))
    assert p.minus(q).allows(r) == (p.allows(r) and not q.allows(r))
    assert (~p).allows(r) == (not p.allows(r))


@given(policies(), policies())
def test_algebra_laws(p: Policy, q: Policy) -> None:
    assert p & q == q & p
    assert p & p == p
    assert p & Policy.allow_all() == p
    assert p | Policy.deny_all() == p
    assert ~~p == p
    assert (p & q).issubset(p)
    assert p.issubset(p | q)


@settings(max_examples=200)
@given(policies(), policies())
def test_diff_is_empty_iff_equal_and_every_counterexample_is_real(p: Policy, q: Policy) -> None:
    mismatches = p.diff(q)
    assert (not mismatches) == (p == q)
    for m in mismatches:
        assert p.allows(m.request) == m.left
        assert q.allows(m.request) == m.right
        assert m.left != m.right


@given(policies(), policies())
def test_diff_covers_every_differing_request(p: Policy, q: Policy) -> None:
    """Each box of the symmetric difference is represented, so a repair that fixes every listed
    request fixes the whole difference."""
    boxes = {(m.request.type, m.request.major, m.request.minor, m.request.access) for m in p.diff(q)}
    xor = (p.minus(q)) | (q.minus(p))
    for t, mlo, _mhi, nlo, _nhi, maskset in xor.regions():
        for mask in REQUEST_MASKS:
            if maskset >> mask & 1:
                assert (t, mlo, nlo, mask) in boxes


@given(policies())
def test_json_round_trip(p: Policy) -> None:
    assert Policy.from_json(p.to_json()) == p


def test_from_function_evaluates_cells() -> None:
    def fn(t: str, major: int, minor: int) -> int:
        return MASKSET_ALL if (t, major, minor) == ("c", 1, 3) else 0

    p = Policy.from_function(fn, {"c": [1]}, {("c", 1): [3]})
    assert p.verdict("c", 1, 3, 6)
    assert not p.verdict("c", 1, 4, 2)
    assert not p.verdict("b", 1, 3, 2)
    assert p.size == 6  # b: one box; c: three majors pieces, one of them split into three minors


def test_a_point_at_the_top_of_the_range_adds_no_piece_past_it() -> None:
    """``from_points`` at U32_MAX: the piece after a point exists only below the top (a start of
    2^32 would be a box no request reaches, and would break equality with the same function)."""
    for build in (
        lambda: StepFn.from_points(0, {U32_MAX: 2}),
        lambda: StepFn.const(0).with_points({U32_MAX: 2}),
    ):
        fn = build()
        assert fn == StepFn.from_pieces([(0, 0), (U32_MAX, 2)])
        assert max(fn.starts) <= U32_MAX
        assert list(fn.pieces())[-1] == (U32_MAX, U32_MAX, 2)


@settings(max_examples=300)
@given(minor_maps(), st.dictionaries(numbers, masksets, max_size=6))
def test_with_points_is_from_points_over_an_existing_function(
    base: StepFn[int], points: dict[int, int]
) -> None:
    spliced = base.with_points(points)
    for x in {*NUMBERS, 4, 6, 137, 196, 256, 4096}:
        assert spliced.at(x) == points.get(x, base.at(x))
    # canonical: neighbours differ, so equality with any other construction is structural
    assert all(a != b for a, b in zip(spliced.values, spliced.values[1:], strict=False))
    assert spliced.starts[0] == 0 and list(spliced.starts) == sorted(set(spliced.starts))
    assert spliced.origin is None if not points else spliced.origin == (base, tuple(sorted(points)))
