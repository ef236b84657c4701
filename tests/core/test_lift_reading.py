"""What ``lift`` says about a program, checked exactly: generator names, rules as their generator
wrote them, uncovered instruction ranges, the block that decided a request, the policy built from
the decided cells, the executor's field arithmetic against the interpreter, and the reason for
every program it cannot lift (issue 12 item 21: the mutants the older tests left alive)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core import interp
from cgdev.core.isa import Insn, Label, alu32, alu64, assemble, exit_, ja, jmp, ld_imm64, ldx
from cgdev.core.lift import Gap, GapKind, LiftedRule, LiftResult, lift
from cgdev.core.lift.assembly import policy_of_cells
from cgdev.core.lift.coverage import gaps
from cgdev.core.lift.generators import _PROLOGUE_W, hook_prefix_length, recognise
from cgdev.core.lift.result import _ctx_index, _format_set
from cgdev.core.model import ACC_M, ACC_R, ACC_W, REQUEST_MASKS, U32_MAX, Request, Rule
from cgdev.core.rules import parse_rule_text
from cgdev.core.shapes import runc_program, shape_program
from cgdev.errors import ProgramError

RULES = parse_rule_text("deny a\nallow c 1:3 rwm\nallow c 136:* rw\nallow b 8:0 r\nallow c *:5 m")
ALLOW = [alu64("mov", 0, imm=1), exit_()]
DENY = [alu64("mov", 0, imm=0), exit_()]
MAJ, MIN = ldx("w", 4, 1, 4), ldx("w", 5, 1, 8)


def hook_prefix(major: int, minor: int) -> tuple[Insn, ...]:
    """libnvidia-container's prefix (as cgdev.lab.hooksim builds it), falling through to index 13."""
    return assemble(
        [
            ldx("h", 2, 1, 0),
            ldx("w", 3, 1, 0),
            alu32("rsh", 3, imm=16),
            MAJ,
            MIN,
            jmp("jne", 2, "next", imm=2),
            alu32("mov", 2, src=3),
            alu32("and", 2, imm=ACC_R | ACC_W),
            jmp("jne", 2, "next", src=3, wide32=True),
            jmp("jne", 4, "next", imm=major),
            jmp("jne", 5, "next", imm=minor),
            alu32("mov", 0, imm=1),
            exit_(),
            Label("next"),
        ]
    )


def _edges(insns: tuple[Insn, ...]) -> list[int]:
    values = {0, 1, 2, 0x7FFF_FFFF, 0x8000_0000, U32_MAX - 1, U32_MAX}
    for insn in insns:
        values |= {(insn.imm + d) & U32_MAX for d in (-1, 0, 1)}
    return sorted(values)


def _agrees_with_the_interpreter(insns: tuple[Insn, ...], result: LiftResult) -> None:
    assert result.policy is not None, result.opaque
    edges = _edges(insns)
    for dev_type, mask in itertools.product("bc", REQUEST_MASKS):
        for major in edges:
            for minor in (0, 3, 5, U32_MAX):
                request = Request(dev_type, major, minor, mask)  # type: ignore[arg-type]
                expected = bool(interp.run(insns, request).verdict)
                assert result.policy.allows(request) == expected, str(request)
                assert result.policy.allows(Request(dev_type, minor, major, mask)) == bool(  # type: ignore[arg-type]
                    interp.run(insns, Request(dev_type, minor, major, mask)).verdict  # type: ignore[arg-type]
                )


# -- generators ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "name"), [("runc", "runc"), ("crun", "crun"), ("crun-1.8", "crun"), ("systemd", "systemd")]
)
def test_each_runtime_shape_is_named_and_a_hook_in_front_keeps_the_name(shape: str, name: str) -> None:
    program = shape_program(RULES, shape)
    assert recognise(program) == name
    assert lift(program).generator == name
    hooked = (*hook_prefix(195, 255), *program)
    assert hook_prefix_length(hooked) == 13
    assert recognise(hooked) == f"libnvidia-container + {name}"
    assert lift(hooked).generator == f"libnvidia-container + {name}"
    assert hook_prefix_length(program) is None


def test_generator_fingerprints_that_do_not_match_say_unknown() -> None:
    prologue = list(_PROLOGUE_W)
    assert recognise((*hook_prefix(1, 3), exit_())) == "libnvidia-container"  # no old program
    assert hook_prefix_length((*hook_prefix(1, 3), exit_())) is None
    assert (
        recognise((*hook_prefix(1, 3), *_PROLOGUE_W, alu64("mov", 0, src=4), exit_()))
        == "libnvidia-container"
    )
    assert recognise((*hook_prefix(1, 3), *_PROLOGUE_W, *DENY)) == "libnvidia-container + systemd"
    assert recognise(assemble([*prologue, *DENY])) == "systemd"  # an allow-list that matched nothing
    assert (
        recognise(assemble([*prologue, alu64("mov", 6, imm=1), alu64("mov", 0, src=6), exit_()])) == "unknown"
    )
    mixed = [*prologue, jmp("jne", 4, "x", imm=1), *ALLOW, Label("x"), alu32("mov", 0, imm=0), exit_()]
    assert recognise(assemble(mixed)) == "unknown"
    assert (
        recognise(assemble([*prologue, jmp("jne", 4, "x", imm=1), Label("x")])) == "unknown"
    )  # no exit at all
    assert recognise(assemble([ldx("w", 2, 1, 0), *ALLOW])) == "unknown"
    assert recognise(tuple(DENY)) == "systemd" and recognise(tuple(ALLOW)) == "unknown"
    assert recognise(tuple(ALLOW), cgdev=True) == "cgdev"


