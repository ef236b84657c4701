"""The eBPF instruction set, as far as device programs use it: encoding, decoding, assembling.

Programs are kept as tuples of 8-byte *slots* (``Insn``), exactly as the kernel stores them:
jump offsets count slots and ``LD_IMM64`` takes two.  Nothing is lowered or abstracted, so a
decoded program re-encodes to the same bytes and the interpreter, the lifter and the disassembler
all index instructions the way ``bpftool prog dump xlated`` numbers them.

Over 400 lines because the opcode enums (a third of it) and the assembler's constructors are the
one vocabulary every other core module speaks; splitting them would only add an import hop.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Final

import msgspec

from cgdev.errors import ProgramError

# -- machine words ------------------------------------------------------------------------------

U32: Final = 0xFFFF_FFFF
U64: Final = 0xFFFF_FFFF_FFFF_FFFF


def s32(value: int) -> int:
    """An immediate as the instruction stores it: the u32 or s32 spelling in, the signed form out
    (``s32(v & U32)`` wraps any integer, as a C cast does)."""
    if not -0x8000_0000 <= value <= U32:
        raise ValueError(f"immediate {value} does not fit 32 bits")
    return value - (1 << 32) if value > 0x7FFF_FFFF else value


# -- opcode fields -----------------------------------------------------------------------------


class Cls(IntEnum):
    """Instruction class: the low 3 bits of the opcode (every value is a class)."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Size(IntEnum):
    """Load/store width bits; ``nbytes`` is the width in bytes."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18

    @property
    def nbytes(self) -> int:
        return _SIZE_NBYTES[self]


class Mode(IntEnum):
    """Load/store mode bits (``MEMSX``: sign-extending load, cpu v4)."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class Src(IntEnum):
    K = 0x00  # the immediate
    X = 0x08  # the source register


class AluOp(IntEnum):
    """ALU operation bits; the mnemonic is the lower-case name (``add``, ``end``…)."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0

    mnemonic: str  # the lower-case name, a plain attribute (set below: hot loops read it)


class JmpOp(IntEnum):
    """JMP/JMP32 operation bits; the mnemonic is the lower-case name (``jeq``, ``exit``…)."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0

    mnemonic: str  # the lower-case name, a plain attribute (set below: hot loops read it)

    @property
    def is_conditional(self) -> bool:
        return self not in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT)


for _op in (*AluOp, *JmpOp):
    _op.mnemonic = _op.name.lower()


class Opcode(IntEnum):
    """Whole opcodes that are tested as such."""

    LD_IMM64 = Cls.LD | Size.DW | Mode.IMM  # 0x18, two slots
    JA = Cls.JMP | JmpOp.JA  # 0x05
    CALL = Cls.JMP | JmpOp.CALL  # 0x85
    EXIT = Cls.JMP | JmpOp.EXIT  # 0x95
    GOTOL = Cls.JMP32 | JmpOp.JA  # 0x06: ja with a 32-bit offset in imm


_CLASSES: Final = tuple(Cls)
# jumps that go somewhere: every JMP/JMP32 opcode but call and exit (a set: the lifter asks per slot)
JUMP_CODES: Final = frozenset(
    cls | op | src
    for cls in (Cls.JMP, Cls.JMP32)
    for op in range(0, 0x100, 0x10)
    for src in (0, 0x08)
    if op not in (JmpOp.CALL, JmpOp.EXIT)
)
_SIZES: Final = {size.value: size for size in Size}
_SIZE_NBYTES: Final = {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}
_ALU_OPS: Final = {op.value: op for op in AluOp}
_JMP_OPS: Final = {op.value: op for op in JmpOp}

ALU_OPS: Final[dict[str, int]] = {op.mnemonic: op.value for op in AluOp}  # the constructors' names
JMP_OPS: Final[dict[str, int]] = {op.mnemonic: op.value for op in JmpOp}
SIZES: Final[dict[str, int]] = {"w": Size.W, "h": Size.H, "b": Size.B, "dw": Size.DW}

