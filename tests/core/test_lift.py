"""Lifter: exact policies of real and generated programs, generators, provenance, opaque reasons."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cgdev.core import interp
from cgdev.core.disasm import parse_bpftool_text
from cgdev.core.isa import AluOp, Cls, Insn, Label, alu32, alu64, assemble, decode, exit_, jmp, ldx
from cgdev.core.lift import LiftResult, lift
from cgdev.core.lift.generators import recognise
from cgdev.core.model import ACC_M, ACC_R, ACC_W, REQUEST_MASKS, U32_MAX, Request, Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics import policy_of
from cgdev.errors import ProgramError
from evidence import EVIDENCE
from fixtures_kernel import requires_root_bpf

CASES = EVIDENCE / "per-case"
needs_evidence = pytest.mark.skipif(
    not CASES.is_dir(), reason=f"reference evidence not found under {EVIDENCE}"
)
# /proc/devices as the lab saw it: enough for systemd's "char-pts" (the only named group used).
PROC_DEVICES = "Character devices:\n  1 mem\n  5 /dev/tty\n 10 misc\n136 pts\n\nBlock devices:\n  8 sd\n"


def _policy_of(rules: list[Rule], semantics: str) -> Policy:
    from cgdev.core.semantics import policy_of

    return policy_of(rules, semantics)


def _gpu() -> Policy:
    return _policy_of([Rule(True, "c", 195, 255, ACC_R | ACC_W)], "ordered")


def _config_rules(case: str) -> list[Rule]:
    from cgdev.core.rules import parse_oci_config

    return parse_oci_config(json.loads((CASES / case / "config.json").read_text()))


def _systemd_expected(case: str) -> Policy:
    from cgdev.core.semantics import systemd_policy

    lines = (CASES / case / "scope-show.txt").read_text().splitlines()
    policy = next(line.split("=", 1)[1] for line in lines if line.startswith("DevicePolicy="))
    allow = [
        tuple(line.split("=", 1)[1].strip().rsplit(" ", 1))
        for line in lines
        if line.startswith("DeviceAllow=")
    ]
    return systemd_policy(policy, allow, PROC_DEVICES)  # type: ignore[arg-type]


def _runtime_expected(case: str) -> Policy:
    """Independent expectation from config.json through engineer A's semantics."""
    semantics = "runc" if case.startswith("runc") else "crun-1.8" if case.startswith("crun181") else "crun"
    return _policy_of(_config_rules(case), semantics)


def _case_of(dump: Path) -> str:
    return dump.parent.name


TEXT_DUMPS = sorted(CASES.glob("*/prog-*.txt")) if CASES.is_dir() else []