def test_a_chain_of_32_bit_moves_is_runc_when_sorted_and_single_action_else_youki() -> None:
    def rule(allow: bool, t: str, major: int, minor: int) -> Rule:
        return Rule(allow, t, major, minor, 7)  # type: ignore[arg-type]

    assert recognise(runc_program(False, [rule(True, "c", 1, 3), rule(True, "c", 5, 0)])) == "runc"
    assert recognise(runc_program(False, [rule(True, "b", 1, 3), rule(True, "c", 1, 3)])) == "runc"
    assert recognise(runc_program(True, [rule(False, "c", 1, 3), rule(False, "c", 1, 5)])) == "runc"
    assert recognise(runc_program(False, [rule(True, "c", 5, 0), rule(True, "c", 1, 3)])) == "youki"
    assert recognise(runc_program(False, [rule(True, "c", 1, 5), rule(True, "c", 1, 3)])) == "youki"
    assert recognise(runc_program(False, [rule(True, "c", 1, 3), rule(True, "b", 1, 3)])) == "youki"
    assert recognise(runc_program(False, [rule(True, "c", 1, 3), rule(False, "c", 5, 0)])) == "youki"


# -- rules, gaps, decisions ---------------------------------------------------------------------

EXPECTED_TEXT = {
    "runc": [
        ((0, 11), "allow b *:* m", False), ((12, 17), "allow c *:* m", False),
        ((25, 29), "allow c 1:3 rwm", True), ((30, 34), "allow c 1:5 rwm", True),
        ((35, 39), "allow c 1:7 rwm", True), ((40, 44), "allow c 1:8 rwm", True),
        ((45, 49), "allow c 1:9 rwm", True), ((50, 54), "allow c 5:0 rwm", True),
        ((55, 59), "allow c 5:2 rwm", True), ((60, 67), "allow b 8:0 r", False),
        ((68, 72), "allow c 10:200 rwm", True), ((73, 76), "allow c 136:* rwm", True),
        ((77, 78), "deny a *:* rwm", True),
    ],
    "systemd": [
        ((0, 12), "allow b 8:0 r", False), ((13, 18), "allow c 136:* rw", False),
        ((19, 22), "allow c 1:3 rwm", False), ((23, 24), "deny a *:* rwm", True),
    ],
}  # fmt: skip
EXPECTED_GAPS = {
    "runc": [(18, 24, GapKind.DEAD)],
    "crun": [
        (0, 5, GapKind.PROLOGUE),
        (6, 13, GapKind.DEAD),
        (75, 81, GapKind.DEAD),
        (90, 101, GapKind.DEAD),
    ],
    "crun-1.8": [(62, 68, GapKind.DEAD), (77, 88, GapKind.DEAD)],
    "systemd": [(25, 26, GapKind.DEAD)],
}


@pytest.mark.parametrize("shape", ["runc", "crun", "crun-1.8", "systemd"])
def test_a_chain_reads_as_the_rules_its_runtime_wrote(shape: str) -> None:
    program = shape_program(RULES, shape)
    result = lift(program)
    assert result.reads_as_rules and not any(rule.remainder for rule in result.rules)
    assert [(g.start, g.end, g.kind) for g in result.gaps] == EXPECTED_GAPS[shape]
    if shape in EXPECTED_TEXT:
        assert [(r.insn_range, str(r), r.shadowed) for r in result.rules] == EXPECTED_TEXT[shape]
    for rule in result.rules:
        assert str(rule.rule()) == str(rule)  # every block is one plain rule
    # the block that decided a request is the first rule whose box holds it
    for dev_type, mask in itertools.product("bc", REQUEST_MASKS):
        for major, minor in itertools.product((0, 1, 5, 8, 136, 137, U32_MAX), (0, 3, 5, 200, U32_MAX)):
            request = Request(dev_type, major, minor, mask)  # type: ignore[arg-type]
            decision = result.decide(request)
            first = result.first_match(request)
            assert decision.rule is first, (str(request), str(first), decision)
            assert decision.insn_range == first.insn_range
            assert decision.allowed == first.allow == bool(interp.run(program, request).verdict)
            assert decision.executed == interp.run(program, request).executed


