"""Concrete interpreter for device programs: what the kernel would compute for one request.

It is the reference the lifter is checked against (and the fallback for programs the lifter calls
opaque), so it models the kernel rather than an idealised eBPF: 64-bit registers with 32-bit ALU
zero-extension, the context as 12 read-only bytes with the verifier's access rules for
``bpf_cgroup_dev_ctx``, a 512-byte stack, division by zero as the kernel defines it, and a return
value restricted to 0/1.  Whatever the verifier would refuse (uninitialised reads, bad context
access, jumps out of the program) is ``RejectedProgram`` naming the instruction and the reason,
never a Python exception; a path that reaches a helper call is ``UnmodelledCall`` (the kernel runs
it, but its verdict is not the request's to decide).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from cgdev.core.arith import alu, byteswap, compare, to_signed
from cgdev.core.isa import (
    BPF_REG_AX,
    CTX_SIZE,
    MAX_REG,
    U32,
    U64,
    AluOp,
    Cls,
    Insn,
    JmpOp,
    Mode,
    Opcode,
    imm64,
    jump_target,
    slot_problem,
)
from cgdev.core.model import KERNEL_TYPE, Request
from cgdev.errors import ProgramError

MAX_INSNS: Final = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS: the most a privileged load may hold
DEFAULT_MAX_STEPS: Final = 1_000_000
STACK_SIZE: Final = 512
ACCESS_TYPE_SIZE: Final = 4  # only access_type may be read narrower than 4 bytes


class RejectedProgram(ProgramError):
    """The kernel's verifier would not load this program (or would not let this path run)."""

    def __init__(self, pc: int, reason: str, *, prefix: str = "") -> None:
        super().__init__(f"{prefix}: instruction {pc}: {reason}" if prefix else f"instruction {pc}: {reason}")
        self.pc = pc
        self.reason = reason


class UnmodelledCall(ProgramError):
    """The request's path reaches a helper call: the kernel loads and runs such a program, but its
    verdict depends on what the helper returns (the calling task, time, a map), which no request
    determines.  Not a rejection: the verdict is unknown, and callers say so."""

    def __init__(self, pc: int, imm: int) -> None:
        super().__init__(f"instruction {pc}: helper call #{imm}: the verdict depends on the helper")
        self.pc = pc
        self.imm = imm


class Outcome(msgspec.Struct, frozen=True):
    verdict: int
    executed: int


Context = tuple[int, int, int, int]  # (type, access, major, minor) in kernel encoding


def context_of(ctx: Context | Request) -> Context:
    if isinstance(ctx, Request):
        return (KERNEL_TYPE[ctx.type], ctx.access, ctx.major, ctx.minor)
    return ctx


def context_bytes(ctx: Context) -> bytes:
    dev_type, access, major, minor = ctx
    word = (access & 0xFFFF) << 16 | (dev_type & 0xFFFF)
    return b"".join(v.to_bytes(4, "little") for v in (word, major & U32, minor & U32))


# -- static structure --------------------------------------------------------------------------

NOT_A_PROGRAM: Final = "not a device program"


def _check_slot(insns: Sequence[Insn], pc: int, max_reg: int) -> None:
    insn = insns[pc]
    problem = slot_problem(insn, max_reg)
    if problem is not None:
        raise RejectedProgram(pc, problem)
    if insn.code == Opcode.LD_IMM64:
        if pc + 1 >= len(insns):
            raise RejectedProgram(pc, "ld_imm64 without its second slot")
        nxt = insns[pc + 1]
        if nxt.code or nxt.dst or nxt.src or nxt.off:
            raise RejectedProgram(pc, "ld_imm64 second slot has reserved fields set")
        return
    if insn.is_jump:
        target = jump_target(insns, pc)
        # the kernel refuses a jump to len(insns) too: nothing runs there
        if not 0 <= target < len(insns):
            raise RejectedProgram(pc, f"jump out of range to {target} (program has {len(insns)})")


def _plain_codes() -> frozenset[int]:
    """Opcodes that need no per-instruction check beyond their registers (the fast path)."""
    codes: set[int] = set()
    for cls in (Cls.ALU, Cls.ALU64):
        for op in AluOp:
            codes.update((cls | op, cls | op | 0x08))
    for size in (0x00, 0x08, 0x10, 0x18):
        codes.update((Cls.LDX | Mode.MEM | size, Cls.ST | Mode.MEM | size, Cls.STX | Mode.MEM | size))
    return frozenset(codes)


