"""Lifting through shared sub-programs (issue 12 item 20): exact, and actually taken.

The lifter walks a major-free join point once for any major (``engine._share``) and builds each
major's map by splicing the shared map (``assembly._active_map``).  Both must leave the answer
exactly what the full walk gives: the lifted policy equals the compiled one, on lists built to
make cgdev's compiler share minor searches (wildcard-major ``*:N`` rules over majors with rules of
their own, allows and denies, every type) and on arbitrary policies.  The sharing threshold is
lowered to 1 so that every eligible join goes through the shared path, small programs included.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core.compile import compile_policy
from cgdev.core.isa import Insn, Opcode
from cgdev.core.lift import engine, lift
from cgdev.core.lift.shared import Restricted
from cgdev.core.model import Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics import policy_of

_MAJORS = st.one_of(st.integers(0, 60), st.sampled_from([136, 195, 4095, 0xFFFF_FFFF]))
_MINORS = st.one_of(st.integers(0, 60), st.sampled_from([254, 255, 0xFFFFF, 0xFFFF_FFFF]))
_TYPES = st.sampled_from(["a", "b", "c"])
_point_rules = st.builds(Rule, st.booleans(), _TYPES, _MAJORS, _MINORS, st.integers(1, 7))
_major_rules = st.builds(Rule, st.booleans(), _TYPES, _MAJORS, st.none(), st.integers(1, 7))
_column_rules = st.builds(Rule, st.booleans(), _TYPES, st.none(), _MINORS, st.integers(1, 7))


@st.composite
def wildcard_major_lists(draw: st.DrawFn) -> list[Rule]:
    """Many majors with points of their own, ``M:*`` rules, and ``*:N`` columns under them all."""
    mixed = (
        draw(st.lists(_point_rules, min_size=10, max_size=80))
        + draw(st.lists(_major_rules, max_size=20))
        + draw(st.lists(_column_rules, min_size=1, max_size=25))
    )
    order = draw(st.permutations(range(len(mixed))))
    return [mixed[i] for i in order]


@pytest.fixture
def share_everything() -> Iterator[None]:
    saved = engine.SHARE_MIN_PIECES
    engine.SHARE_MIN_PIECES = 1
    try:
        yield
    finally:
        engine.SHARE_MIN_PIECES = saved


def _shared_terminals(program: tuple) -> int:
    return sum(isinstance(t.region, Restricted) for t in engine.execute(program))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(wildcard_major_lists(), st.sampled_from(["ordered", "crun", "v1"]))
def test_lift_of_compile_is_exact_through_shared_searches(rule_list: list[Rule], semantics: str) -> None:
    saved = engine.SHARE_MIN_PIECES
    engine.SHARE_MIN_PIECES = 1
    try:
        policy = policy_of(rule_list, semantics)
        lifted = lift(compile_policy(policy))
        assert lifted.opaque is None
        assert lifted.policy == policy, policy.diff(lifted.policy, limit=3)  # type: ignore[arg-type]
        assert lifted.generator == "cgdev"
    finally:
        engine.SHARE_MIN_PIECES = saved


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_lift_is_exact_on_policies_read_back_without_hints(data: st.DataObject) -> None:
    """The same lists' policies through JSON (no ``with_points`` origins): the compiler finds the
    shared maps itself, and the lifter must still read them exactly."""
    saved = engine.SHARE_MIN_PIECES
    engine.SHARE_MIN_PIECES = 1
    try:
        policy = Policy.from_json(policy_of(data.draw(wildcard_major_lists())).to_json())
        assert lift(compile_policy(policy)).policy == policy
    finally:
        engine.SHARE_MIN_PIECES = saved


def _adversarial(n: int, seed: int) -> list[Rule]:
    """The issue's worst shape, small: 3 % ``c *:N r``, the rest ``M:*`` and points."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = rng.random()
        major = rng.randrange(300)
        access = rng.choice((2, 4, 6, 7))
        if x < 0.03:
            out.append(Rule(True, "c", None, rng.randrange(1 << 20), 2))
        elif x < 0.5:
            out.append(Rule(rng.random() < 0.9, rng.choice("bc"), major, None, access))  # type: ignore[arg-type]
        else:
            out.append(Rule(rng.random() < 0.9, rng.choice("bc"), major, rng.randrange(1 << 20), access))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_shared_path_is_taken_at_its_default_threshold_and_exact(seed: int) -> None:
    """At the default threshold a wildcard-heavy list of a few hundred rules does go through
    the shared path (so the scale fix is in force), and the answer is the compiled policy."""
    policy = policy_of(_adversarial(1500, seed))
    program = tuple(compile_policy(policy))
    assert _shared_terminals(program) > 0
    lifted = lift(program)
    assert lifted.policy == policy
    assert lifted.rules and all(rule.insn_range[0] >= 0 for rule in lifted.rules)


@pytest.mark.parametrize("prologue", [(), (Insn(int(Opcode.JA)),)], ids=["plain", "goto-first"])
def test_shared_and_unshared_lifts_agree(share_everything: None, prologue: tuple[Insn, ...]) -> None:
    """The shared path against the plain walk on the same program: same policy, same blocks.
    With a ``goto +0`` first, the entry block ends at instruction 0 (a block bound of 0 is a
    bound: what a shared walk decides in the block it was entered in keeps it)."""
    policy = policy_of(_adversarial(600, 7))
    program = prologue + tuple(compile_policy(policy))
    shared = lift(program)
    assert all(t.live for t in engine.execute(program)), "a terminal for no context"
    engine.SHARE_MIN_PIECES = 1 << 60  # never share
    plain = lift(program)
    assert _shared_terminals(program) == 0
    assert shared.policy == plain.policy == policy
    assert {r.insn_range for r in shared.rules} == {r.insn_range for r in plain.rules}
    assert shared.gaps == plain.gaps


def test_a_shared_block_reads_major_and_minor_sets_exactly(share_everything: None) -> None:
    """Each lifted rule's cells (what its block decided) say the same requests either way."""
    policy = policy_of(_adversarial(400, 11))
    program = tuple(compile_policy(policy))
    shared = {(r.insn_range, r.allow): r for r in lift(program).rules}
    engine.SHARE_MIN_PIECES = 1 << 60
    plain = {(r.insn_range, r.allow): r for r in lift(program).rules}
    assert shared.keys() == plain.keys()
    from cgdev.core.lift.assembly import policy_of_cells

    for key, rule in shared.items():
        assert policy_of_cells(rule.cells) == policy_of_cells(plain[key].cells), key
        assert rule.majors == plain[key].majors and rule.minors == plain[key].minors, key
