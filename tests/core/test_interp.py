"""Interpreter: kernel semantics for device programs, refusals, and agreement with the kernel."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from cgdev.core.interp import RejectedProgram, check, run
from cgdev.core.isa import Insn, Label, alu32, alu64, assemble, decode, encode, exit_, jmp, ld_imm64, ldx
from cgdev.core.lift import lift
from cgdev.core.model import ACC_M, ACC_R, ACC_W, REQUEST_MASKS, Request
from cgdev.errors import ProgramError
from evidence import EVIDENCE
from fixtures_kernel import requires_root_bpf

BINS = sorted((EVIDENCE / "programs").glob("*.bin"))
RW = ACC_R | ACC_W


def _ret(value: int) -> list[Insn]:
    return [alu64("mov", 0, imm=value), exit_()]


def _verdict_of(body: list[object], ctx: tuple[int, int, int, int] = (2, 2, 1, 3)) -> int:
    return run(assemble(body), ctx).verdict  # type: ignore[arg-type]


@pytest.mark.skipif(not BINS, reason="reference evidence not found")
def test_real_programs_known_verdicts() -> None:
    by_role = {p.stem.rsplit("--", 1)[1]: decode(p.read_bytes()) for p in BINS}
    crun = decode(next(p for p in BINS if p.name.startswith("crun121-fs")).read_bytes())
    hook = by_role["nvhook_sim"]
    for insns in (crun, hook):
        assert run(insns, Request("c", 1, 3, RW)).verdict == 1
        assert run(insns, Request("b", 8, 0, ACC_M)).verdict == 1
        assert run(insns, Request("b", 8, 0, ACC_R)).verdict == 0
    assert run(crun, Request("c", 195, 255, RW)).verdict == 0
    assert run(hook, Request("c", 195, 255, RW)).verdict == 1
    assert run(hook, Request("c", 195, 0, ACC_R)).verdict == 0  # the hook grants 195:255 only
    outcome = run(crun, Request("c", 1, 3, ACC_R))
    assert 6 < outcome.executed < len(crun)


def _taken(setup: list[object], jump: object) -> bool:
    """Whether ``jump`` (to label ``t``) is taken after ``setup``: the program returns 1 there."""
    return _verdict_of([*setup, jump, *_ret(0), Label("t"), *_ret(1)]) == 1


def test_alu_semantics_match_the_kernel() -> None:
    # 32-bit ops zero-extend; division by zero gives 0, modulo by zero keeps the dividend
    assert _taken([alu64("mov", 1, imm=-1), alu32("add", 1, imm=1)], jmp("jeq", 1, "t", imm=0))
    assert _taken([alu64("mov", 1, imm=7), alu64("div", 1, imm=0)], jmp("jeq", 1, "t", imm=0))
    assert _taken(
        [alu64("mov", 1, imm=7), alu64("mov", 2, imm=0), alu64("mod", 1, src=2)], jmp("jeq", 1, "t", imm=7)
    )
    # 64-bit compares sign-extend the immediate; JMP32 compares the low half
    assert not _taken([*ld_imm64(1, 0xFFFF_FFFF)], jmp("jeq", 1, "t", imm=-1))
    assert _taken([*ld_imm64(1, 0x1_0000_0005)], jmp("jeq", 1, "t", imm=5, wide32=True))
    assert _taken([alu64("mov", 1, imm=-2)], jmp("jslt", 1, "t", imm=-1))
    assert _taken([alu64("mov", 1, imm=-2)], jmp("jlt", 1, "t", imm=-1))
    assert not _taken([alu64("mov", 1, imm=6)], jmp("jset", 1, "t", imm=1))
    assert _taken([alu64("mov", 1, imm=-16), alu64("arsh", 1, imm=2)], jmp("jeq", 1, "t", imm=-4))


def test_context_loads_follow_the_verifier_rules() -> None:
    ctx = (2, RW, 195, 255)
    half = assemble([ldx("h", 2, 1, 2), jmp("jeq", 2, "t", imm=RW), *_ret(0), Label("t"), *_ret(1)])
    assert run(half, ctx).verdict == 1
    byte = assemble([ldx("b", 2, 1, 0), jmp("jeq", 2, "t", imm=2), *_ret(0), Label("t"), *_ret(1)])
    assert run(byte, ctx).verdict == 1
    for bad in (
        ldx("h", 2, 1, 4),
        ldx("dw", 2, 1, 0),
        ldx("w", 2, 1, 2),
        ldx("w", 2, 1, 12),
        ldx("b", 2, 1, -1),
    ):
        with pytest.raises(RejectedProgram, match="invalid context access"):
            run((bad, *_ret(1)), ctx)


@pytest.mark.parametrize(
    ("insns", "reason"),
    [
        ((exit_(),), "r0 is read before it is written"),
        ((alu64("add", 3, imm=1), *_ret(1)), "r3 is read before it is written"),
        ((alu64("mov", 0, imm=2), exit_()), "returns 0 or 1"),
        ((alu64("mov", 0, imm=1),), "last instruction is not an exit"),
        ((Insn(0x05, 0, 0, 5, 0), *_ret(1)), "jump out of range"),
        ((Insn(0x62, 1, 0, 0, 0), *_ret(1)), "store outside the stack"),
        ((alu64("mov", 10, imm=0), *_ret(1)), "read-only"),
        ((ldx("w", 2, 10, -4), *_ret(1)), "uninitialised stack"),
        ((alu64("lsh", 2, imm=64), *_ret(1)), "invalid shift"),
        ((Insn(0x20), *_ret(1)), "legacy packet load"),
        ((Insn(0xB7, 12, 0, 0, 0), *_ret(1)), "invalid register"),
        ((Insn(0x18, 1, 0, 0, 1), *_ret(1)), "reserved fields"),
        ((alu64("mov", 0, imm=0), Insn(0x05, 0, 0, -2, 0)), "more than 1000 instructions"),
    ],
)
def test_refusals_name_the_instruction_and_reason(insns: tuple[Insn, ...], reason: str) -> None:
    with pytest.raises(RejectedProgram, match=reason) as info:
        run(insns, (2, ACC_R, 1, 3), max_steps=1000)
    assert str(info.value).removeprefix("not a device program: ").startswith("instruction ")


def test_a_helper_call_is_unknown_not_rejected() -> None:
    """Issue 12 item 2: the kernel loads and runs a program with a helper call; the interpreter
    said "rejected" (exit 2 in explain and lift --check).  A path through the call is unknown;
    a path around it is answered."""
    from cgdev.core.interp import UnmodelledCall

    insns = assemble([
        ldx("w", 2, 1, 4),  # r2 = major
        Insn(0x55, 2, 0, 3, 195),  # if major != 195 goto allow
        Insn(0x85, 0, 0, 0, 15),  # call bpf_get_current_uid_gid
        *_ret(0),
        *_ret(1),
    ])  # fmt: skip
    with pytest.raises(UnmodelledCall) as info:
        run(insns, Request("c", 195, 255, ACC_R))
    assert not isinstance(info.value, RejectedProgram) and (info.value.pc, info.value.imm) == (2, 15)
    assert run(insns, Request("c", 1, 3, ACC_R)).verdict == 1


def test_stack_round_trip_and_check_is_shared() -> None:
    insns = assemble([alu64("mov", 2, imm=1), Insn(0x7B, 10, 2, -8, 0), ldx("dw", 0, 10, -8), exit_()])
    assert run(insns, Request("c", 1, 3, ACC_R)).verdict == 1
    with pytest.raises(ProgramError):
        check(())


# -- the kernel as the oracle ---------------------------------------------------------------------


def _kernel_requests(rng: random.Random) -> list[Request]:
    from cgdev.adapters.device_safety import driverless_majors, is_safe_to_open

    free_c, free_b = driverless_majors("c")[:40], driverless_majors("b")[:40]
    devices = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
               ("c", 5, 2), ("c", 136, 4), ("c", 10, 200), ("c", 195, 255), ("c", 195, 0), ("b", 8, 0),
               ("b", 1, 3), ("c", 508, 0)]  # fmt: skip
    devices += [("c", rng.choice(free_c), rng.randrange(1 << 20)) for _ in range(6)]
    devices += [("b", rng.choice(free_b), rng.randrange(1 << 20)) for _ in range(4)]
    out = []
    for t, major, minor in devices:
        for mask in REQUEST_MASKS:
            request = Request(t, major, minor, mask)  # type: ignore[arg-type]
            if mask == ACC_M or is_safe_to_open(request):
                out.append(request)
    return out


ProbeFn = Callable[[bytes | None, Sequence[Request]], list[bool]]


@requires_root_bpf
@pytest.mark.skipif(not BINS, reason="reference evidence not found")
def test_interpreter_and_lifter_agree_with_the_kernel_on_real_programs(probe: ProbeFn) -> None:
    rng = random.Random(5)
    requests = _kernel_requests(rng)
    for path in BINS:
        insns = decode(path.read_bytes())
        kernel = probe(encode(insns), requests)
        interpreted = [bool(run(insns, r).verdict) for r in requests]
        policy = lift(insns).policy
        assert policy is not None
        lifted = [policy.allows(r) for r in requests]
        assert interpreted == kernel, path.name
        assert lifted == kernel, path.name


@requires_root_bpf
def test_interpreter_agrees_with_the_kernel_on_tricky_programs(probe: ProbeFn) -> None:
    from test_lift import HAND_WRITTEN

    rng = random.Random(9)
    requests = _kernel_requests(rng)
    for name, insns in HAND_WRITTEN.items():
        kernel = probe(encode(insns), requests)
        assert [bool(run(insns, r).verdict) for r in requests] == kernel, name
        policy = lift(insns).policy
        assert policy is not None and [policy.allows(r) for r in requests] == kernel, name


@pytest.mark.parametrize(
    ("insns", "why"),
    [
        ((Insn(0x05, 0, 0, 1, 0), exit_()), "jump out of range to 2"),  # one past the end: refused
        ((alu64("mov", 0, imm=0), Insn(0x15, 0, 0, -5, 0), *_ret(1)), "jump out of range to -3"),
        ((Insn(0x06, 0, 0, 0, 9), exit_()), "jump out of range to 10"),  # gotol
        ((Insn(0xF5), exit_()), "unknown jump opcode 0xf5"),  # was KeyError: 240
        ((Insn(0x0D), *_ret(1)), "unknown jump opcode 0x0d"),  # ja takes no source register
        ((Insn(0xE4, 0, 0, 0, 1), *_ret(1)), "unknown ALU opcode 0xe4"),
        ((Insn(0xB7, 12, 0, 0, 0), *_ret(1)), "invalid register"),  # was IndexError
        ((Insn(0xBF, 0, 15, 0, 0), exit_()), "invalid register"),
        ((Insn(0xB7, 11, 0, 0, 0), *_ret(1)), "invalid register"),  # AX, but not blinded
        ((ldx("w", 2, 1, 12), *_ret(1)), "invalid context access off=12"),
        ((ldx("dw", 2, 1, 8), *_ret(1)), "invalid context access off=8 size=8"),
        ((Insn(0x30), *_ret(1)), "legacy packet load"),
        ((Insn(0xC3, 10, 0, -8, 0), *_ret(1)), "unsupported memory opcode"),  # atomic
    ],
)
def test_invalid_programs_are_program_errors_even_unchecked(insns: tuple[Insn, ...], why: str) -> None:
    """Issue 12 item 3: ``lift --check`` ran the interpreter on programs nobody had checked and got
    ``IndexError``/``KeyError``; checked or not, the answer is a ``RejectedProgram`` saying why."""
    for checked in (False, True):
        with pytest.raises(RejectedProgram, match=why):
            run(insns, (2, ACC_R, 1, 3), max_steps=1000, checked=checked)
    if "context" not in why:  # the structure alone says it: the shared check names it so
        with pytest.raises(RejectedProgram, match=r"^not a device program: instruction"):
            check(insns)