@needs_evidence
@pytest.mark.parametrize("dump", TEXT_DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_programs_lift_to_the_policy_their_configuration_implies(dump: Path) -> None:
    case = _case_of(dump)
    result = lift(parse_bpftool_text(dump.read_text()))
    assert result.opaque is None
    runtime = "runc" if case.startswith("runc") else "crun"
    if "sd_devices" in dump.name:
        assert result.generator == "systemd"
        assert result.policy == _systemd_expected(case)
    elif "nvhook" in dump.name:
        assert result.generator == f"libnvidia-container + {runtime}"
        assert result.policy == _runtime_expected(case) | _gpu()
        assert result.rules[0].rule() == Rule(True, "c", 195, 255, ACC_R | ACC_W)
    else:
        assert result.generator == runtime
        assert result.policy == _runtime_expected(case)
    _assert_first_match_reading_is_the_policy(result)


BIN_EXPECTED = {
    # file prefix and role -> (generator, expectation)
    ("crun121", "unnamed"): ("crun", lambda: _runtime_expected("crun-sd")),
    ("crun121", "sd_devices"): ("systemd", lambda: _systemd_expected("crun-sd")),
    ("crun121", "nvhook_sim"): ("libnvidia-container + crun", lambda: _runtime_expected("crun-sd") | _gpu()),
    ("crun181", "unnamed"): ("crun", lambda: _runtime_expected("crun181-sd")),
    ("runc", "unnamed"): ("runc", lambda: _runtime_expected("runc-sd")),
    ("runc", "sd_devices"): ("systemd", lambda: _systemd_expected("runc-sd")),
    ("runc", "nvhook_sim"): ("libnvidia-container + runc", lambda: _runtime_expected("runc-sd") | _gpu()),
}
BINS = sorted((EVIDENCE / "programs").glob("*.bin")) if CASES.is_dir() else []


@needs_evidence
@pytest.mark.parametrize("path", BINS, ids=lambda p: p.name[:70])
def test_real_binaries_lift_exactly_with_their_generator(path: Path) -> None:
    prefix = path.name.split("-", 1)[0]
    role = path.stem.rsplit("--", 1)[1]
    generator, expected = BIN_EXPECTED[(prefix, role)]
    result = lift(decode(path.read_bytes()))
    assert (result.generator, result.opaque) == (generator, None)
    assert result.policy == expected()
    _assert_first_match_reading_is_the_policy(result)


@needs_evidence
def test_crun_sentinel_is_dead_and_hook_prefix_is_first() -> None:
    insns = parse_bpftool_text((CASES / "crun-sd" / "prog-600-nvhook_sim.txt").read_text())
    result = lift(insns)
    ranges = [rule.insn_range for rule in result.rules]
    assert ranges[0] == (0, 12)  # the hook's prefix decides c 195:255 rw
    assert all(not 13 <= lo <= 26 for lo, _ in ranges)  # old prologue + crun's dead sentinel
    decision = result.decide(Request("c", 195, 255, ACC_R))
    assert decision.allowed and decision.insn_range == (0, 12) and decision.rule is result.rules[0]
    denied = result.decide(Request("c", 195, 0, ACC_R))
    assert not denied.allowed and denied.rule is not None and not denied.rule.allow
    assert result.decide(Request("c", 1, 3, 6)).rule.rule() == Rule(True, "c", 1, 3, 7)  # type: ignore[union-attr]


# -- hand-written programs: the lifter agrees with the interpreter --------------------------------

PROLOGUE = [ldx("w", 2, 1, 0), alu32("and", 2, imm=0xFFFF), ldx("w", 3, 1, 0), alu32("rsh", 3, imm=16)]
MAJ, MIN = ldx("w", 4, 1, 4), ldx("w", 5, 1, 8)
ALLOW = [alu64("mov", 0, imm=1), exit_()]
DENY = [alu64("mov", 0, imm=0), exit_()]


def _program(*body: object) -> tuple[Insn, ...]:
    return assemble([*PROLOGUE, MAJ, MIN, *body])  # type: ignore[list-item]


HAND_WRITTEN = {
    "jset-access-and-signed-major": _program(
        jmp("jset", 3, "deny", imm=1),  # mknod denied
        jmp("jsgt", 4, "deny", imm=-1),  # 64-bit signed: a zero-extended major is never negative
        jmp("jslt", 4, "deny", imm=10),
        *ALLOW,
        Label("deny"),
        *DENY,
    ),
    "jmp32-signed": _program(
        jmp("jsgt", 4, "allow", imm=-5, wide32=True),  # as s32: majors -4..2^31-1
        *DENY,
        Label("allow"),
        *ALLOW,
    ),
    "shift-and-mask-fields": _program(
        jmp("jge", 5, "deny", imm=0x10000),
        alu64("mov", 6, src=5),
        alu64("rsh", 6, imm=8),
        alu64("and", 6, imm=0xFF),
        jmp("jne", 6, "deny", imm=3),  # minor bits 8..15 == 3
        alu32("lsh", 4, imm=4),  # 32-bit: wraps
        jmp("jgt", 4, "deny", imm=0x1000, wide32=True),
        *ALLOW,
        Label("deny"),
        *DENY,
    ),
    "half-word-type-and-ranges": assemble(
        [
            ldx("h", 2, 1, 0),
            ldx("h", 3, 1, 2),
            MAJ,
            MIN,
            jmp("jne", 2, "deny", imm=2),
            jmp("jlt", 4, "deny", imm=100),
            jmp("jge", 4, "deny", imm=200),
            jmp("jle", 5, "deny", imm=7),
            alu32("mov", 6, src=3),
            alu32("and", 6, imm=6),
            jmp("jne", 6, "deny", src=3, wide32=True),
            *ALLOW,
            Label("deny"),
            *DENY,
        ]
    ),
    "xor-add-neg-or": _program(
        alu64("xor", 4, imm=0x55),
        alu64("add", 4, imm=-3),
        jmp("jeq", 4, "allow", imm=0x50),
        alu32("neg", 5, imm=0),
        alu32("or", 5, imm=0xF0),
        jmp("jeq", 5, "allow", imm=0xFFFFFFFF, wide32=True),
        *DENY,
        Label("allow"),
        *ALLOW,
    ),
    "verdict-from-access-bits": _program(
        alu32("mov", 0, imm=0b0100_0100), alu32("rsh", 0, src=3), alu32("and", 0, imm=1), exit_()
    ),
}


def _interesting(insns: tuple[Insn, ...], rng: random.Random) -> list[Request]:
    consts = {0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000}
    for insn in insns:
        for delta in (-1, 0, 1):
            consts.add((insn.imm + delta) & 0xFFFF_FFFF)
            consts.add(((insn.imm << 8) + delta) & 0xFFFF_FFFF)
    values = sorted(consts) + [rng.randrange(1 << 32) for _ in range(20)]
    return [
        Request(t, rng.choice(values), rng.choice(values), rng.choice(REQUEST_MASKS))  # type: ignore[arg-type]
        for t in "bc"
        for _ in range(600)
    ]


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_programs_lift_exactly(name: str) -> None:
    insns = HAND_WRITTEN[name]
    result = lift(insns)
    assert result.opaque is None, result.opaque
    assert result.policy is not None
    rng = random.Random(name)
    for request in _interesting(insns, rng):
        assert result.policy.allows(request) == bool(interp.run(insns, request).verdict), request


def test_lift_of_a_minor_bitfield_is_exact_and_not_a_guess() -> None:
    insns = HAND_WRITTEN["shift-and-mask-fields"]
    policy = lift(insns).policy
    assert policy is not None
    assert policy.verdict("c", 1, 0x0300, 2) and policy.verdict("c", 1, 0x03FF, 2)
    assert not policy.verdict("c", 1, 0x1_0300, 2)
    assert not policy.verdict("c", 1, 0x0400, 2)
    assert not policy.verdict("c", 0x101, 0x0300, 2)  # 0x1010 > 0x1000
    assert policy.verdict("c", 0x1000_0001, 0x0300, 2)  # << 4 wraps to 0x10 in 32 bits


# -- generated programs: every shape lifts to its semantics --------------------------------------


def _random_rules(rng: random.Random, n: int) -> list[Rule]:
    return [
        Rule(
            rng.random() < 0.8,
            rng.choice("abc"),  # type: ignore[arg-type]
            rng.choice([None, 1, 5, 10, 136, 195, rng.randrange(300)]),
            rng.choice([None, 0, 1, 3, 200, 255, rng.randrange(300)]),
            rng.randint(1, 7),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("shape", ["runc", "crun", "systemd"])
def test_runtime_shapes_lift_to_their_semantics(shape: str) -> None:
    from cgdev.core.shapes import shape_program
    from cgdev.errors import InputError

    rng = random.Random(shape)
    checked = 0
    for _ in range(60):
        rules = _random_rules(rng, rng.randint(0, 12))
        if shape != "crun":
            rules = [r for r in rules if r.allow or shape == "runc"]
        try:
            program = shape_program(rules, shape)
            expected = _policy_of(rules, shape)
        except InputError:
            continue  # the runtime itself refuses this list (runc: hole punching, ...)
        if not program:
            continue
        result = lift(program)
        assert result.opaque is None
        assert result.generator == shape or (shape == "runc" and result.generator in ("runc", "youki"))
        assert result.policy == expected, (rules, result.policy.diff(expected, 3))
        _assert_first_match_reading_is_the_policy(result)
        checked += 1
    assert checked >= 20


def _assert_first_match_reading_is_the_policy(result: LiftResult) -> None:
    """The lifted rules, read top-down with the first match deciding, are the program: checked on
    every boundary of the policy and of every rule's box."""
    assert result.policy is not None
    assert result.reads_as_rules, [str(r) for r in result.rules]
    edges = {0, 1, U32_MAX}
    for _t, major_lo, major_hi, minor_lo, minor_hi, _masks in result.policy.regions():
        edges |= {major_lo, major_hi, minor_lo, minor_hi}
    for rule in result.rules:
        for values in (rule.majors, rule.minors):
            edges |= {v for lo, hi in values or () for v in (lo, hi)}
    points = sorted({v + d for v in edges for d in (-1, 0, 1) if 0 <= v + d <= U32_MAX})
    for dev_type in ("b", "c"):
        for major in points:
            for minor in points[:: max(1, len(points) // 40)] if len(points) > 200 else points:
                for mask in REQUEST_MASKS:
                    request = Request(dev_type, major, minor, mask)
                    first = result.first_match(request)
                    assert first.allow == result.policy.allows(request), (str(request), str(first))


def _random_policy(rng: random.Random) -> Policy:
    return _policy_of(_random_rules(rng, rng.randint(0, 25)), "ordered")


def test_lift_of_compile_is_identity() -> None:
    from cgdev.core.compile import compile_policy

    rng = random.Random(7)
    for _ in range(80):
        policy = _random_policy(rng)
        program = compile_policy(policy)
        result = lift(program)
        assert result.generator == "cgdev"
        assert result.policy == policy, policy.diff(result.policy, 3) if result.policy else result.opaque


# -- opaque: reported with the reason, never guessed ---------------------------------------------

OPAQUE = {
    "helper call": (assemble([Insn(0x85, 0, 0, 0, 14), *ALLOW]), "helper call bpf_get_current_pid_tgid#14"),
    "map reference": ((Insn(0x18, 1, 1, 0, 3), Insn(0), *ALLOW), "map reference"),
    "stack traffic": (
        assemble([MAJ, Insn(0x63, 10, 4, -4, 0), ldx("w", 5, 10, -4), *ALLOW]),
        "stack traffic",
    ),
    "loop": (
        assemble([alu64("mov", 0, imm=0), Label("top"), jmp("jeq", 0, "top", imm=1), exit_()]),
        "back-edge",
    ),
    "non-constant compare": (
        assemble([MAJ, MIN, jmp("jeq", 4, "x", src=5), Label("x"), *ALLOW]),
        "non-constant",
    ),
    "multiplication": (
        assemble([MAJ, alu64("mul", 4, imm=3), jmp("jeq", 4, "x", imm=9), Label("x"), *ALLOW]),
        "mul",
    ),
}
BLINDED = (Insn(0xB7, 11, 0, 0, 5), Insn(0xA7, 11, 0, 0, 7), *ALLOW)


def test_blinded_only_when_the_kernel_said_so() -> None:
    """Issue 12 item 4: "constants are blinded" only for a program the kernel gave blinded; the
    same bytes from a file, all-zero bytes, or garbage are "not a device program"."""
    result = lift(BLINDED, blinded=True)
    assert result.policy is None and result.opaque is not None and "blinded" in result.opaque
    assert result.decide(Request("c", 1, 3, ACC_R)).allowed  # still answered concretely
    for insns in (BLINDED, (Insn(0),) * 12, (Insn(0xF0, 1, 2, 3, 4), *ALLOW)):
        with pytest.raises(ProgramError, match=r"^not a device program: "):
            lift(insns)


def test_elf_and_odd_lengths_are_not_device_programs() -> None:
    for raw in (b"\x7fELF\x02\x01\x01\x00" * 4, b"\x95" * 12):
        with pytest.raises(ProgramError, match="not a device program"):
            decode(raw)


@pytest.mark.parametrize("name", sorted(OPAQUE))
def test_opaque_programs_name_the_reason(name: str) -> None:
    insns, reason = OPAQUE[name]
    result = lift(insns)
    assert result.policy is None and result.opaque is not None
    assert reason in result.opaque
    assert result.rules == []


def test_a_helper_call_is_named_and_its_verdict_unknown() -> None:
    """Issue 12 item 2: named as bpftool prints it -- the helper id of a program as loaded, the
    kernel's symbol for a dump's translated offset (never the offset alone when it is known)."""
    insns = assemble([Insn(0x85, 0, 0, 0, 15), *ALLOW])
    loaded = lift(insns)
    assert loaded.opaque is not None and "helper call bpf_get_current_uid_gid#15" in loaded.opaque
    decision = loaded.decide(Request("c", 1, 3, ACC_R))
    assert decision.allowed is None and decision.rule is None
    dumped = assemble([Insn(0x85, 0, 0, 0, 281664), *ALLOW])
    assert "bpf_get_current_uid_gid#281664" in (
        lift(dumped, calls={281664: "bpf_get_current_uid_gid"}).opaque or ""
    )
    assert "helper call #281664" in (lift(dumped, calls={}).opaque or "")


@pytest.mark.parametrize(
    ("insns", "message"),
    [
        ((alu64("mov", 0, imm=0),), "last instruction is not an exit"),
        ((ldx("w", 2, 1, 12), *ALLOW), "invalid context access"),
        ((exit_(),), "r0 is read before it is written"),
        ((alu64("mov", 0, imm=2), exit_()), "r0 = 2 at exit"),
        ((Insn(0x55, 0, 0, 5, 0), *ALLOW), "jump out of range"),
        # the executor's own refusal names the instruction, as the checker's do
        ((ldx("w", 3, 1, 0), alu32("lsh", 3, imm=40), *ALLOW), "instruction 1: invalid shift by 40"),
        ((ldx("w", 3, 1, 0), alu32("rsh", 3, imm=32), *ALLOW), "instruction 1: invalid shift by 32"),
        ((ldx("w", 3, 1, 0), alu64("arsh", 3, imm=64), *ALLOW), "instruction 1: invalid shift by 64"),
    ],
)
def test_programs_the_kernel_refuses_raise(insns: tuple[Insn, ...], message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        lift(insns)


def test_generators_by_fingerprint() -> None:
    assert recognise((alu64("mov", 0, imm=0), exit_())) == "systemd"
    assert recognise((alu64("mov", 0, imm=1), exit_())) == "unknown"
    assert recognise(assemble([alu32("mov", 0, imm=1), exit_()]), cgdev=True) == "cgdev"


# -- performance: a 10,000-rule chain and cgdev's tree ------------------------------------------


def _big_rules(n: int, seed: int) -> list[Rule]:
    rng = random.Random(seed)
    return [
        Rule(True, rng.choice("bc"), rng.randrange(4000), rng.randrange(300), rng.randint(1, 7))  # type: ignore[arg-type]
        for _ in range(n)
    ]


@pytest.mark.parametrize("shape", ["runc", "cgdev"])
def test_lift_of_10000_rules_is_exact(shape: str) -> None:
    """Speed is measured in bench/bench_compile.py; here only exactness at that size."""
    rules = _big_rules(10_000, 3)
    expected = _policy_of(rules, "ordered")
    if shape == "runc":
        from cgdev.core.semantics import runc_program_rules
        from cgdev.core.shapes import runc_program

        default_allow, emitted = runc_program_rules(rules)
        program = runc_program(default_allow, emitted)
        expected = _policy_of(rules, "runc")
    else:
        from cgdev.core.compile import compile_policy

        program = compile_policy(expected)
    result = lift(program)
    assert result.policy == expected


# -- youki: runc's block layout, but the spec's order reversed and actions mixed -----------------

# youki's defaults, appended after the user's rules (anchors.md §5).
YOUKI_DEFAULTS = [
    *(Rule(True, "c", 1, minor, 7) for minor in (3, 5, 7, 9, 8)),
    Rule(True, "c", 5, 0, 7),
    Rule(True, "c", None, None, 1),
    Rule(True, "b", None, None, 1),
    Rule(True, "c", 5, 1, 7),
    Rule(True, "c", 136, None, 7),
    Rule(True, "c", 5, 2, 7),
    Rule(True, "c", 10, 200, 7),
]


def _last_match(rules: list[Rule], request: Request) -> bool:
    """youki's reading, written independently of cgdev's semantics: the last rule whose type,
    numbers and access (a superset of the request's) match decides; none matching denies."""
    for rule in reversed(rules):
        if (
            rule.type in ("a", request.type)
            and rule.major in (None, request.major)
            and rule.minor in (None, request.minor)
            and request.access & ~rule.access == 0
        ):
            return rule.allow
    return False


def test_youki_shaped_chains_are_named_youki_and_lift_exactly() -> None:
    from cgdev.core.shapes import runc_program

    rng = random.Random("youki")
    for _ in range(40):
        user = [r for r in _random_rules(rng, rng.randint(1, 10)) if r.type != "a"]
        user.append(Rule(False, "c", rng.randrange(1, 300), rng.randrange(300), rng.randint(1, 7)))
        rules = user + YOUKI_DEFAULTS
        result = lift(runc_program(False, list(reversed(rules))))
        assert result.generator == "youki", [str(r) for r in rules]
        assert result.policy is not None and result.reads_as_rules
        edges = sorted(
            {v + d for r in rules for v in (r.major or 0, r.minor or 0) for d in (-1, 0, 1)} - {-1}
        )
        for dev_type in ("b", "c"):
            for major in edges:
                for minor in edges:
                    for mask in REQUEST_MASKS:
                        request = Request(dev_type, major, minor, mask)
                        assert result.policy.allows(request) == _last_match(rules, request), str(request)
                        assert result.first_match(request).allow == _last_match(rules, request)


def test_a_trees_leaf_says_exactly_what_it_decided() -> None:
    """A cgdev leaf reached after other tests is a remainder: its text is the exact decided set
    when plain rules can say it, and it never claims to be a single rule."""
    from cgdev.core.compile import compile_policy

    program = compile_policy(_policy_of([Rule(True, "c", 1, 3, ACC_R)], "ordered"))
    result = lift(program)
    allowed = result.decide(Request("c", 1, 3, ACC_R))
    assert allowed.allowed and allowed.rule is not None
    assert str(allowed.rule) == "allow c 1:3 r" and allowed.rule.rule() is None
    denied = result.decide(Request("c", 1, 3, ACC_R | ACC_W))
    assert not denied.allowed and denied.rule is not None and not str(denied.rule).startswith("allow")
    assert all(rule.rule() is None for rule in result.rules if rule.remainder)


def test_instructions_no_rule_covers_are_named() -> None:
    """Issue 12 item 13: crun's program lost its prologue and its dead rules from ``lift``."""
    from cgdev.core.lift import GapKind
    from cgdev.core.rules import parse_rule_text
    from cgdev.core.shapes import shape_program

    rules = parse_rule_text("deny a\nallow c 1:3 rwm\nallow c 136:* rw")
    insns = shape_program(rules, "crun")
    result = lift(insns)
    kinds = {(gap.start, gap.end): gap.kind for gap in result.gaps}
    assert kinds[(0, 5)] is GapKind.PROLOGUE  # the six context loads
    assert GapKind.DEAD in kinds.values()  # crun's default empty-access entry matches nothing
    covered = {pc for rule in result.rules for pc in range(rule.insn_range[0], rule.insn_range[1] + 1)}
    gaps = {pc for gap in result.gaps for pc in range(gap.start, gap.end + 1)}
    assert covered | gaps == set(range(len(insns))) and not covered & gaps
    assert result.to_json()["gaps"][0] == {
        "insn_range": [0, 5],
        "kind": "prologue",
        "why": "loads of the context before the first test",
    }
    # an unconditional verdict leaves what follows it unreachable
    dead = assemble([alu64("mov", 0, imm=1), exit_(), alu64("mov", 0, imm=0), exit_()])
    assert [(g.start, g.end, g.kind) for g in lift(dead).gaps] == [(2, 3, GapKind.DEAD)]


# -- the lifter against the interpreter on arithmetic over major/minor (issue 12 item 21) ---------
# Programs that transform a field before comparing it (``w7 += 3; if w7 s> 9``...): the lifter
# follows such arithmetic symbolically, and wherever it answers (not opaque) its policy must
# agree with the interpreter on every request around the constants involved.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ARITH = ("add", "sub", "or", "xor", "and", "lsh", "rsh", "arsh", "mul", "neg", "mov")
_CMPS = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle")
_CONSTS = st.one_of(st.integers(0, 20), st.sampled_from([0x7F, 0xFF, 0xFFF, 0x7FFF_FFFF, -1, -8]))


@st.composite
def arithmetic_programs(draw: st.DrawFn) -> tuple[tuple[Insn, ...], list[int]]:
    reg, off = draw(st.sampled_from([(7, 4), (8, 8)]))
    body: list[object] = [ldx("w", 6, 1, 0), ldx("w", reg, 1, off)]
    consts: list[int] = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(_ARITH))
        alu = draw(st.sampled_from([alu32, alu64]))
        const = draw(_CONSTS) if name not in ("lsh", "rsh", "arsh") else draw(st.integers(0, 31))
        body.append(alu(name, reg, imm=0 if name == "neg" else const))
        consts.append(const)
    for k in range(draw(st.integers(1, 2))):
        const = draw(_CONSTS)
        consts.append(const)
        body.append(jmp(draw(st.sampled_from(_CMPS)), reg, f"t{k}", imm=const, wide32=draw(st.booleans())))
    body += [alu64("mov", 0, imm=0), exit_()]
    for k in range(2):
        body += [Label(f"t{k}"), alu64("mov", 0, imm=draw(st.integers(0, 1))), exit_()]
    return assemble(body), consts


@settings(max_examples=40, deadline=None, derandomize=True)
@given(arithmetic_programs())
def test_lift_agrees_with_the_interpreter_on_arithmetic_over_the_fields(
    case: tuple[tuple[Insn, ...], list[int]],
) -> None:
    program, consts = case
    try:
        result = lift(program)
    except ProgramError:
        return  # refused as the kernel would (the interpreter refuses it too)
    if result.opaque is not None:
        return  # not followed: only concrete answers are given, never a guess
    numbers = {0, 1, 2, 0x7FFF_FFFF, 0x8000_0000, U32_MAX - 1, U32_MAX}
    for c in consts:
        for d in (-2, -1, 0, 1, 2):
            numbers.update(v & U32_MAX for v in (c + d, -c + d, (c << 1) + d, c * 3 + d))
    for n in sorted(numbers):
        for mask in (ACC_R, ACC_R | ACC_W):
            for request in (Request("c", n, 5, mask), Request("b", 5, n, mask)):
                expected = interp.run(program, request).verdict
                assert result.policy.allows(request) == bool(expected), f"{request}"


@pytest.mark.parametrize("name", ["add", "sub", "or", "xor", "and", "lsh", "rsh"])
def test_common_arithmetic_on_a_field_is_followed_exactly(name: str) -> None:
    """``w7 <op>= c; if w7 == k``: followed symbolically (not opaque), and exact."""
    const = 3
    body = [ldx("w", 7, 1, 4), alu32(name, 7, imm=const), jmp("jeq", 7, "t", imm=8, wide32=True)]
    program = assemble([*body, alu64("mov", 0, imm=0), exit_(), Label("t"), alu64("mov", 0, imm=1), exit_()])
    result = lift(program)
    assert result.opaque is None, result.opaque
    for major in (*range(0, 40), 0x8000_0000, U32_MAX - 2, U32_MAX):
        request = Request("c", major, 1, ACC_R)
        assert result.policy.allows(request) == bool(interp.run(program, request).verdict), request


ProbeFn = Callable[[bytes | None, Sequence[Request]], list[bool]]


@requires_root_bpf
def test_interpreter_and_lifter_agree_with_the_kernel_on_hand_written_programs(probe: ProbeFn) -> None:
    from cgdev.core.isa import encode
    from kernel_requests import known_and_free_devices

    requests = known_and_free_devices(random.Random(9))
    for name, insns in HAND_WRITTEN.items():
        kernel = probe(encode(insns), requests)
        assert [bool(interp.run(insns, r).verdict) for r in requests] == kernel, name
        policy = lift(insns).policy
        assert policy is not None and [policy.allows(r) for r in requests] == kernel, name


def test_a_constant_that_is_one_value_on_the_live_contexts_is_compared_exactly() -> None:
    """``if major == r3`` where r3 holds the request's type: different per context overall, one
    value (2) on the character contexts, the only ones live on that path: exact, not opaque."""
    program = assemble(
        [
            ldx("w", 6, 1, 0),
            ldx("w", 2, 1, 4),
            jmp("jset", 6, "block", imm=1, wide32=True),
            alu32("mov", 3, src=6),
            alu32("and", 3, imm=0xFFFF),
            jmp("jeq", 2, "allow", src=3, wide32=True),
            alu32("mov", 0, imm=0),
            exit_(),
            Label("allow"),
            alu32("mov", 0, imm=1),
            exit_(),
            Label("block"),
            alu32("mov", 0, imm=0),
            exit_(),
        ]
    )
    result = lift(program)
    assert result.opaque is None
    assert result.policy == policy_of([Rule(True, "c", 2, None, ACC_R | ACC_W | ACC_M)])


def test_signed_division_of_per_context_values_is_signed() -> None:
    """``w3 s/= 2`` (``off`` = 1) on a value that differs per context and is negative as an s32:
    the sign bit survives a signed division and not an unsigned one, and it is the verdict."""
    program = (
        ldx("w", 6, 1, 0),
        alu32("mov", 3, src=6),
        alu32("or", 3, imm=-0x8000_0000),
        Insn(int(Cls.ALU | AluOp.DIV), 3, 0, 1, 2),  # sdiv: the division with off = 1
        alu32("mov", 0, src=3),
        alu32("rsh", 0, imm=31),
        exit_(),
    )
    result = lift(program)
    assert result.policy == policy_of([Rule(True, "a", None, None, ACC_R | ACC_W | ACC_M)])
    assert interp.run(program, Request("c", 1, 3, ACC_R)).verdict == 1
