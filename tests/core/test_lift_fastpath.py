"""The executor's shortcuts decide exactly as the plain step loop.

The verdict shortcut (``engine._verdict_block``):

A shared ``w0 = 1; exit`` block is reached by tens of thousands of states at 100,000 rules (issue
12 item 20), each with its own provenance, so it is applied to each state in one step instead of
instruction by instruction.  The shortcut must change nothing: the same terminals (contexts,
verdict, region, provenance, in the same order) and the same lift (policy, rules, ranges, gaps)
as with it turned off, on the programs every generator emits for generated rule lists, and on
hand-made verdict blocks with the edge cases the shortcut has to leave to the step loop (a join
point inside the block, 64-bit moves, an ``r0`` that is never written or not a verdict).

The three added for 100,000 rules (issue 12 item 20) change how states travel, so terminals may
be grouped or ordered otherwise; what must not change is what each block decides: per (block,
verdict) the exact set of requests, the lifted policy, rules, ranges and gaps, and the error a
program the method refuses gets:

- ``TAIL_MIN_STATES`` (``_tails``): states at shared code that reads no major or minor decided by
  one walk of it per register file;
- ``WALK_AHEAD`` (``_send``): a state alone in its block walks on at once into an instruction no
  other edge reaches;
- ``THREAD_JUMPS`` (``Analysis.hops``): a state enqueued at an unconditional jump goes straight on.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core.compile import compile_policy
from cgdev.core.interp import RejectedProgram
from cgdev.core.isa import Insn, Label, alu32, alu64, assemble, exit_, ja, jmp, ldx
from cgdev.core.lift import engine, lift
from cgdev.core.lift.assembly import policy_of_cells
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
            sorted(t.region.pieces()),  # a Restricted region has no equality of its own
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


# -- the shortcuts added for scale -----------------------------------------------------------------

_OFF = {"TAIL_MIN_STATES": 10**9, "WALK_AHEAD": False, "THREAD_JUMPS": False}
_ON = {"TAIL_MIN_STATES": 1, "WALK_AHEAD": True, "THREAD_JUMPS": True}  # tails at every eligible join


def _with(flags: dict[str, object], run: Callable[[], object]) -> object:
    saved = {name: getattr(engine, name) for name in flags}
    try:
        for name, value in flags.items():
            setattr(engine, name, value)
        try:
            return run()
        except (engine.Opaque, RejectedProgram, ProgramError) as err:
            return (type(err).__name__, str(err))
    finally:
        for name, value in saved.items():
            setattr(engine, name, value)


def _decided(program: tuple[Insn, ...]) -> object:
    """Per (block, verdict): the exact requests it decides, as a policy (grouping-independent)."""
    cells: dict[tuple[object, ...], list[tuple[int, list[tuple[int, int, tuple[tuple[int, int], ...]]]]]] = {}
    for t in engine.execute(program):
        assert t.live, f"a terminal for no context: {t.prov}"
        pieces = t.region.pieces()
        if pieces:  # a terminal that decides nothing (a shared walk's branch no region takes)
            cells.setdefault((t.prov, t.verdict), []).append((t.live, pieces))
    return {key: policy_of_cells(found) for key, found in cells.items()}


def _lifted_semantics(program: tuple[Insn, ...]) -> object:
    result = lift(program)
    rules = [(r.insn_range, r.allow, policy_of_cells(r.cells)) for r in result.rules or []]
    return result.to_json(), result.policy, rules


_SCALE_FLAGS = [
    pytest.param({"TAIL_MIN_STATES": 1}, id="tails"),
    pytest.param({"WALK_AHEAD": True}, id="ahead"),
    pytest.param({"THREAD_JUMPS": True}, id="threading"),
    pytest.param(_ON, id="all"),
]


@pytest.mark.parametrize("flags", _SCALE_FLAGS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(_RULES, max_size=40))
def test_scale_shortcuts_decide_as_the_step_loop(flags: dict[str, object], rules: list[Rule]) -> None:
    for program in _programs(rules):
        plain = _with(_OFF, lambda program=program: _decided(program))
        assert _with({**_OFF, **flags}, lambda program=program: _decided(program)) == plain
        plain = _with(_OFF, lambda program=program: _lifted_semantics(program))
        assert _with({**_OFF, **flags}, lambda program=program: _lifted_semantics(program)) == plain


def _shared_tail_program(tail: list[object], majors: int = 6, goto_first: bool = False) -> tuple[Insn, ...]:
    """``majors`` rule blocks, each ``if major == k`` to a ``goto`` into one shared ``tail`` (a
    100,000-rule tree's ``gotol`` trampolines): the states reaching it differ only in their
    provenance (each trampoline's own), as the tree's states reach its shared access tests.

    ``goto_first``: a ``goto +0`` at instruction 0 ends the first block there, and major 0 falls
    through to the tail from it, so one state arrives with a block bound of 0 (a bound: what the
    tail decides in that state's block keeps it)."""
    items: list[object] = [ja("start"), Label("start")] if goto_first else []
    items += [ldx("w", 2, 1, 4), ldx("w", 3, 1, 0)]
    for k in range(majors):
        if goto_first and k == 0:
            items += [jmp("jne", 2, "next0", imm=0, wide32=True), ja("tail"), Label("next0")]
            continue
        items += [
            jmp("jeq", 2, f"hop{k}", imm=k, wide32=True),
            ja(f"next{k}"),
            Label(f"hop{k}"),
            ja("tail"),
            Label(f"next{k}"),
        ]
    items += [alu32("mov", 0, imm=0), exit_(), Label("tail"), *tail]
    return assemble(items)


@pytest.mark.parametrize(
    "tail",
    [
        # the access tests of a tree: a context test, both sides to verdicts
        [
            jmp("jset", 3, "deny", imm=0x20000, wide32=True),
            alu32("mov", 0, imm=1),
            exit_(),
            Label("deny"),
            alu32("mov", 0, imm=0),
            exit_(),
        ],
        # a join inside the tail, a verdict computed per context, a second context test
        [
            alu32("mov", 4, src=3),
            alu32("and", 4, imm=1),
            jmp("jeq", 4, "j", imm=1, wide32=True),
            jmp("jset", 3, "j", imm=0x40000, wide32=True),
            alu32("mov", 0, imm=1),
            exit_(),
            Label("j"),
            alu32("mov", 0, src=4),
            exit_(),
        ],
        # a verdict that is not one for some contexts: refused either way, with the same words
        [alu32("mov", 0, src=3), alu32("and", 0, imm=3), exit_()],
        # a helper call: opaque either way
        [Insn(0x85, imm=14), alu32("mov", 0, imm=1), exit_()],
        # the tail reads the minor: not a tail for ``_tails``, walked as usual
        [
            ldx("w", 5, 1, 8),
            jmp("jeq", 5, "deny", imm=3, wide32=True),
            alu32("mov", 0, imm=1),
            exit_(),
            Label("deny"),
            alu32("mov", 0, imm=0),
            exit_(),
        ],
        # a register still holding the major when the tail starts
        [
            jmp("jeq", 2, "deny", imm=4, wide32=True),
            alu32("mov", 0, imm=1),
            exit_(),
            Label("deny"),
            alu32("mov", 0, imm=0),
            exit_(),
        ],
    ],
)
@pytest.mark.parametrize("flags", _SCALE_FLAGS)
@pytest.mark.parametrize("goto_first", [False, True], ids=["rule-blocks", "goto-first"])
def test_scale_shortcuts_on_shared_tails(
    tail: list[object], flags: dict[str, object], goto_first: bool
) -> None:
    program = _shared_tail_program(tail, goto_first=goto_first)
    plain = _with(_OFF, lambda: _decided(program))
    assert _with({**_OFF, **flags}, lambda: _decided(program)) == plain
    plain = _with(_OFF, lambda: _lifted_semantics(program))
    assert _with({**_OFF, **flags}, lambda: _lifted_semantics(program)) == plain


def _queued(program: tuple[Insn, ...], flags: dict[str, object]) -> int:
    """How many times the executor queued a state or stepped one through a block for ``program``
    (sub-walks not counted): each shortcut saves one or the other."""
    executor = _with(flags, lambda: engine.Executor(program))
    assert isinstance(executor, engine.Executor)
    count = 0

    def counting(method: Callable[[int, engine._State], None]) -> Callable[[int, engine._State], None]:
        def counted(pc: int, state: engine._State) -> None:
            nonlocal count
            count += 1
            method(pc, state)

        return counted

    executor._enqueue = counting(executor._enqueue)  # type: ignore[method-assign]
    executor._step_block = counting(executor._step_block)  # type: ignore[method-assign]
    _with(flags, executor.run)
    return count


@pytest.mark.parametrize("flags", [{"TAIL_MIN_STATES": 4}, {"WALK_AHEAD": True}, {"THREAD_JUMPS": True}])
def test_scale_shortcuts_are_taken(flags: dict[str, object]) -> None:
    """Each shortcut is used (else the tests above prove nothing): fewer queued states with it on
    than with all off (``_queued``), on rule blocks that ``goto`` a shared tail (the shape of a 100,000-rule
    tree, whose far jumps go through ``gotol`` trampolines) and, for ``WALK_AHEAD``, on a small tree."""
    program = _shared_tail_program(
        [jmp("jset", 3, "deny", imm=0x20000, wide32=True), alu32("mov", 0, imm=1), exit_(),
         Label("deny"), alu32("mov", 0, imm=0), exit_()]
    )  # fmt: skip
    assert _queued(program, {**_OFF, **flags}) < _queued(program, _OFF)
    if "WALK_AHEAD" in flags:  # a small tree has no trampolines, and its access tests are per major
        tree = compile_policy(
            policy_of([Rule(True, "c", m, n, 1 + m % 7) for m in range(30) for n in range(3)])
        )
        assert _queued(tree, {**_OFF, **flags}) < _queued(tree, _OFF)