def test_lifted_rules_and_results_as_json() -> None:
    result = lift(shape_program(RULES, "systemd"))
    assert result.rules[1].to_json() == {
        "allow": True,
        "type": "c",
        "majors": [[136, 136]],
        "minors": [[0, U32_MAX]],
        "access": "rw",
        "masks": ["r", "w", "rw"],
        "insn_range": [13, 18],
        "remainder": False,
        "shadowed": False,
        "rule": "allow c 136:* rw",
        "text": "allow c 136:* rw",
    }
    assert result.rules[0].to_json()["minors"] == [[0, 0]]
    out = result.to_json()
    assert (out["generator"], out["instructions"], out["opaque"]) == ("systemd", 27, None)
    assert out["gaps"] == [
        {"insn_range": [25, 26], "kind": "dead code", "why": Gap(25, 26, GapKind.DEAD).why}
    ]
    assert out["policy"] == result.policy.to_json()  # type: ignore[union-attr]
    assert [r["text"] for r in out["rules"]] == [str(r) for r in result.rules]
    assert Gap(0, 1, GapKind.DEAD).why.startswith("decides no request")
    opaque = lift(assemble([Insn(0x85, 0, 0, 0, 14), *ALLOW])).to_json()
    assert opaque["policy"] is None and opaque["rules"] == [] and opaque["gaps"] == []


def test_how_a_lifted_rule_prints() -> None:
    singles = tuple((v, v) for v in range(1, 17, 2))
    box = LiftedRule(True, ("c",), (ACC_R, ACC_W, ACC_R | ACC_W), singles, ((0, 9), (20, 20)), (3, 7))
    assert str(box) == "allow c 1,3,5,7,9,11,...(+2):0-9,20 rw"
    assert box.rule() is None and box.type == "c" and box.access == ACC_R | ACC_W
    six = LiftedRule(False, ("b", "c"), (ACC_M,), singles[:6], None, (0, 1))
    assert str(six) == "deny a 1,3,5,7,9,11:* m" and six.type == "a"
    odd = LiftedRule(True, ("b",), (ACC_W, ACC_R | ACC_W), ((4, 4),), ((2, 2),), (0, 1))
    assert odd.access is None and odd.rule() is None
    assert str(odd) == "allow b 4:2 masks w/rw"
    assert odd.to_json()["access"] is None and odd.to_json()["rule"] is None
    empty = LiftedRule(True, ("c",), (), ((4, 4),), (), (0, 1))
    assert empty.rule() is None and str(empty) == "allow c 4:{} "
    one = LiftedRule(True, ("c",), (ACC_R,), ((4, 4),), ((7, 7),), (0, 1))
    assert one.rule() == Rule(True, "c", 4, 7, ACC_R)
    assert LiftedRule(True, ("c",), (ACC_R,), None, ((0, U32_MAX),), (0, 1)).rule() == Rule(
        True, "c", None, None, ACC_R
    )
    assert LiftedRule(True, ("c",), (ACC_R,), ((4, 5),), ((7, 7),), (0, 1)).rule() is None
    assert LiftedRule(True, ("c",), (ACC_R,), ((4, 4),), ((7, 8),), (0, 1)).rule() is None
    wide = LiftedRule(True, ("c",), (ACC_R,), ((4, 4), (9, 12)), ((1, 1), (5, 6)), (0, 1), remainder=True)
    assert str(wide) == "allow c 4-12:1-6 r (except what other blocks decided)"
    assert wide.rule() is None
    assert _format_set(()) == "{}" and _format_set(None) == "*" and _format_set(((0, U32_MAX),)) == "*"
    assert _format_set(singles[:7]) == "1,3,5,7,9,11,...(+1)"
    assert one.matches(Request("c", 4, 7, ACC_R)) and not one.matches(Request("c", 4, 7, ACC_W))
    assert not one.matches(Request("b", 4, 7, ACC_R)) and not one.matches(Request("c", 5, 7, ACC_R))
    assert not one.matches(Request("c", 4, 8, ACC_R))
    assert six.matches(Request("b", 11, U32_MAX, ACC_M)) and not six.matches(Request("b", 12, 0, ACC_M))


def test_a_trees_leaves_say_what_they_decided_or_that_they_are_an_envelope() -> None:
    from cgdev.core.compile import compile_policy
    from cgdev.core.semantics import policy_of

    result = lift(compile_policy(policy_of(RULES, "ordered")))
    assert result.generator == "cgdev" and not result.reads_as_rules
    texts = [str(rule) for rule in result.rules]
    exact = [t for t in texts if t.startswith("allow c *:5 m, ")]
    assert exact, texts  # a leaf that a few plain rules say exactly
    for rule in result.rules:
        text = str(rule)
        if rule.remainder and not text.endswith("(except what other blocks decided)"):
            verb, _, body = text.partition(" ")
            said = parse_rule_text("\n".join(f"{verb} {part}" for part in body.split(", ")))
            from cgdev.core.semantics import policy_of as reading

            assert reading(said, "ordered") == policy_of_cells(rule.cells), text
    assert any(t.endswith("(except what other blocks decided)") for t in texts), texts


# -- which instructions no rule covers ----------------------------------------------------------


