"""Interpreter: kernel semantics for device programs, refusals, and agreement with the kernel."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from cgdev.core.interp import RejectedProgram, check, run
from cgdev.core.isa import Insn, Label, alu32, alu64, assemble, decode, encode, exit_, jmp, ld_imm64, ldx
from cgdev.core.lift import lift
from cgdev.core.model import ACC_M, ACC_R, ACC_W, Request
from cgdev.errors import ProgramError
from evidence import EVIDENCE
from fixtures_kernel import requires_root_bpf
from kernel_requests import known_and_free_devices

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
    assert isinstance(info.value.pc, int) and 0 <= info.value.pc < len(insns)
    assert str(info.value).removeprefix("not a device program: ").startswith(f"instruction {info.value.pc}: ")


_MOV_R0_1 = alu64("mov", 0, imm=1)


@pytest.mark.parametrize(
    ("insns", "pc", "reason"),
    [
        ((_MOV_R0_1, exit_(), Insn(0x18, 1, 0, 0, 1)), 2, "ld_imm64 without its second slot"),
        ((Insn(0xE7, 1, 0, 0, 0), *_ret(1)), 0, "unknown ALU opcode 0xe7"),
        ((Insn(0x01, 2, 1, 0, 0), *_ret(1)), 0, "unsupported memory opcode 0x01"),  # LDX, mode 0
        ((Insn(0x82, 10, 0, -4, 0), *_ret(1)), 0, "unsupported memory opcode 0x82"),  # ST, mode 0x80
        ((_MOV_R0_1, Insn(0x96, 0, 0, 0, 0)), 1, "unknown jump opcode 0x96"),  # JMP32 | exit
        ((Insn(0x86, 0, 0, 0, 1), *_ret(1)), 0, "unknown jump opcode 0x86"),  # JMP32 | call
        (
            (Insn(0x18, 1, 1, 0, 0), Insn(0, 0, 0, 0, 0), *_ret(1)),
            0,
            "ld_imm64 with pseudo source 1 (map reference)",
        ),
        ((alu64("mov", 0, src=1), exit_()), 1, "r0 holds a pointer at exit"),
        ((alu64("mov", 10, imm=0), *_ret(1)), 0, "r10 (frame pointer) is read-only"),
        ((alu64("add", 3, imm=1), *_ret(1)), 0, "r3 is read before it is written"),
        ((Insn(0x18, 1, 0, 0, 1), *_ret(1)), 0, "ld_imm64 second slot has reserved fields set"),
        ((alu64("mov", 2, imm=1), ldx("w", 3, 2, 0), *_ret(1)), 1, "load through r2, which is not a pointer"),
        ((Insn(0x81, 2, 1, 0, 0), *_ret(1)), 0, "sign-extending load from the context"),
        ((Insn(0x7B, 10, 1, -8, 0), *_ret(1)), 0, "spilling a pointer to the stack is not modelled"),
        (
            (alu64("mov", 2, imm=1), Insn(0x63, 10, 2, -516, 0), *_ret(1)),
            1,
            "invalid stack access off=-516 size=4",
        ),
        ((alu64("mov", 2, imm=1), Insn(0xD4, 2, 0, 0, 8), *_ret(1)), 1, "invalid byte swap width 8"),
        # the structural check goes on after a plain instruction (the checker's fast path)
        ((_MOV_R0_1, Insn(0xE7, 1, 0, 0, 0), exit_()), 1, "unknown ALU opcode 0xe7"),
        (
            (Insn(0x05, 0, 0, 1, 0), Insn(0x18, 1, 0, 0, 1), Insn(0, 0, 0, 0, 0), *_ret(1)),
            0,
            "jump into the middle of ld_imm64 at 1",
        ),
    ],
)
def test_every_refusal_names_its_instruction(insns: tuple[Insn, ...], pc: int, reason: str) -> None:
    with pytest.raises(RejectedProgram) as info:
        run(insns, (2, ACC_R, 1, 3), max_steps=1000)
    assert str(info.value).removeprefix("not a device program: ") == f"instruction {pc}: {reason}"
    assert info.value.pc == pc


def test_an_empty_program_is_refused_as_empty() -> None:
    with pytest.raises(ProgramError, match=r"^not a device program: empty$"):
        check(())


def test_executed_counts_every_instruction_once() -> None:
    assert run((_MOV_R0_1, exit_()), (2, ACC_R, 1, 3)).executed == 2
    body = [alu64("mov", 2, imm=0), jmp("jeq", 2, "t", imm=0), *_ret(0), Label("t"), *_ret(1)]
    assert run(assemble(body), (2, ACC_R, 1, 3)).executed == 4  # mov, jeq, mov, exit


def test_the_stack_holds_what_was_stored_at_its_very_ends() -> None:
    """Stores at the bottom (r10 - 512) and top of the stack, immediate and register forms,
    read back whole and in part."""
    value = 0x1122_3344_5566_7788
    body = [
        *ld_imm64(2, value),
        Insn(0x7B, 10, 2, -512, 0),  # *(u64 *)(r10 - 512) = r2
        Insn(0x62, 10, 0, -4, 0x1234),  # *(u32 *)(r10 - 4) = 0x1234
        ldx("dw", 3, 10, -512),
        ldx("w", 4, 10, -4),
        ldx("h", 5, 10, -510),
        jmp("jne", 3, "bad", src=2),
        jmp("jne", 4, "bad", imm=0x1234),
        jmp("jne", 5, "bad", imm=0x5566),
        *_ret(1),
        Label("bad"),
        *_ret(0),
    ]
    assert _verdict_of(body) == 1


def test_signed_division_by_zero_gives_zero_and_modulo_keeps_the_dividend() -> None:
    for name, expected in (("div", 0), ("mod", (-7) & _U64)):
        code = 0x07 | {"div": 0x30, "mod": 0x90}[name] | 0x08
        setup = [*ld_imm64(1, (-7) & _U64), alu64("mov", 2, imm=0), Insn(code, 1, 2, 1, 0)]
        assert _result_is(setup, expected), name


@pytest.mark.parametrize(
    ("name", "a", "b", "q"),
    [
        ("div", -7, 2, -3),
        ("div", 7, -2, -3),
        ("div", -7, -2, 3),
        ("mod", -7, 2, -1),
        ("mod", 7, -2, 1),
        ("mod", -8, 2, 0),
    ],
)
def test_signed_division_truncates_towards_zero(name: str, a: int, b: int, q: int) -> None:
    """``sdiv``/``smod`` (cpu v4, ``off`` = 1): C semantics, the remainder has the dividend's sign."""
    for cls, bits in ((0x07, 64), (0x04, 32)):
        code = cls | {"div": 0x30, "mod": 0x90}[name] | 0x08  # register source
        setup = [*ld_imm64(1, a & _U64), *ld_imm64(2, b & _U64), Insn(code, 1, 2, 1, 0)]
        assert _result_is(setup, q & ((1 << bits) - 1)), f"s{name}{bits} {a} {b}"


