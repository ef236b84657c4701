"""The eBPF instruction set, as far as device programs use it: encoding, decoding, assembling.

Programs are kept as tuples of 8-byte *slots* (``Insn``), exactly as the kernel stores them:
jump offsets count slots and ``LD_IMM64`` takes two.  Nothing is lowered or abstracted, so a
decoded program re-encodes to the same bytes and the interpreter, the lifter and the disassembler
all index instructions the way ``bpftool prog dump xlated`` numbers them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cgdev.errors import ProgramError

# -- opcode fields -----------------------------------------------------------------------------

CLASS_LD: Final = 0x00
CLASS_LDX: Final = 0x01
CLASS_ST: Final = 0x02
CLASS_STX: Final = 0x03
CLASS_ALU: Final = 0x04
CLASS_JMP: Final = 0x05
CLASS_JMP32: Final = 0x06
CLASS_ALU64: Final = 0x07

SIZE_W: Final = 0x00
SIZE_H: Final = 0x08
SIZE_B: Final = 0x10
SIZE_DW: Final = 0x18
SIZES: Final[dict[str, int]] = {"w": SIZE_W, "h": SIZE_H, "b": SIZE_B, "dw": SIZE_DW}
SIZE_BYTES: Final[dict[int, int]] = {SIZE_W: 4, SIZE_H: 2, SIZE_B: 1, SIZE_DW: 8}

MODE_IMM: Final = 0x00
MODE_ABS: Final = 0x20
MODE_IND: Final = 0x40
MODE_MEM: Final = 0x60
MODE_ATOMIC: Final = 0xC0

SRC_K: Final = 0x00
SRC_X: Final = 0x08

ALU_OPS: Final[dict[str, int]] = {
    "add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60,
    "rsh": 0x70, "neg": 0x80, "mod": 0x90, "xor": 0xA0, "mov": 0xB0, "arsh": 0xC0, "end": 0xD0,
}  # fmt: skip
JMP_OPS: Final[dict[str, int]] = {
    "ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50, "jsgt": 0x60,
    "jsge": 0x70, "call": 0x80, "exit": 0x90, "jlt": 0xA0, "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0,
}  # fmt: skip
ALU_NAMES: Final[dict[int, str]] = {v: k for k, v in ALU_OPS.items()}
JMP_NAMES: Final[dict[int, str]] = {v: k for k, v in JMP_OPS.items()}

OPCODE_LD_IMM64: Final = CLASS_LD | SIZE_DW | MODE_IMM  # 0x18
OPCODE_EXIT: Final = CLASS_JMP | JMP_OPS["exit"]  # 0x95
OPCODE_CALL: Final = CLASS_JMP | JMP_OPS["call"]  # 0x85
OPCODE_JA: Final = CLASS_JMP | JMP_OPS["ja"]  # 0x05
OPCODE_GOTOL: Final = CLASS_JMP32 | JMP_OPS["ja"]  # 0x06: ja with a 32-bit offset in imm

# bpf_cgroup_dev_ctx: u32 access_type, u32 major, u32 minor
CTX_SIZE: Final = 12
MAX_REG: Final = 10  # r10 is the read-only frame pointer
# The verifier's private register: only constant blinding (bpf_jit_harden) puts it in xlated code,
# so a dump that mentions it has had its constants rewritten and cannot be lifted as written.
BPF_REG_AX: Final = 11

_SLOT = struct.Struct("<BBhi")


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte slot: opcode, dst and src registers, signed 16-bit offset, signed 32-bit imm."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def op(self) -> int:
        """ALU or JMP operation bits (meaningful for those classes only)."""
        return self.code & 0xF0

    @property
    def uses_reg_source(self) -> bool:
        return bool(self.code & SRC_X)

    @property
    def size(self) -> int:
        """Load/store width bits (LD/LDX/ST/STX only)."""
        return self.code & 0x18

    @property
    def mode(self) -> int:
        return self.code & 0xE0

    @property
    def is_jump(self) -> bool:
        return self.cls in (CLASS_JMP, CLASS_JMP32) and self.op not in (JMP_OPS["call"], JMP_OPS["exit"])

    def encode(self) -> bytes:
        return _SLOT.pack(self.code, (self.src & 0xF) << 4 | (self.dst & 0xF), self.off, self.imm)


def encode(insns: Iterable[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def decode(raw: bytes) -> tuple[Insn, ...]:
    """Bytes (the format of ``bpftool prog dump xlated ... file F``) -> slots.

    Only the framing is checked here (length); what the slots mean is for the interpreter and the
    lifter to judge, so a fuzzed byte string always decodes or fails with ``ProgramError``.
    """
    if not raw:
        raise ProgramError("program: empty (0 bytes)")
    if len(raw) % 8:
        raise ProgramError(f"program: length {len(raw)} is not a multiple of 8 (truncated?)")
    out = []
    for code, regs, off, imm in _SLOT.iter_unpack(raw):
        out.append(Insn(code, regs & 0xF, regs >> 4, off, imm))
    return tuple(out)


def imm64(insns: Sequence[Insn], pc: int) -> int:
    """The 64-bit constant of the LD_IMM64 at ``pc`` (its second slot holds the high half)."""
    if pc + 1 >= len(insns):
        raise ProgramError(f"instruction {pc}: ld_imm64 without its second slot")
    return (insns[pc].imm & 0xFFFF_FFFF) | (insns[pc + 1].imm & 0xFFFF_FFFF) << 32


# -- constructors ------------------------------------------------------------------------------


def ldx(size: str, dst: int, src: int, off: int) -> Insn:
    """``dst = *(size *)(src + off)``."""
    return Insn(CLASS_LDX | SIZES[size] | MODE_MEM, dst, src, off, 0)


def _alu(cls: int, op: str, dst: int, imm: int | None, src: int | None) -> Insn:
    if (imm is None) == (src is None):
        raise ValueError("give exactly one of imm= and src=")
    if src is not None:
        return Insn(cls | ALU_OPS[op] | SRC_X, dst, src, 0, 0)
    return Insn(cls | ALU_OPS[op] | SRC_K, dst, 0, 0, _s32(imm))


def alu32(op: str, dst: int, imm: int | None = None, src: int | None = None) -> Insn:
    """32-bit ALU (``wN``): the result is zero-extended to 64 bits."""
    return _alu(CLASS_ALU, op, dst, imm, src)


def alu64(op: str, dst: int, imm: int | None = None, src: int | None = None) -> Insn:
    return _alu(CLASS_ALU64, op, dst, imm, src)


def exit_() -> Insn:
    return Insn(OPCODE_EXIT)


def ld_imm64(dst: int, value: int) -> tuple[Insn, Insn]:
    return (
        Insn(OPCODE_LD_IMM64, dst, 0, 0, _s32(value & 0xFFFF_FFFF)),
        Insn(0, 0, 0, 0, _s32(value >> 32 & 0xFFFF_FFFF)),
    )


@dataclass(frozen=True, slots=True)
class Label:
    """A position in an assembly listing; jumps name it instead of counting slots."""

    name: str


@dataclass(frozen=True, slots=True)
class Jump:
    """A jump whose offset is resolved by ``assemble``: target is a label name or a slot offset."""

    code: int
    dst: int
    src: int
    imm: int
    target: str | int


def jmp(
    op: str,
    dst: int,
    target: str | int,
    imm: int | None = None,
    src: int | None = None,
    *,
    wide32: bool = False,
) -> Jump:
    """Conditional jump ``if dst <op> imm|src goto target``; ``wide32`` compares the low 32 bits."""
    if (imm is None) == (src is None):
        raise ValueError("give exactly one of imm= and src=")
    cls = CLASS_JMP32 if wide32 else CLASS_JMP
    if src is not None:
        return Jump(cls | JMP_OPS[op] | SRC_X, dst, src, 0, target)
    return Jump(cls | JMP_OPS[op] | SRC_K, dst, 0, _s32(imm), target)


def ja(target: str | int) -> Jump:
    return Jump(CLASS_JMP | JMP_OPS["ja"], 0, 0, 0, target)


Item = Insn | Jump | Label


def jump_target(insns: Sequence[Insn], pc: int) -> int:
    """Where the jump at ``pc`` goes: ``gotol`` (JMP32 | JA) keeps its offset in ``imm``."""
    insn = insns[pc]
    if insn.code == OPCODE_GOTOL:
        return pc + 1 + insn.imm
    return pc + 1 + insn.off


def assemble(items: Iterable[Item | tuple[Insn, Insn]]) -> tuple[Insn, ...]:
    """Resolve labels into slot offsets (``off`` counts from the slot after the jump).

    A jump whose target lies beyond the signed 16-bit offset is relaxed: ``ja`` becomes
    ``gotol`` (32-bit offset, kernel >= 6.4) and a conditional jump becomes
    ``if cond goto +1; ja +1; gotol target``.  Only very large programs (tens of thousands of
    instructions) need it, and their layout is otherwise unchanged.
    """
    flat: list[Item] = []
    for item in items:
        if isinstance(item, tuple):
            flat.extend(item)
        else:
            flat.append(item)
    long: set[int] = set()  # indexes into ``flat`` of jumps that need the long form
    while True:
        where, at = _positions(flat, long)
        grew = False
        for index, item in enumerate(flat):
            if isinstance(item, Jump) and index not in long and isinstance(item.target, str):
                if item.target not in where:
                    raise ValueError(f"undefined label {item.target!r}")
                if not -0x8000 <= where[item.target] - at[index] - 1 <= 0x7FFF:
                    long.add(index)
                    grew = True
        if not grew:
            break
    out: list[Insn] = []
    for index, item in enumerate(flat):
        if isinstance(item, Label):
            continue
        if not isinstance(item, Jump):
            out.append(item)
            continue
        if isinstance(item.target, int):
            if not -0x8000 <= item.target <= 0x7FFF:
                raise ValueError(f"jump at {len(out)} out of 16-bit range: {item.target}")
            out.append(Insn(item.code, item.dst, item.src, item.target, item.imm))
            continue
        target = where[item.target]
        if index not in long:
            out.append(Insn(item.code, item.dst, item.src, target - len(out) - 1, item.imm))
        elif item.code == OPCODE_JA:
            out.append(Insn(OPCODE_GOTOL, 0, 0, 0, target - len(out) - 1))
        else:
            out.append(Insn(item.code, item.dst, item.src, 1, item.imm))
            out.append(Insn(OPCODE_JA, 0, 0, 1, 0))
            out.append(Insn(OPCODE_GOTOL, 0, 0, 0, target - len(out) - 1))
    return tuple(out)


def _positions(flat: Sequence[Item], long: set[int]) -> tuple[dict[str, int], dict[int, int]]:
    """Slot index of every label and of every jump, given which jumps take the long form."""
    labels: dict[str, int] = {}
    jumps: dict[int, int] = {}
    pc = 0
    for index, item in enumerate(flat):
        if isinstance(item, Label):
            if item.name in labels:
                raise ValueError(f"label {item.name!r} defined twice")
            labels[item.name] = pc
            continue
        if isinstance(item, Jump):
            long_form = index in long and item.code != OPCODE_JA
            # the long conditional form's gotol is its last slot: offsets count from there
            jumps[index] = pc + 2 if long_form else pc
            pc += 3 if long_form else 1
        else:
            pc += 1
    return labels, jumps


def _s32(value: int) -> int:
    """Accept u32 or s32 spellings of an immediate and store the signed form."""
    if not -0x8000_0000 <= value <= 0xFFFF_FFFF:
        raise ValueError(f"immediate {value} does not fit 32 bits")
    return value - (1 << 32) if value > 0x7FFF_FFFF else value