def test_gaps_name_prologue_dead_code_and_merge_runs() -> None:
    straight = assemble([ldx("w", 2, 1, 0), ja("on"), alu64("mov", 0, imm=0), Label("on"), *ALLOW])
    assert [(g.start, g.end, g.kind) for g in gaps(straight, [])] == [
        (0, 1, GapKind.PROLOGUE),
        (2, 2, GapKind.DEAD),
        (3, 4, GapKind.PROLOGUE),
    ]
    assert [(g.start, g.end) for g in gaps(straight, [(3, -1)])] == [(0, 1), (2, 2)]
    assert [(g.start, g.end) for g in gaps(straight, [(-4, 0), (2, 9)])] == [(1, 1)]
    wide = assemble([*ld_imm64(0, 1), exit_()])
    assert [(g.start, g.end, g.kind) for g in gaps(wide, [])] == [(0, 2, GapKind.PROLOGUE)]
    tested = assemble([MAJ, jmp("jne", 4, "no", imm=1), *ALLOW, Label("no"), *DENY])
    assert [(g.start, g.end, g.kind) for g in gaps(tested, [(2, 3)])] == [
        (0, 0, GapKind.PROLOGUE),  # before the first test
        (1, 1, GapKind.DEAD),  # from the first test on, what no rule covers decides nothing
        (4, 5, GapKind.DEAD),
    ]
    jump_last = assemble([MAJ, jmp("jeq", 4, "end", imm=1), *DENY, Label("end"), *ALLOW])
    assert [(g.start, g.end, g.kind) for g in gaps(jump_last, [(2, 3), (4, 5)])] == [
        (0, 0, GapKind.PROLOGUE),
        (1, 1, GapKind.DEAD),
    ]


# -- the policy from decided cells ---------------------------------------------------------------

CELLS = st.lists(
    st.tuples(
        st.integers(0, 255),
        st.lists(
            st.tuples(
                st.integers(0, 6),
                st.integers(0, 6),
                st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=2).map(
                    lambda p: tuple(sorted({(min(a, b), max(a, b)) for a, b in p}))
                ),
            ).filter(lambda t: t[0] <= t[1]),
            max_size=3,
        ),
    ),
    max_size=4,
)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(CELLS)
def test_the_policy_of_cells_allows_exactly_what_they_hold(cells: list) -> None:  # type: ignore[type-arg]
    from cgdev.core.lift import intervals as iv

    cells = [(live, [(lo, hi, iv.normalize(m)) for lo, hi, m in pieces]) for live, pieces in cells]
    policy = policy_of_cells(cells)
    for dev_type, mask in itertools.product("bc", REQUEST_MASKS):
        for major in (*range(8), U32_MAX):
            for minor in (*range(8), U32_MAX):
                request = Request(dev_type, major, minor, mask)  # type: ignore[arg-type]
                ctx = _ctx_index(request)
                held = any(
                    live >> ctx & 1 and lo <= major <= hi and iv.contains(minors, minor)
                    for live, pieces in cells
                    for lo, hi, minors in pieces
                )
                assert policy.allows(request) == held, str(request)


def test_cells_reaching_the_top_of_u32() -> None:
    top = [(0xFF, [(5, U32_MAX, ((7, U32_MAX),)), (0, U32_MAX, ((0, 0),))])]
    policy = policy_of_cells(top)
    assert policy.allows(Request("c", U32_MAX, U32_MAX, ACC_R)) and policy.allows(Request("b", 0, 0, ACC_M))
    assert not policy.allows(Request("c", 4, 7, ACC_R)) and not policy.allows(Request("c", 5, 6, ACC_W))


# -- the executor: field arithmetic and comparisons, against the interpreter ---------------------


@pytest.mark.parametrize("op", ["add", "sub", "and", "or", "xor"])
@pytest.mark.parametrize("alu", [alu32, alu64])
def test_a_constant_combined_with_a_field_is_followed_exactly(op: str, alu: object) -> None:
    """``r6 = 300; r6 op= r4``: the field is the operand, not the destination."""
    const, wanted = (-256, 0x100) if op == "and" else (300, 0x104)
    program = assemble(
        [
            MAJ,
            alu64("mov", 6, imm=const),
            alu(op, 6, src=4),
            jmp("jeq", 6, "yes", imm=wanted),
            *DENY,
            Label("yes"),
            *ALLOW,
        ]  # type: ignore[operator]
    )
    result = lift(program)
    assert result.opaque is None, result.opaque
    _agrees_with_the_interpreter(program, result)


@pytest.mark.parametrize(
    "op", ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle"]
)
@pytest.mark.parametrize("wide32", [False, True])
def test_a_constant_compared_with_a_field_on_either_side(op: str, wide32: bool) -> None:
    """``if 5 op minor`` is ``if minor flipped-op 5``; 64-bit constants beyond u32 included."""
    for const in (0xFF00_0000, -1, 0x8000_0000) if op == "jset" else (5, -1, 0x8000_0000):
        for body in (
            [MIN, alu64("mov", 6, imm=const), jmp(op, 6, "yes", src=5, wide32=wide32)],
            [MIN, MAJ, jmp(op, 5, "yes", imm=const, wide32=wide32)],
            [
                MIN,
                alu32("mov", 7, src=5),
                alu64("mov", 8, src=7),
                jmp(op, 8, "yes", imm=const, wide32=wide32),
            ],
        ):
            program = assemble([*body, *DENY, Label("yes"), *ALLOW])
            result = lift(program)
            assert result.opaque is None, result.opaque
            _agrees_with_the_interpreter(program, result)