@pytest.mark.parametrize("width", [8, 16, 32])
def test_sign_extending_moves(width: int) -> None:
    """``movsx`` (cpu v4, ``off`` = 8/16/32): the low ``width`` bits, sign-extended."""
    for value in (0x7F, 0x80, 0x7FFF, 0x8000, 0xFFFF_FFFF, 0x1234_5678_9ABC_DEF0):
        low = value & ((1 << width) - 1)
        extended = low - (1 << width) if low >> (width - 1) else low
        setup = [*ld_imm64(2, value), Insn(0xBF, 1, 2, width, 0)]  # ALU64 mov X, off = width
        assert _result_is(setup, extended & _U64), f"movsx{width} {value:#x}"


@pytest.mark.parametrize("width", [16, 32, 64])
def test_byte_swaps(width: int) -> None:
    """``le`` truncates (little-endian host), ``be`` and ALU64 ``bswap`` reverse the bytes."""
    value = 0x1122_3344_5566_7788
    low = value & ((1 << width) - 1)
    swapped = int.from_bytes(low.to_bytes(width // 8, "little"), "big")
    for code, expected in ((0xD4, low), (0xDC, swapped), (0xD7, swapped)):  # le, be, bswap
        assert _result_is([*ld_imm64(1, value), Insn(code, 1, 0, 0, width)], expected), hex(code)


@pytest.mark.parametrize(
    "code",
    [0x15, 0x05],  # jeq (the checker's fast path), ja (ja with the X bit is refused outright, as the
    ids=["jeq", "ja"],  # kernel does: "BPF_JA uses reserved fields")
)
def test_a_jump_one_past_the_last_instruction_is_refused(code: int) -> None:
    """The kernel refuses a jump to ``len(insns)`` ("jump out of range"); so must ``check``,
    before anything runs.  The boundary: a jump to the last instruction itself is fine."""
    past_the_end = (alu64("mov", 0, imm=1), Insn(code, 0, 0, 1, 1), exit_())  # 1 + 1 + 1 = 3
    with pytest.raises(RejectedProgram, match=r"jump out of range to 3 \(program has 3\)"):
        check(past_the_end)
    check((alu64("mov", 0, imm=1), Insn(code, 0, 0, 0, 1), exit_()))


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


ProbeFn = Callable[[bytes | None, Sequence[Request]], list[bool]]


@requires_root_bpf
@pytest.mark.skipif(not BINS, reason="reference evidence not found")
def test_interpreter_and_lifter_agree_with_the_kernel_on_real_programs(probe: ProbeFn) -> None:
    rng = random.Random(5)
    requests = known_and_free_devices(rng)
    for path in BINS:
        insns = decode(path.read_bytes())
        kernel = probe(encode(insns), requests)
        interpreted = [bool(run(insns, r).verdict) for r in requests]
        policy = lift(insns).policy
        assert policy is not None
        lifted = [policy.allows(r) for r in requests]
        assert interpreted == kernel, path.name
        assert lifted == kernel, path.name


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


# -- every ALU and jump operation against a reference written from the ISA document --------------
# (the kernel differential tests cover what the runtimes emit; these cover every operation, both
# widths, both operand forms, at the values where widths, signs and zero matter)

_U64 = (1 << 64) - 1
_VALUES = (0, 1, 7, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0005, 1 << 63, _U64 - 1)
_IMMS = (0, 1, 3, -1, -0x8000_0000, 0x7FFF_FFFF)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _ref_alu(name: str, dst: int, src: int, bits: int) -> int:
    mask = (1 << bits) - 1
    a, b = dst & mask, src & mask
    if name in ("lsh", "rsh", "arsh"):
        b &= bits - 1
    result = {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: a * b,
        "div": lambda: a // b if b else 0,
        "mod": lambda: a % b if b else a,
        "or": lambda: a | b,
        "and": lambda: a & b,
        "xor": lambda: a ^ b,
        "lsh": lambda: a << b,
        "rsh": lambda: a >> b,
        "arsh": lambda: _signed(a, bits) >> b,
        "neg": lambda: -a,
        "mov": lambda: b,
    }[name]()
    return result & mask  # 32-bit results are zero-extended


def _result_is(setup: list[object], expected: int) -> bool:
    """Whether r1 equals ``expected`` (all 64 bits) after ``setup``."""
    return _taken([*setup, *ld_imm64(3, expected)], jmp("jeq", 1, "t", src=3))


_ALU = ("add", "sub", "mul", "div", "mod", "or", "and", "xor", "lsh", "rsh", "arsh", "neg", "mov")


@pytest.mark.parametrize("name", _ALU)
def test_every_alu_operation_matches_the_reference(name: str) -> None:
    shift = name in ("lsh", "rsh", "arsh")
    for bits, alu in ((64, alu64), (32, alu32)):
        for a in _VALUES:
            for b in (0, 1, 5, bits - 1) if shift else _VALUES:
                if name == "neg":
                    setup: list[object] = [*ld_imm64(1, a), alu(name, 1, imm=0)]
                else:
                    setup = [*ld_imm64(1, a), *ld_imm64(2, b), alu(name, 1, src=2)]
                assert _result_is(setup, _ref_alu(name, a, b, bits)), f"{name}{bits} {a:#x}, r2={b:#x}"
            for imm in (0, 1, 5, bits - 1) if shift else _IMMS:
                if name == "neg" or (name in ("div", "mod") and imm == 0):
                    continue  # the verifier refuses division by an immediate zero
                # an immediate is sign-extended to 64 bits (ALU64) or taken as 32 bits (ALU32)
                src = imm & _U64 if bits == 64 else imm & 0xFFFF_FFFF
                setup = [*ld_imm64(1, a), alu(name, 1, imm=imm)]
                assert _result_is(setup, _ref_alu(name, a, src, bits)), f"{name}{bits} {a:#x}, imm={imm}"


def _ref_jump(name: str, a: int, b: int, bits: int) -> bool:
    mask = (1 << bits) - 1
    ua, ub, sa, sb = a & mask, b & mask, _signed(a, bits), _signed(b, bits)
    return {
        "jeq": ua == ub,
        "jne": ua != ub,
        "jgt": ua > ub,
        "jge": ua >= ub,
        "jlt": ua < ub,
        "jle": ua <= ub,
        "jset": bool(ua & ub),
        "jsgt": sa > sb,
        "jsge": sa >= sb,
        "jslt": sa < sb,
        "jsle": sa <= sb,
    }[name]


_JUMPS = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle")


@pytest.mark.parametrize("name", _JUMPS)
def test_every_jump_operation_matches_the_reference(name: str) -> None:
    for wide32, bits in ((False, 64), (True, 32)):
        for a in _VALUES:
            for b in _VALUES:
                jump = jmp(name, 1, "t", src=2, wide32=wide32)
                expected = _ref_jump(name, a, b, bits)
                assert _taken([*ld_imm64(1, a), *ld_imm64(2, b)], jump) == expected, (
                    f"{name}{bits} {a:#x} {b:#x}"
                )
            for imm in _IMMS:
                jump = jmp(name, 1, "t", imm=imm, wide32=wide32)
                expected = _ref_jump(name, a, imm & _U64, bits)  # imm sign-extended, then cut
                assert _taken([*ld_imm64(1, a)], jump) == expected, f"{name}{bits} {a:#x} imm={imm}"