_PLAIN_CODES = _plain_codes()
_JUMP_CODES = frozenset(
    cls | op | src for cls in (Cls.JMP, Cls.JMP32) for op in JmpOp if op.is_conditional for src in (0, 0x08)
) | {Opcode.JA, Opcode.GOTOL}
_LAST_CODES = frozenset((Opcode.EXIT, Opcode.JA, Opcode.GOTOL))
# ja, call and exit spelled with a source register, and call or exit in the JMP32 class
_BAD_JUMP_CODES = frozenset(
    code
    for cls in (Cls.JMP, Cls.JMP32)
    for op in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT)
    for code in (cls | op, cls | op | 0x08)
    if slot_problem(Insn(code)) is not None
)


def check(insns: Sequence[Insn], *, blinded: bool = False) -> None:
    """Validate the structure once: sizes, opcodes, registers, jump targets, the last instruction.

    Shared by the interpreter, the lifter and the disassembler so all refuse the same programs with
    the same words ("not a device program: instruction N: why").  ``blinded`` admits the
    verifier's AX register, which only a dump the kernel gave with constants blinded holds.
    """
    try:
        _check(insns, BPF_REG_AX if blinded else MAX_REG)
    except RejectedProgram as err:
        raise RejectedProgram(err.pc, err.reason, prefix=NOT_A_PROGRAM) from None


def _check(insns: Sequence[Insn], max_reg: int) -> None:
    if not insns:
        raise ProgramError(f"{NOT_A_PROGRAM}: empty")
    n = len(insns)
    if n > MAX_INSNS:
        raise ProgramError(f"{NOT_A_PROGRAM}: {n} instructions, more than the kernel's {MAX_INSNS}")
    seconds: set[int] = set()
    jumps: list[tuple[int, int]] = []
    pc = 0
    while pc < n:
        insn = insns[pc]
        code = insn.code
        if code in _PLAIN_CODES and insn.dst <= max_reg and insn.src <= max_reg:
            pc += 1
            continue
        if code in _JUMP_CODES and insn.dst <= max_reg and insn.src <= max_reg:
            target = jump_target(insns, pc)
            if not 0 <= target < n:
                raise RejectedProgram(pc, f"jump out of range to {target} (program has {n})")
            jumps.append((pc, target))
            pc += 1
            continue
        _check_slot(insns, pc, max_reg)
        if code == Opcode.LD_IMM64:
            seconds.add(pc + 1)
            pc += 2
        else:
            pc += 1
    for pc, target in jumps:
        if target in seconds:
            raise RejectedProgram(pc, f"jump into the middle of ld_imm64 at {target - 1}")
    if insns[-1].code not in _LAST_CODES:
        raise RejectedProgram(n - 1, "last instruction is not an exit or jump")


def context_access_ok(off: int, size: int) -> bool:
    """The verifier's rule for ``bpf_cgroup_dev_ctx`` (cgroup_dev_is_valid_access)."""
    if off < 0 or off + size > CTX_SIZE or off % size:
        return False
    if off < ACCESS_TYPE_SIZE:
        return size <= ACCESS_TYPE_SIZE
    return size == ACCESS_TYPE_SIZE


# -- the interpreter ---------------------------------------------------------------------------


class _Pointer(msgspec.Struct, frozen=True):
    """A pointer register: to the context or to the stack frame (offset from its base)."""

    region: str  # "ctx" | "stack"
    offset: int


_CTX = _Pointer("ctx", 0)
_FP = _Pointer("stack", 0)