def test_per_context_values_and_jumps_are_followed() -> None:
    """An access-dependent verdict, a ``goto`` into a shared tail, a field test after it."""
    program = assemble(
        [
            ldx("w", 3, 1, 0),
            alu32("rsh", 3, imm=16),
            MAJ,
            alu64("mov", 0, imm=0),
            jmp("jset", 3, "write", imm=ACC_W),
            alu64("mov", 0, imm=1),
            ja("tail"),
            Label("write"),
            alu32("mov", 6, src=3),
            alu32("and", 6, imm=ACC_R),
            alu32("add", 6, imm=0),
            jmp("jeq", 6, "tail", imm=ACC_R),
            alu64("mov", 0, imm=1),
            Label("tail"),
            jmp("jlt", 4, "keep", imm=10),
            alu64("mov", 0, imm=0),
            Label("keep"),
            exit_(),
        ]
    )
    result = lift(program)
    assert result.opaque is None, result.opaque
    _agrees_with_the_interpreter(program, result)
    allows = result.policy.allows  # type: ignore[union-attr]
    assert allows(Request("c", 9, 0, ACC_R)) and allows(Request("b", 9, 0, ACC_W))
    assert not allows(Request("c", 9, 0, ACC_R | ACC_W)) and not allows(Request("c", 10, 0, ACC_R))


# -- what cannot be lifted, and why --------------------------------------------------------------

