"""Disassembler in the style of ``bpftool prog dump xlated``, and a reader for such dumps.

The text follows the kernel's own printer (kernel/bpf/disasm.c, which bpftool uses), so a listing
from cgdev can be compared line by line with one taken from a live system, and a text dump someone
pasted into an issue can be read back into instructions and lifted.  Only what device programs can
contain is printed exactly; anything else still gets one readable line (never an exception).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cgdev.core.isa import (
    BPF_REG_AX,
    MAX_REG,
    SIZES,
    U32,
    AluOp,
    Cls,
    Insn,
    JmpOp,
    Mode,
    Opcode,
    Size,
    imm64,
    s32,
    slot_problem,
)
from cgdev.errors import ProgramError

_ALU_SYMBOL: dict[AluOp | None, str] = {
    AluOp.ADD: "+=", AluOp.SUB: "-=", AluOp.MUL: "*=", AluOp.DIV: "/=", AluOp.OR: "|=",
    AluOp.AND: "&=", AluOp.LSH: "<<=", AluOp.RSH: ">>=", AluOp.MOD: "%=", AluOp.XOR: "^=",
    AluOp.MOV: "=", AluOp.ARSH: "s>>=",
}  # fmt: skip
_JMP_SYMBOL: dict[JmpOp | None, str] = {
    JmpOp.JEQ: "==", JmpOp.JGT: ">", JmpOp.JGE: ">=", JmpOp.JLT: "<", JmpOp.JLE: "<=",
    JmpOp.JSET: "&", JmpOp.JNE: "!=", JmpOp.JSGT: "s>", JmpOp.JSGE: "s>=", JmpOp.JSLT: "s<",
    JmpOp.JSLE: "s<=",
}  # fmt: skip
_SIZE_NAME = {size: f"u{8 * size.nbytes}" for size in Size}


def _hex_u32(imm: int) -> str:
    return f"0x{imm & U32:x}"


def _alu(insn: Insn) -> str:
    reg = "w" if insn.cls is Cls.ALU else "r"
    op = insn.alu_op
    if op is AluOp.NEG:
        return f"{reg}{insn.dst} = -{reg}{insn.dst}"
    if op is AluOp.END:
        order = "be" if insn.uses_reg_source and insn.cls is Cls.ALU else "le"
        if insn.cls is Cls.ALU64:
            order = "bswap"
        return f"{reg}{insn.dst} = {order}{insn.imm} {reg}{insn.dst}"
    symbol = _ALU_SYMBOL[op]  # check() admitted only known operations
    if op in (AluOp.DIV, AluOp.MOD) and insn.off == 1:
        symbol = "s" + symbol
    if insn.uses_reg_source:
        if op is AluOp.MOV and insn.off in (8, 16, 32):
            return f"{reg}{insn.dst} = (s{insn.off}){reg}{insn.src}"
        return f"{reg}{insn.dst} {symbol} {reg}{insn.src}"
    return f"{reg}{insn.dst} {symbol} {insn.imm}"


def _jmp(insns: Sequence[Insn], pc: int) -> str:
    insn = insns[pc]
    op = insn.jmp_op
    if insn.code == Opcode.JA:
        return f"goto pc{insn.off:+d}"
    if insn.code == Opcode.GOTOL:
        return f"gotol pc{insn.imm:+d}"
    if op is JmpOp.EXIT:
        return "exit"
    if op is JmpOp.CALL:
        if insn.src == 1:
            return f"call pc{insn.imm:+d}"
        return f"call #{insn.imm}"
    reg = "w" if insn.cls is Cls.JMP32 else "r"
    right = f"{reg}{insn.src}" if insn.uses_reg_source else _hex_u32(insn.imm)
    return f"if {reg}{insn.dst} {_JMP_SYMBOL[op]} {right} goto pc{insn.off:+d}"


def _memory(insn: Insn) -> str:
    size = _SIZE_NAME[insn.size]
    where = f"(r{insn.src if insn.cls is Cls.LDX else insn.dst} {insn.off:+d})"
    if insn.cls is Cls.LDX:
        kind = size if insn.mode == Mode.MEM else "s" + size[1:]
        return f"r{insn.dst} = *({kind} *){where}"
    if insn.cls is Cls.ST:
        return f"*({size} *){where} = {insn.imm}"
    return f"*({size} *){where} = r{insn.src}"


def format_insn(insns: Sequence[Insn], pc: int, *, blinded: bool = False) -> str:
    """One line without the ``N:`` prefix, e.g. ``(55) if r2 != 0x2 goto pc+4``.

    A slot that is no instruction of a device program (an unknown opcode, a register past r10,
    or r11 in a dump that was not blinded) is a ``ProgramError``: a listing of garbage would read
    as a program.
    """
    insn = insns[pc]
    problem = slot_problem(insn, BPF_REG_AX if blinded else MAX_REG)
    if problem is not None:
        raise ProgramError(f"not a device program: instruction {pc}: {problem}")
    cls = insn.cls
    if insn.code == Opcode.LD_IMM64:
        if insn.src == 0 and pc + 1 < len(insns):
            body = f"r{insn.dst} = 0x{imm64(insns, pc):x}"
        elif insn.src in (1, 5):  # BPF_PSEUDO_MAP_FD / _IDX
            body = f"r{insn.dst} = map[id:{insn.imm}]"
        elif insn.src in (2, 6):  # BPF_PSEUDO_MAP_VALUE / _IDX_VALUE
            body = f"r{insn.dst} = map[id:{insn.imm}][0]+{insns[pc + 1].imm if pc + 1 < len(insns) else 0}"
        else:
            body = f"r{insn.dst} = pseudo{insn.src}[{insn.imm}]"
    elif cls is Cls.ALU or cls is Cls.ALU64:
        body = _alu(insn)
    elif cls is Cls.JMP or cls is Cls.JMP32:
        body = _jmp(insns, pc)
    else:  # LDX, ST, STX: slot_problem admitted no other class
        body = _memory(insn)
    return f"({insn.code:02x}) {body}"


def disassemble(insns: Sequence[Insn], *, blinded: bool = False) -> str:
    """The whole listing; the second slot of an ``LD_IMM64`` is skipped, as bpftool does."""
    lines = []
    pc = 0
    while pc < len(insns):
        lines.append(f"{pc:4d}: {format_insn(insns, pc, blinded=blinded)}")
        pc += 2 if insns[pc].code == Opcode.LD_IMM64 else 1
    return "\n".join(lines) + "\n"


# -- reading bpftool text back -----------------------------------------------------------------

_LINE = re.compile(r"^\s*(\d+):\s+\(([0-9a-f]{2})\)\s+(.*?)\s*$")
_REG = r"[rw](\d+)"
_ALU_RE = re.compile(rf"^{_REG} (\S+) (?:(?:\(s(\d+)\))?{_REG}|(-?\d+))$")
_NEG_RE = re.compile(rf"^{_REG} = -{_REG}$")
_END_RE = re.compile(rf"^{_REG} = (?:be|le|bswap)(-?\d+) {_REG}$")
_LOAD_RE = re.compile(r"^r(\d+) = \*\([us](\d+) \*\)\(r(\d+) ([+-]\d+)\)$")
_STORE_RE = re.compile(r"^\*\(u\d+ \*\)\(r(\d+) ([+-]\d+)\) = (?:r(\d+)|(-?\d+))$")
_COND_RE = re.compile(rf"^if {_REG} \S+ (?:{_REG}|0x([0-9a-f]+)) goto pc([+-]\d+)$")
_GOTO_RE = re.compile(r"^gotol? pc([+-]\d+)$")
_CALL_RE = re.compile(r"^call (?:pc([+-]\d+)|.*?#(-?\d+)|(\S+))$")
_IMM64_RE = re.compile(r"^r(\d+) = 0x([0-9a-f]+)$")
_MAP_RE = re.compile(r"^r(\d+) = map\[id:(-?\d+)\](?:\[0\]\+(-?\d+))?$")
_PSEUDO_RE = re.compile(r"^r(\d+) = pseudo(\d+)\[(-?\d+)\]$")


def _s32(value: int) -> int:
    """A number read from text as the slot stores it (wrapping, as the printer masked it)."""
    return s32(value & U32)


def _parse_body(code: int, body: str, where: str) -> list[Insn]:
    """Rebuild the slot(s) of one listing line; ``code`` (the bracketed opcode) is authoritative."""
    cls = code & 0x07

    def bad() -> ProgramError:
        return ProgramError(f"{where}: cannot read instruction ({code:02x}) {body!r}")

    if code == Opcode.LD_IMM64:
        if m := _IMM64_RE.match(body):
            value = int(m[2], 16)
            return [Insn(code, int(m[1]), 0, 0, _s32(value)), Insn(0, 0, 0, 0, _s32(value >> 32))]
        if m := _MAP_RE.match(body):
            if m[3] is None:
                return [Insn(code, int(m[1]), 1, 0, _s32(int(m[2]))), Insn(0)]
            return [Insn(code, int(m[1]), 2, 0, _s32(int(m[2]))), Insn(0, 0, 0, 0, _s32(int(m[3])))]
        if m := _PSEUDO_RE.match(body):
            return [Insn(code, int(m[1]), int(m[2]), 0, _s32(int(m[3]))), Insn(0)]
        raise bad()
    if cls in (Cls.ALU, Cls.ALU64):
        if m := _NEG_RE.match(body):
            return [Insn(code, int(m[1]))]
        if m := _END_RE.match(body):
            return [Insn(code, int(m[1]), 0, 0, int(m[2]))]
        m = _ALU_RE.match(body)
        expected = _ALU_SYMBOL.get(Insn(code).alu_op, "")
        if m and m[2] in (expected, "s" + expected):
            if m[4] is not None:
                off = int(m[3]) if m[3] else 0
                if m[2] in ("s/=", "s%="):
                    off = 1
                return [Insn(code, int(m[1]), int(m[4]), off, 0)]
            off = 1 if m[2] in ("s/=", "s%=") else 0
            return [Insn(code, int(m[1]), 0, off, _s32(int(m[5])))]
        raise bad()
    if cls == Cls.LDX:
        if m := _LOAD_RE.match(body):
            return [Insn(code, int(m[1]), int(m[3]), int(m[4]), 0)]
        raise bad()
    if cls in (Cls.ST, Cls.STX):
        if m := _STORE_RE.match(body):
            if m[3] is not None:
                return [Insn(code, int(m[1]), int(m[3]), int(m[2]), 0)]
            return [Insn(code, int(m[1]), 0, int(m[2]), _s32(int(m[4])))]
        raise bad()
    if cls in (Cls.JMP, Cls.JMP32):
        op = Insn(code).jmp_op
        if op is JmpOp.EXIT and body == "exit":
            return [Insn(code)]
        if op is JmpOp.JA:
            if m := _GOTO_RE.match(body):
                off = int(m[1])
                return [Insn(code, 0, 0, 0, off) if cls == Cls.JMP32 else Insn(code, 0, 0, off, 0)]
            raise bad()
        if op is JmpOp.CALL:
            if m := _CALL_RE.match(body):
                if m[1] is not None:
                    return [Insn(code, 0, 1, 0, int(m[1]))]
                return [Insn(code, 0, 0, 0, int(m[2]) if m[2] is not None else 0)]
            raise bad()
        if (m := _COND_RE.match(body)) and _JMP_SYMBOL.get(op) == m[0].split()[2]:
            off = int(m[4])
            if m[2] is not None:
                return [Insn(code, int(m[1]), int(m[2]), off, 0)]
            return [Insn(code, int(m[1]), 0, off, _s32(int(m[3], 16)))]
        raise bad()
    raise bad()


_CALL_NAME_RE = re.compile(r"\(85\)\s+call\s+([A-Za-z_]\w*)#(-?\d+)")


def call_names(text: str) -> dict[int, str]:
    """The helper names a bpftool listing gives its calls (``call bpf_get_current_uid_gid#281664``):
    a dump's call immediates are kernel offsets, which only the dumping host's symbols named."""
    return {int(m[2]): m[1] for m in _CALL_NAME_RE.finditer(text)}


def parse_bpftool_text(text: str) -> tuple[Insn, ...]:
    """Read ``bpftool prog dump xlated`` output back into slots.

    Lines that are not instructions (source comments, blank lines, ``opcodes`` byte lines) are
    skipped; the printed index must match the slot count so a dump with missing lines is refused
    rather than silently shifted (every jump offset would then be wrong).
    """
    out: list[Insn] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            continue
        index, code, body = int(m[1]), int(m[2], 16), m[3]
        where = f"line {lineno}"
        if index != len(out):
            raise ProgramError(f"{where}: instruction index {index}, expected {len(out)} (lines missing?)")
        out.extend(_parse_body(code, body, where))
    if not out:
        raise ProgramError("text: no bpftool instruction lines found (expected '   0: (61) r2 = ...')")
    return tuple(out)


__all__ = ["SIZES", "disassemble", "format_insn", "parse_bpftool_text"]
