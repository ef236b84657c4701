"""The executor's verdict shortcut (``engine._verdict_block``) decides exactly as the step loop.

A shared ``w0 = 1; exit`` block is reached by tens of thousands of states at 100,000 rules (issue
12 item 20), each with its own provenance, so it is applied to each state in one step instead of
instruction by instruction.  The shortcut must change nothing: the same terminals (contexts,
verdict, region, provenance, in the same order) and the same lift (policy, rules, ranges, gaps)
as with it turned off, on the programs every generator emits for generated rule lists, and on
hand-made verdict blocks with the edge cases the shortcut has to leave to the step loop (a join
point inside the block, 64-bit moves, an ``r0`` that is never written or not a verdict).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core.compile import compile_policy
from cgdev.core.interp import RejectedProgram
from cgdev.core.isa import Insn, Label, alu32, alu64, assemble, exit_, jmp, ldx
from cgdev.core.lift import engine, lift
from cgdev.core.model import Rule
from cgdev.core.semantics import policy_of
from cgdev.core.shapes import shape_program
from cgdev.errors import InputError, ProgramError

_MAJORS = st.one_of(st.integers(0, 40), st.sampled_from([136, 4095, 0xFFFF_FFFF]))
_MINORS = st.one_of(st.integers(0, 40), st.sampled_from([255, 0xFFFFF, 0xFFFF_FFFF]))
_RULES = st.builds(
    Rule,
    st.booleans(),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.none(), _MAJORS),
    st.one_of(st.none(), _MINORS),
    st.integers(1, 7),
)


def _both(run: Callable[[], object]) -> tuple[object, object]:
    """``run``'s outcome (its value, or the error it raised) without and with the shortcut."""
    outcomes = []
    saved = engine.VERDICT_SHORTCUT
    try:
        for flag in (False, True):
            engine.VERDICT_SHORTCUT = flag
            try:
                outcomes.append(run())
            except (engine.Opaque, RejectedProgram, ProgramError) as err:
                outcomes.append((type(err).__name__, str(err)))
    finally:
        engine.VERDICT_SHORTCUT = saved
    return outcomes[0], outcomes[1]


def _terminals(program: tuple[Insn, ...]) -> list[tuple[object, ...]]:
    return [
        (
            t.live,
            t.verdict,
            sorted(t.region.pieces()) if isinstance(t.region, engine.Region) else t.region,
            t.prov,
        )
        for t in engine.execute(program)
    ]


def _lifted(program: tuple[Insn, ...]) -> object:
    result = lift(program)
    return result.to_json(), result.policy, [(r.insn_range, r.cells) for r in result.rules or []]


def _programs(rules: list[Rule]) -> list[tuple[Insn, ...]]:
    programs = [compile_policy(policy_of(rules))]
    for shape in ("runc", "crun", "crun-1.8", "systemd"):
        try:
            programs.append(shape_program(rules, shape))
        except InputError:  # a list this runtime refuses (a deny runc or systemd cannot express)
            continue
    return programs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_RULES, max_size=40))
def test_shortcut_equals_step_loop_on_generated_programs(rules: list[Rule]) -> None:
    for program in _programs(rules):
        without, with_ = _both(lambda program=program: _terminals(program))
        assert with_ == without
        without, with_ = _both(lambda program=program: _lifted(program))
        assert with_ == without


def _verdict_program(tail: list[object]) -> tuple[Insn, ...]:
    """A major test whose both sides end in ``tail`` (the taken side jumps into its middle)."""
    return assemble(
        [
            ldx("w", 2, 1, 4),
            jmp("jeq", 2, "mid", imm=7, wide32=True),
            alu32("mov", 0, imm=1),
            *tail,
        ]
    )


@pytest.mark.parametrize(
    "tail",
    [
        [alu32("mov", 0, imm=0), Label("mid"), exit_()],  # a join point before the exit
        [Label("mid"), alu64("mov", 3, imm=-1), alu64("mov", 0, imm=1), exit_()],
        [Label("mid"), alu32("mov", 0, imm=2), exit_()],  # not a verdict: rejected either way
        [Label("mid"), alu64("mov", 0, imm=-1), exit_()],
        [Label("mid"), exit_()],  # r0 as each path left it (unset on the taken side)
    ],
)
def test_shortcut_equals_step_loop_on_verdict_edge_cases(tail: list[object]) -> None:
    program = _verdict_program(tail)
    without, with_ = _both(lambda: _terminals(program))
    assert with_ == without


def test_shortcut_is_taken_on_a_rule_chain() -> None:
    program = compile_policy(policy_of([Rule(True, "c", m, 1, 7) for m in range(20)]))
    executor = engine.Executor(program)
    executor.run()
    assert any(found is not None for found in executor._verdicts.values())