T = [Label("x"), *ALLOW]
N = [alu64("mov", 0, imm=0), exit_()]
OPAQUE = {
    "instruction 0: stack traffic (stores and reloads) is not followed": [ldx("w", 5, 10, -4), *ALLOW],
    "instruction 0: stack traffic (stores and reloads) is not followed ": [Insn(0x62, 10, 0, -4, 5), *ALLOW],
    "instruction 1: pointer arithmetic (mul) is not followed": [
        alu64("mov", 6, src=1),
        alu64("mul", 6, imm=2),
        *ALLOW,
    ],
    "instruction 2: add combining major/minor with another field": [
        MAJ,
        MIN,
        alu64("add", 4, src=5),
        jmp("jeq", 4, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 1: byte swap of major/minor": [
        MAJ,
        Insn(0xD4, 4, 0, 0, 16),
        jmp("jeq", 4, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 2: add of major/minor with an access-dependent value": [
        MAJ,
        ldx("w", 6, 1, 0),
        alu64("add", 4, src=6),
        jmp("jeq", 4, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 2: xor of major/minor with an access-dependent value": [
        MAJ,
        ldx("w", 6, 1, 0),
        alu64("xor", 6, src=4),
        jmp("jeq", 6, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 2: mul with major/minor as the operand": [
        MAJ,
        alu64("mov", 6, imm=3),
        alu64("mul", 6, src=4),
        jmp("jeq", 6, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 1: mul on major cannot be inverted exactly": [
        MAJ,
        alu64("mul", 4, imm=3),
        jmp("jeq", 4, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 0: comparison involving a pointer": [jmp("jeq", 1, "x", imm=0), *N, *T],
    "instruction 2: comparison of major/minor with a non-constant": [
        MAJ,
        MIN,
        jmp("jeq", 4, "x", src=5),
        *N,
        *T,
    ],
    "instruction 2: comparison of major/minor with an access-dependent value": [
        MAJ,
        ldx("w", 6, 1, 0),
        jmp("jeq", 4, "x", src=6),
        *N,
        *T,
    ],
    "instruction 2: the verdict is computed from major": [MAJ, alu64("mov", 0, src=4), exit_()],
    "instruction 1: signed mov on major/minor is not followed": [
        MAJ,
        Insn(0xBF, 6, 4, 8, 0),
        jmp("jeq", 6, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 1: signed div on major/minor is not followed": [
        MAJ,
        Insn(0x37, 4, 0, 1, 3),
        jmp("jeq", 4, "x", imm=3),
        *N,
        *T,
    ],
    "instruction 1: ld_imm64 with pseudo source 1 (a map reference)": [
        MAJ,
        Insn(0x18, 1, 1, 0, 3),
        Insn(0),
        *ALLOW,
    ],
    "instruction 1: back-edge to 1 (a loop)": [
        alu64("mov", 0, imm=0),
        Label("top"),
        jmp("jeq", 0, "top", imm=1),
        exit_(),
    ],
    "instruction 0: helper call bpf_get_current_pid_tgid#14: the verdict depends on the helper": [
        Insn(0x85, 0, 0, 0, 14),
        *ALLOW,
    ],
}


@pytest.mark.parametrize("reason", sorted(OPAQUE))
def test_the_reason_a_program_is_opaque_is_exact(reason: str) -> None:
    result = lift(assemble(OPAQUE[reason]))
    assert result.policy is None and result.rules == [] and result.gaps == []
    assert result.opaque == reason.strip()
    assert result.generator == "unknown"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            [Insn(0x62, 1, 0, 0, 5), *ALLOW],
            "instruction 0: store outside the stack (the context is read-only)",
        ),
        ([alu64("mov", 10, imm=1), *ALLOW], "instruction 0: r10 (frame pointer) is read-only"),
        (
            [alu64("mov", 4, imm=1), ldx("w", 5, 4, 0), *ALLOW],
            "instruction 1: load through r4, which is not a pointer",
        ),
        (
            [alu64("mov", 6, src=1), alu64("add", 6, imm=4), ldx("w", 5, 6, 0), *ALLOW],
            "instruction 2: load through a modified context pointer",
        ),
        ([Insn(0x81, 4, 1, 4, 0), *ALLOW], "instruction 0: sign-extending load from the context"),
        (
            [alu64("mov", 6, imm=1), Insn(0xD4, 6, 0, 0, 8), *ALLOW],
            "instruction 1: invalid byte swap width 8",
        ),
        ([alu64("mov", 0, src=1), exit_()], "instruction 1: r0 holds a pointer at exit"),
        ([ldx("w", 0, 1, 0), exit_()], "instruction 1: r0 = 65537 at exit; a device program returns 0 or 1"),
        ([ldx("w", 6, 1, 0), jmp("jeq", 6, "x", imm=1), *N, *T], None),
    ],
)
def test_programs_the_kernel_refuses_say_where_and_why(body: list[object], message: str | None) -> None:
    program = assemble(body)  # type: ignore[arg-type]
    if message is None:
        assert lift(program).opaque is None
        return
    with pytest.raises(ProgramError) as err:
        lift(program)
    assert str(err.value).endswith(message), str(err.value)


def test_a_blinded_program_says_so_and_keeps_its_instructions() -> None:
    blinded = (Insn(0xB7, 11, 0, 0, 5), Insn(0xA7, 11, 0, 0, 7), *ALLOW)
    result = lift(blinded, blinded=True)
    assert result.opaque == "constants are blinded (JIT hardening rewrote them through AX)"
    assert (result.generator, result.blinded, result.insns, result.rules) == ("unknown", True, blinded, [])
    decision = result.decide(Request("b", 8, 0, ACC_M))
    assert decision.allowed is True and decision.rule is None and decision.insn_range == (0, 3)
    assert decision.executed == 4


def test_lift_leaves_the_cyclic_collector_as_it_found_it() -> None:
    """The executor turns the collector off while it runs; a caller's setting must survive, on
    success, on an opaque program and on a refused one."""
    import gc

    programs = [
        shape_program(RULES, "runc"),
        assemble(OPAQUE["instruction 0: comparison involving a pointer"]),
    ]
    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            for program in programs:
                lift(program)
                assert gc.isenabled() is enabled
            with pytest.raises(ProgramError):
                lift((exit_(),))
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_lift_hands_its_survivors_to_the_oldest_generation() -> None:
    """What a lift keeps (rules, cells, policy) is promoted past the young generations, so the
    first collection after it does not walk them all (0.43 s at 100,000 rules, issue 12 item
    20); objects a caller froze stay frozen, and the collector's own state is as it was."""
    import gc

    from cgdev.core.compile import compile_policy
    from cgdev.core.semantics import policy_of

    rng = random.Random(12)
    points = [
        Rule(True, "c", rng.randrange(4096), rng.randrange(1 << 20), rng.choice((2, 6, 7)))
        for _ in range(2000)
    ]
    program = compile_policy(policy_of(points))
    was = gc.isenabled()
    try:
        gc.enable()
        gc.collect()
        kept = lift(program)
        assert gc.isenabled() and gc.get_freeze_count() == 0
        assert len(kept.rules) >= 2000
        oldest = {id(obj) for obj in gc.get_objects(generation=2)}
        assert id(kept.rules[0]) in oldest and id(kept.rules[-1].cells) in oldest, "still young"
        mine = [object()]  # tracked, and frozen by "the caller" below
        gc.freeze()
        lift(program)
        assert gc.get_freeze_count() > 0
        assert id(mine) not in {id(obj) for obj in gc.get_objects()}, "a caller's frozen object was thawed"
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()


def test_the_executor_raises_opaque_with_the_instruction_and_reason() -> None:
    """``execute`` on its own (without ``lift``'s wrapping) says where and why, as ``reason``
    and as the exception's text."""
    from cgdev.core.lift.engine import Opaque, execute

    program = assemble(OPAQUE["instruction 1: back-edge to 1 (a loop)"])
    with pytest.raises(Opaque) as err:
        execute(program)
    assert err.value.pc == 1
    assert err.value.reason == str(err.value) == "instruction 1: back-edge to 1 (a loop)"


def test_crun_is_named_by_its_sentinel_block_whatever_its_moves() -> None:
    """The dead sentinel (``c 0:0``, access mask 0) is crun's own fingerprint: with it, a chain
    of 32-bit moves is still crun; without it, the same chain reads as runc's or youki's."""

    def with_32_bit_moves(program: tuple[Insn, ...]) -> tuple[Insn, ...]:
        mov64, mov32 = alu64("mov", 0, imm=0).code, alu32("mov", 0, imm=0).code
        return tuple(
            Insn(mov32, 0, i.src, i.off, i.imm) if i.code == mov64 and i.dst == 0 else i for i in program
        )

    sentinel = with_32_bit_moves(shape_program(RULES, "crun"))
    assert recognise(sentinel) == "crun"
    assert recognise(with_32_bit_moves(shape_program(RULES, "crun-1.8"))) in ("runc", "youki")
    with_src = Insn(sentinel[6].code, 2, 1, 7, 2)  # the first test reading a register instead
    assert recognise((*sentinel[:6], with_src, *sentinel[7:])) != "crun"
    for pc in (6, 8, 10, 11):  # each test of the sentinel block, changed, is no sentinel
        insn = sentinel[pc]
        changed = Insn(insn.code, insn.dst, insn.src, insn.off, insn.imm + 1)
        assert recognise((*sentinel[:pc], changed, *sentinel[pc + 1 :])) != "crun", pc
        moved = Insn(insn.code, insn.dst ^ 1, insn.src, insn.off, insn.imm)
        assert recognise((*sentinel[:pc], moved, *sentinel[pc + 1 :])) != "crun", pc


def test_a_comparison_of_two_constants_is_decided_for_every_context() -> None:
    for op, const in (("jgt", 3), ("jgt", 1), ("jeq", 2), ("jne", 2)):
        program = assemble(
            [MAJ, alu64("mov", 6, imm=2), jmp(op, 6, "no", imm=const), *ALLOW, Label("no"), *DENY]
        )
        result = lift(program)
        _agrees_with_the_interpreter(program, result)
        taken = {"jgt": const < 2, "jeq": const == 2, "jne": const != 2}[op]
        assert result.policy.allows(Request("b", 0, 0, ACC_M)) is not taken  # type: ignore[union-attr]


def test_paths_that_meet_join_their_columns_into_one_rule() -> None:
    """Two paths reach the allow block, one by ``major == 5`` (minor not 7), one by two range
    tests on major (minor 7): the block decided ``5:*`` whole, and says so as one plain rule."""
    program = assemble(
        [
            MAJ,
            MIN,
            jmp("jeq", 5, "seven", imm=7),
            jmp("jeq", 4, "yes", imm=5),
            ja("deny"),
            Label("seven"),
            jmp("jge", 4, "ge5", imm=5),
            ja("deny"),
            Label("ge5"),
            jmp("jle", 4, "yes", imm=5),
            Label("deny"),
            *DENY,
            Label("yes"),
            *ALLOW,
        ]
    )
    result = lift(program)
    _agrees_with_the_interpreter(program, result)
    allow = [rule for rule in result.rules if rule.allow]
    # exact as decided (one column 5:*), not widened back from an envelope
    assert [(r.insn_range, str(r), r.remainder, r.shadowed) for r in allow] == [
        ((10, 11), "allow a 5:* rwm", False, False)
    ]
    assert allow[0].rule() == Rule(True, "a", 5, None, 7)


def test_a_range_emptied_one_major_at_a_time_leaves_its_fall_through_dead() -> None:
    program = assemble(
        [
            MAJ,
            jmp("jlt", 4, "deny", imm=5),
            jmp("jgt", 4, "deny", imm=6),  # majors 5..6 remain
            jmp("jeq", 4, "five", imm=5),
            jmp("jeq", 4, "six", imm=6),
            *ALLOW,  # no major is left here
            Label("five"),
            *ALLOW,
            Label("six"),
            *ALLOW,
            Label("deny"),
            *DENY,
        ]
    )
    result = lift(program)
    _agrees_with_the_interpreter(program, result)
    assert [(r.insn_range, str(r)) for r in result.rules] == [
        ((7, 8), "allow a 5:* rwm"),
        ((9, 10), "allow a 6:* rwm"),
        ((11, 12), "deny a *:* rwm"),
    ]
    assert [(g.start, g.end, g.kind) for g in result.gaps] == [(0, 0, GapKind.PROLOGUE), (1, 6, GapKind.DEAD)]


def test_concrete_arithmetic_wide_constants_and_byte_swaps_are_followed() -> None:
    """Values that do not depend on the request: ``r6 = 2; r6 += 3; r6 *= 2``, a 64-bit
    constant loaded in two slots, byte swaps."""
    programs = [
        [
            MAJ,
            alu64("mov", 6, imm=2),
            alu64("add", 6, imm=3),
            alu64("mul", 6, imm=2),
            jmp("jeq", 4, "yes", src=6),
        ],
        [MAJ, *ld_imm64(6, 0x1_0000_0007), alu32("mov", 7, src=6), jmp("jeq", 4, "yes", src=7)],
        [MAJ, *ld_imm64(6, 7), jmp("jeq", 4, "yes", src=6)],
        [MAJ, alu64("mov", 6, imm=0x0300), Insn(0xD7, 6, 0, 0, 16), jmp("jeq", 4, "yes", src=6)],  # bswap16
        [MAJ, alu64("mov", 6, imm=0x0300), Insn(0xDC, 6, 0, 0, 16), jmp("jeq", 4, "yes", src=6)],  # to be16
        [MAJ, alu64("mov", 6, imm=0x0300), Insn(0xD4, 6, 0, 0, 16), jmp("jeq", 4, "yes", src=6)],  # to le16
    ]
    for body in programs:
        program = assemble([*body, *DENY, Label("yes"), *ALLOW])
        result = lift(program)
        assert result.opaque is None, result.opaque
        _agrees_with_the_interpreter(program, result)
        assert any(result.policy.allows(Request("c", m, 0, ACC_R)) for m in (3, 7, 10, 0x300))  # type: ignore[union-attr]


@pytest.mark.parametrize("shape", ["runc", "crun", "systemd"])
def test_what_each_rule_decided_adds_up_to_the_policy(shape: str) -> None:
    """``cells`` is what a block decided, exactly, widened or not: the allow blocks' cells are
    the policy, and no two blocks decided the same request."""
    result = lift(shape_program(RULES, shape))
    allowed = [policy_of_cells(rule.cells) for rule in result.rules if rule.allow]
    union = allowed[0]
    for policy in allowed[1:]:
        union = union | policy
    assert union == result.policy
    decided = [policy_of_cells(rule.cells) for rule in result.rules]
    for a, b in itertools.combinations(decided, 2):
        assert a & b == policy_of_cells([])


def test_a_context_pointer_moved_away_and_back_reads_the_field() -> None:
    """``r6 = r1; r6 += -4; r6 += 4``: the offset is back to 0 (a negative 64-bit constant is a
    step back, not a huge step forward), so ``*(u32 *)(r6 + 4)`` is the major."""
    body = [alu64("mov", 6, src=1), alu64("add", 6, imm=-4), alu64("add", 6, imm=4), ldx("w", 4, 6, 4)]
    result = lift(assemble([*body, jmp("jeq", 4, "yes", imm=3), *DENY, Label("yes"), *ALLOW]))
    assert result.opaque is None and result.policy is not None
    assert [str(rule) for rule in result.rules if rule.allow] == ["allow a 3:* rwm"]
    assert result.policy.allows(Request("b", 3, 9, ACC_M)) and not result.policy.allows(
        Request("c", 4, 0, ACC_R)
    )


def test_a_register_updated_in_place_after_a_join_keeps_its_value() -> None:
    """``r6 += 1`` reads r6: the value must survive the join point before it."""
    program = assemble(
        [
            MAJ,
            alu64("mov", 6, imm=5),
            jmp("jeq", 4, "join", imm=1),
            Label("join"),
            alu64("add", 6, imm=1),
            jmp("jeq", 6, "yes", imm=6),
            *DENY,
            Label("yes"),
            *ALLOW,
        ]
    )
    result = lift(program)
    _agrees_with_the_interpreter(program, result)
    assert result.policy.allows(Request("c", 1, 0, ACC_R)) and result.policy.allows(Request("b", 2, 9, ACC_M))  # type: ignore[union-attr]


_FEW_RULES = st.lists(
    st.builds(
        Rule,
        st.booleans(),
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.none(), st.integers(0, 12), st.just(U32_MAX)),
        st.one_of(st.none(), st.integers(0, 12), st.just(U32_MAX)),
        st.integers(1, 7),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(_FEW_RULES)
def test_a_leaf_is_rendered_only_when_few_rules_can_say_it(rules: list[Rule]) -> None:
    """``_sayable_in`` (the cheap shape test before a remainder leaf is rendered) never refuses a
    policy that so many rules do say: not the policy of any list of at most that many rules,
    not one the renderer says in at most that many."""
    from cgdev.core.lift.result import EXACT_TEXT_RULES, _sayable_in
    from cgdev.core.render import to_rules
    from cgdev.core.semantics import policy_of

    policy = policy_of(rules)
    if len(rules) <= EXACT_TEXT_RULES:
        assert _sayable_in(policy, EXACT_TEXT_RULES)
    if len(to_rules(policy).rules) <= EXACT_TEXT_RULES:
        assert _sayable_in(policy, EXACT_TEXT_RULES)
    assert _sayable_in(policy, len(rules))


def test_a_leaf_of_many_points_is_not_rendered() -> None:
    from cgdev.core.lift.result import _sayable_in
    from cgdev.core.semantics import policy_of

    eight = policy_of([Rule(True, "c", 2 * m, 1, 7) for m in range(8)])
    assert not _sayable_in(eight, 3) and _sayable_in(eight, 8)