# Aliases of enum members kept for compile.py, which another change is rewriting.
OPCODE_EXIT: Final = Opcode.EXIT
OPCODE_JA: Final = Opcode.JA
OPCODE_GOTOL: Final = Opcode.GOTOL

# bpf_cgroup_dev_ctx: u32 access_type, u32 major, u32 minor
CTX_SIZE: Final = 12
MAX_REG: Final = 10  # r10 is the read-only frame pointer
# The verifier's private register: only constant blinding (bpf_jit_harden) puts it in xlated code,
# so a dump that mentions it has had its constants rewritten and cannot be lifted as written.
BPF_REG_AX: Final = 11
ELF_MAGIC: Final = b"\x7fELF"

_SLOT = struct.Struct("<BBhi")


class Insn(msgspec.Struct, frozen=True):
    """One 8-byte slot: opcode, dst and src registers, signed 16-bit offset, signed 32-bit imm."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def cls(self) -> Cls:
        return _CLASSES[self.code & 0x07]

    @property
    def op(self) -> int:
        """ALU or JMP operation bits (meaningful for those classes only)."""
        return self.code & 0xF0

    @property
    def alu_op(self) -> AluOp | None:
        """The ALU operation, None for bits that name none (meaningful for ALU classes only)."""
        return _ALU_OPS.get(self.code & 0xF0)

    @property
    def jmp_op(self) -> JmpOp | None:
        """The jump operation, None for bits that name none (meaningful for JMP classes only)."""
        return _JMP_OPS.get(self.code & 0xF0)

    @property
    def uses_reg_source(self) -> bool:
        return bool(self.code & 0x08)  # Src.X

    @property
    def size(self) -> Size:
        """Load/store width (LD/LDX/ST/STX only); every 2-bit value is a width."""
        return _SIZES[self.code & 0x18]

    @property
    def mode(self) -> int:
        return self.code & 0xE0

    @property
    def is_jump(self) -> bool:
        return self.code in JUMP_CODES

    def encode(self) -> bytes:
        return _SLOT.pack(self.code, (self.src & 0xF) << 4 | (self.dst & 0xF), self.off, self.imm)


def encode(insns: Iterable[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def decode(raw: bytes) -> tuple[Insn, ...]:
    """Bytes (the format of ``bpftool prog dump xlated ... file F``) -> slots.

    Only the framing is checked here (length, and an ELF object's magic: bpftool writes raw
    instructions, a compiler writes ELF); what the slots mean is for ``interp.check`` to judge, so
    a fuzzed byte string always decodes or fails with ``ProgramError``.
    """
    if not raw:
        raise ProgramError("not a device program: empty (0 bytes)")
    if raw.startswith(ELF_MAGIC):
        raise ProgramError(
            "not a device program: an ELF object, not raw instructions (bpftool prog dump xlated)"
        )
    if len(raw) % 8:
        raise ProgramError(f"not a device program: length {len(raw)} is not a multiple of 8 (truncated?)")
    out = []
    for code, regs, off, imm in _SLOT.iter_unpack(raw):
        out.append(Insn(code, regs & 0xF, regs >> 4, off, imm))
    return tuple(out)


def slot_problem(insn: Insn, max_reg: int = MAX_REG) -> str | None:
    """Why one slot is no instruction a device program can hold, or None.

    Checks what a slot says on its own (opcode, registers); jump targets and the second slot of
    ``ld_imm64`` need the program (``interp.check``).  ``max_reg`` is ``BPF_REG_AX`` for a dump
    the kernel gave with constants blinded, where the verifier's private register appears.
    """
    if insn.dst > max_reg or insn.src > max_reg:
        return f"invalid register (dst r{insn.dst}, src r{insn.src})"
    cls, code = insn.cls, insn.code
    if code == Opcode.LD_IMM64:
        return None
    if cls is Cls.LD:
        return f"opcode 0x{code:02x} (legacy packet load) is not valid here"
    if cls is Cls.ALU or cls is Cls.ALU64:
        return None if insn.alu_op is not None else f"unknown ALU opcode 0x{code:02x}"
    if cls is Cls.JMP or cls is Cls.JMP32:
        op = insn.jmp_op
        if op is None or (cls is Cls.JMP32 and op in (JmpOp.CALL, JmpOp.EXIT)):
            return f"unknown jump opcode 0x{code:02x}"
        if not op.is_conditional and code & Src.X:  # ja, call, exit take no source register
            return f"unknown jump opcode 0x{code:02x}"
        return None
    if insn.mode != Mode.MEM and not (cls is Cls.LDX and insn.mode == Mode.MEMSX):
        return f"unsupported memory opcode 0x{code:02x}"
    return None


def imm64(insns: Sequence[Insn], pc: int) -> int:
    """The 64-bit constant of the LD_IMM64 at ``pc`` (its second slot holds the high half)."""
    if pc + 1 >= len(insns):
        raise ProgramError(f"instruction {pc}: ld_imm64 without its second slot")
    return (insns[pc].imm & U32) | (insns[pc + 1].imm & U32) << 32


# -- constructors ------------------------------------------------------------------------------


def ldx(size: str, dst: int, src: int, off: int) -> Insn:
    """``dst = *(size *)(src + off)``."""
    return Insn(Cls.LDX | SIZES[size] | Mode.MEM, dst, src, off, 0)


def _alu(cls: int, op: str, dst: int, imm: int | None, src: int | None) -> Insn:
    if src is not None and imm is None:
        return Insn(cls | ALU_OPS[op] | Src.X, dst, src, 0, 0)
    if imm is None or src is not None:
        raise ValueError("give exactly one of imm= and src=")
    return Insn(cls | ALU_OPS[op] | Src.K, dst, 0, 0, s32(imm))


def alu32(op: str, dst: int, imm: int | None = None, src: int | None = None) -> Insn:
    """32-bit ALU (``wN``): the result is zero-extended to 64 bits."""
    return _alu(Cls.ALU, op, dst, imm, src)


def alu64(op: str, dst: int, imm: int | None = None, src: int | None = None) -> Insn:
    return _alu(Cls.ALU64, op, dst, imm, src)


def exit_() -> Insn:
    return Insn(int(Opcode.EXIT))


def ld_imm64(dst: int, value: int) -> tuple[Insn, Insn]:
    return (
        Insn(int(Opcode.LD_IMM64), dst, 0, 0, s32(value & U32)),
        Insn(0, 0, 0, 0, s32(value >> 32 & U32)),
    )


class Label(msgspec.Struct, frozen=True):
    """A position in an assembly listing; jumps name it instead of counting slots."""

    name: str


class Jump(msgspec.Struct, frozen=True):
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
    cls = Cls.JMP32 if wide32 else Cls.JMP
    if src is not None and imm is None:
        return Jump(cls | JMP_OPS[op] | Src.X, dst, src, 0, target)
    if imm is None or src is not None:
        raise ValueError("give exactly one of imm= and src=")
    return Jump(cls | JMP_OPS[op] | Src.K, dst, 0, s32(imm), target)


def ja(target: str | int) -> Jump:
    return Jump(int(Opcode.JA), 0, 0, 0, target)


Item = Insn | Jump | Label


def jump_target(insns: Sequence[Insn], pc: int) -> int:
    """Where the jump at ``pc`` goes: ``gotol`` (JMP32 | JA) keeps its offset in ``imm``."""
    insn = insns[pc]
    if insn.code == OPCODE_GOTOL:  # a module name: lifting 100,000 rules asks this 1.5M times
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
        elif item.code == Opcode.JA:
            out.append(Insn(int(Opcode.GOTOL), 0, 0, 0, target - len(out) - 1))
        else:
            out.append(Insn(item.code, item.dst, item.src, 1, item.imm))
            out.append(Insn(int(Opcode.JA), 0, 0, 1, 0))
            out.append(Insn(int(Opcode.GOTOL), 0, 0, 0, target - len(out) - 1))
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
            long_form = index in long and item.code != Opcode.JA
            # the long conditional form's gotol is its last slot: offsets count from there
            jumps[index] = pc + 2 if long_form else pc
            pc += 3 if long_form else 1
        else:
            pc += 1
    return labels, jumps