def run(
    insns: Sequence[Insn],
    ctx: Context | Request,
    max_steps: int = DEFAULT_MAX_STEPS,
    *,
    checked: bool = False,
    blinded: bool = False,
    path: list[tuple[int, bool]] | None = None,
) -> Outcome:
    """Run the program on one context; ``checked`` skips ``check`` when the caller did it.

    Even unchecked bytes end in an ``Outcome`` or a ``ProgramError`` (``RejectedProgram``), never
    another exception: every opcode, register and jump is looked at when it runs.  ``blinded``
    admits the verifier's AX register (a dump the kernel gave with constants blinded).
    ``path``, when given, receives ``(pc, jumped)`` for every executed instruction (``jumped`` is
    True for a conditional jump that was taken): the lifter uses it to say which rule decided.
    """
    if not checked:
        check(insns, blinded=blinded)
    max_reg = BPF_REG_AX if blinded else MAX_REG
    context = context_bytes(context_of(ctx))
    # 16 slots, one per encodable register: a register past ``max_reg`` then reads as unwritten
    # and is named invalid where it is used, without a range check on every step
    regs: list[int | _Pointer | None] = [None] * 16
    regs[1] = _CTX
    regs[10] = _FP
    stack: dict[int, int] = {}  # byte offset (negative) -> byte value
    # enum members as locals: a class attribute look-up per step would double the run time
    alu_cls, alu64_cls, jmp_cls, jmp32_cls, ld_cls, ldx_cls, st_cls = (
        Cls.ALU, Cls.ALU64, Cls.JMP, Cls.JMP32, Cls.LD, Cls.LDX, Cls.ST,
    )  # fmt: skip
    mov, end, exit_op, call_op, ja_op = AluOp.MOV, AluOp.END, JmpOp.EXIT, JmpOp.CALL, JmpOp.JA
    ld_imm64, mem = Opcode.LD_IMM64, Mode.MEM
    pc = 0
    steps = 0
    n = len(insns)
    while True:
        if pc >= n:
            raise RejectedProgram(pc - 1, "falls off the end of the program")
        steps += 1
        if steps > max_steps:
            raise RejectedProgram(pc, f"more than {max_steps} instructions executed (loop?)")
        insn = insns[pc]
        cls = insn.cls
        if path is not None:
            path.append((pc, False))

        def read(reg: int, pc: int = pc) -> int | _Pointer:
            value = regs[reg]
            if value is None:
                if reg > max_reg:
                    raise RejectedProgram(pc, f"invalid register r{reg}")
                raise RejectedProgram(pc, f"r{reg} is read before it is written")
            return value

        def scalar(reg: int, pc: int = pc) -> int:
            value = read(reg)
            if isinstance(value, _Pointer):
                raise RejectedProgram(pc, f"r{reg} holds a pointer; arithmetic/compare on pointers")
            return value

        def write(reg: int, value: int | _Pointer | None, pc: int = pc) -> None:
            if reg >= 10:
                if reg > max_reg:
                    raise RejectedProgram(pc, f"invalid register r{reg}")
                if reg == 10:
                    raise RejectedProgram(pc, "r10 (frame pointer) is read-only")
            regs[reg] = value

        if insn.code == ld_imm64:
            if insn.src != 0:
                raise RejectedProgram(pc, f"ld_imm64 with pseudo source {insn.src} (map reference)")
            write(insn.dst, imm64(insns, pc))
            pc += 2
            continue
        if cls is alu_cls or cls is alu64_cls:
            bits = 64 if cls is alu64_cls else 32
            op = insn.alu_op
            if op is None:
                raise RejectedProgram(pc, f"unknown ALU opcode 0x{insn.code:02x}")
            if op is mov and insn.uses_reg_source and insn.off == 0 and cls is alu64_cls:
                write(insn.dst, read(insn.src))  # a pointer may be copied
                pc += 1
                continue
            if op is end:
                if insn.imm not in (16, 32, 64):
                    raise RejectedProgram(pc, f"invalid byte swap width {insn.imm}")
                to_big = bool(insn.uses_reg_source) or cls is alu64_cls
                write(insn.dst, byteswap(scalar(insn.dst), insn.imm, to_big))
                pc += 1
                continue
            if insn.uses_reg_source:
                src = scalar(insn.src)
            else:
                src = insn.imm & U64 if bits == 64 else insn.imm & U32
                if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH) and not 0 <= insn.imm < bits:
                    raise RejectedProgram(pc, f"invalid shift by {insn.imm}")
            dst = 0 if op is mov else scalar(insn.dst)
            result = alu(op.mnemonic, dst, src, bits, insn.off)
            if result is None:  # pragma: no cover - every AluOp but END (above) is computed
                raise RejectedProgram(pc, f"unsupported ALU op {op.mnemonic}")
            write(insn.dst, result)
            pc += 1
            continue
        if cls is jmp_cls or cls is jmp32_cls:
            jop = insn.jmp_op
            if jop is None or insn.code in _BAD_JUMP_CODES:
                raise RejectedProgram(pc, f"unknown jump opcode 0x{insn.code:02x}")
            if jop is exit_op:
                value = read(0)
                if isinstance(value, _Pointer):
                    raise RejectedProgram(pc, "r0 holds a pointer at exit")
                if value not in (0, 1):
                    raise RejectedProgram(pc, f"r0 = {value} at exit; a device program returns 0 or 1")
                return Outcome(value, steps)
            if jop is call_op:
                raise UnmodelledCall(pc, insn.imm)
            if jop is ja_op:
                pc = _target(insns, pc)
                continue
            bits = 32 if cls is jmp32_cls else 64
            left = scalar(insn.dst)
            right = scalar(insn.src) if insn.uses_reg_source else insn.imm & U64
            if compare(jop.mnemonic, left, right, bits):
                if path is not None:
                    path[-1] = (pc, True)
                pc = _target(insns, pc)
            else:
                pc += 1
            continue
        if cls is ld_cls:
            raise RejectedProgram(pc, f"opcode 0x{insn.code:02x} (legacy packet load) is not valid here")
        # memory: LDX, ST, STX
        size = insn.size.nbytes
        if insn.mode != mem and not (cls is ldx_cls and insn.mode == Mode.MEMSX):
            raise RejectedProgram(pc, f"unsupported memory opcode 0x{insn.code:02x}")
        if cls is ldx_cls:
            base = read(insn.src)
            if not isinstance(base, _Pointer):
                raise RejectedProgram(pc, f"load through r{insn.src}, which is not a pointer")
            off = base.offset + insn.off
            if base.region == "ctx":
                if insn.mode != mem:
                    raise RejectedProgram(pc, "sign-extending load from the context")
                if base.offset:
                    raise RejectedProgram(pc, "load through a modified context pointer")
                if not context_access_ok(off, size):
                    raise RejectedProgram(pc, f"invalid context access off={off} size={size}")
                value = int.from_bytes(context[off : off + size], "little")
            else:
                value = _stack_read(stack, off, size, pc)
                if insn.mode != mem:
                    value = to_signed(value, 8 * size) & U64
            write(insn.dst, value)
            pc += 1
            continue
        # ST / STX
        base = read(insn.dst)
        if not isinstance(base, _Pointer) or base.region != "stack":
            raise RejectedProgram(pc, "store outside the stack (the context is read-only)")
        value = insn.imm & U64 if cls is st_cls else read(insn.src)
        if isinstance(value, _Pointer):
            raise RejectedProgram(pc, "spilling a pointer to the stack is not modelled")
        _stack_write(stack, base.offset + insn.off, size, value, pc)
        pc += 1


def _target(insns: Sequence[Insn], pc: int) -> int:
    """Where the jump at ``pc`` goes, refused when outside the program (one past the end too)."""
    target = jump_target(insns, pc)
    if not 0 <= target < len(insns):
        raise RejectedProgram(pc, f"jump out of range to {target} (program has {len(insns)})")
    return target


def _stack_bounds(off: int, size: int, pc: int) -> None:
    if off < -STACK_SIZE or off + size > 0:
        raise RejectedProgram(pc, f"invalid stack access off={off} size={size}")


def _stack_write(stack: dict[int, int], off: int, size: int, value: int, pc: int) -> None:
    _stack_bounds(off, size, pc)
    for i, byte in enumerate((value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")):
        stack[off + i] = byte


def _stack_read(stack: dict[int, int], off: int, size: int, pc: int) -> int:
    _stack_bounds(off, size, pc)
    data = bytearray()
    for i in range(size):
        if off + i not in stack:
            raise RejectedProgram(pc, f"read of uninitialised stack at off={off + i}")
        data.append(stack[off + i])
    return int.from_bytes(bytes(data), "little")


__all__ = ["Outcome", "RejectedProgram", "check", "context_access_ok", "run"]
