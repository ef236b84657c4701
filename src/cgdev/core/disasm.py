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
    ALU_NAMES,
    CLASS_ALU,
    CLASS_ALU64,
    CLASS_JMP,
    CLASS_JMP32,
    CLASS_LDX,
    CLASS_ST,
    CLASS_STX,
    JMP_NAMES,
    JMP_OPS,
    MODE_MEM,
    OPCODE_LD_IMM64,
    SIZE_BYTES,
    SIZES,
    Insn,
    imm64,
)
from cgdev.errors import ProgramError

_ALU_SYMBOL = {
    "add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "or": "|=", "and": "&=", "lsh": "<<=",
    "rsh": ">>=", "mod": "%=", "xor": "^=", "mov": "=", "arsh": "s>>=",
}  # fmt: skip
_JMP_SYMBOL = {
    "jeq": "==", "jgt": ">", "jge": ">=", "jlt": "<", "jle": "<=", "jset": "&", "jne": "!=",
    "jsgt": "s>", "jsge": "s>=", "jslt": "s<", "jsle": "s<=",
}  # fmt: skip
_SIZE_NAME = {size: f"u{8 * nbytes}" for size, nbytes in SIZE_BYTES.items()}
MODE_MEMSX = 0x80


def _hex_u32(imm: int) -> str:
    return f"0x{imm & 0xFFFF_FFFF:x}"


def _alu(insn: Insn) -> str:
    reg = "w" if insn.cls == CLASS_ALU else "r"
    name = ALU_NAMES.get(insn.op, "")
    if name == "neg":
        return f"{reg}{insn.dst} = -{reg}{insn.dst}"
    if name == "end":
        order = "be" if insn.uses_reg_source and insn.cls == CLASS_ALU else "le"
        if insn.cls == CLASS_ALU64:
            order = "bswap"
        return f"{reg}{insn.dst} = {order}{insn.imm} {reg}{insn.dst}"
    if name not in _ALU_SYMBOL:
        return f"BUG_alu_{insn.code:02x}"
    symbol = _ALU_SYMBOL[name]
    if name in ("div", "mod") and insn.off == 1:
        symbol = "s" + symbol
    if insn.uses_reg_source:
        if name == "mov" and insn.off in (8, 16, 32):
            return f"{reg}{insn.dst} = (s{insn.off}){reg}{insn.src}"
        return f"{reg}{insn.dst} {symbol} {reg}{insn.src}"
    return f"{reg}{insn.dst} {symbol} {insn.imm}"


def _jmp(insns: Sequence[Insn], pc: int) -> str:
    insn = insns[pc]
    name = JMP_NAMES.get(insn.op, "")
    if insn.code == CLASS_JMP | JMP_OPS["ja"]:
        return f"goto pc{insn.off:+d}"
    if insn.code == CLASS_JMP32 | JMP_OPS["ja"]:
        return f"gotol pc{insn.imm:+d}"
    if name == "exit" and insn.cls == CLASS_JMP:
        return "exit"
    if name == "call" and insn.cls == CLASS_JMP:
        if insn.src == 1:
            return f"call pc{insn.imm:+d}"
        return f"call #{insn.imm}"
    if name not in _JMP_SYMBOL:
        return f"BUG_jmp_{insn.code:02x}"
    reg = "w" if insn.cls == CLASS_JMP32 else "r"
    right = f"{reg}{insn.src}" if insn.uses_reg_source else _hex_u32(insn.imm)
    return f"if {reg}{insn.dst} {_JMP_SYMBOL[name]} {right} goto pc{insn.off:+d}"


def _memory(insn: Insn) -> str:
    size = _SIZE_NAME[insn.size]
    where = f"(r{insn.src if insn.cls == CLASS_LDX else insn.dst} {insn.off:+d})"
    if insn.cls == CLASS_LDX and insn.mode in (MODE_MEM, MODE_MEMSX):
        kind = size if insn.mode == MODE_MEM else "s" + size[1:]
        return f"r{insn.dst} = *({kind} *){where}"
    if insn.cls == CLASS_ST and insn.mode == MODE_MEM:
        return f"*({size} *){where} = {insn.imm}"
    if insn.cls == CLASS_STX and insn.mode == MODE_MEM:
        return f"*({size} *){where} = r{insn.src}"
    return f"BUG_mem_{insn.code:02x}"


def format_insn(insns: Sequence[Insn], pc: int) -> str:
    """One line without the ``N:`` prefix, e.g. ``(55) if r2 != 0x2 goto pc+4``."""
    insn = insns[pc]
    cls = insn.cls
    if insn.code == OPCODE_LD_IMM64:
        if insn.src == 0 and pc + 1 < len(insns):
            body = f"r{insn.dst} = 0x{imm64(insns, pc):x}"
        elif insn.src in (1, 5):  # BPF_PSEUDO_MAP_FD / _IDX
            body = f"r{insn.dst} = map[id:{insn.imm}]"
        elif insn.src in (2, 6):  # BPF_PSEUDO_MAP_VALUE / _IDX_VALUE
            body = f"r{insn.dst} = map[id:{insn.imm}][0]+{insns[pc + 1].imm if pc + 1 < len(insns) else 0}"
        else:
            body = f"r{insn.dst} = pseudo{insn.src}[{insn.imm}]"
    elif cls in (CLASS_ALU, CLASS_ALU64):
        body = _alu(insn)
    elif cls in (CLASS_JMP, CLASS_JMP32):
        body = _jmp(insns, pc)
    elif cls in (CLASS_LDX, CLASS_ST, CLASS_STX) and insn.size in _SIZE_NAME:
        body = _memory(insn)
    else:
        body = f"BUG_{insn.code:02x}"
    return f"({insn.code:02x}) {body}"


def disassemble(insns: Sequence[Insn]) -> str:
    """The whole listing; the second slot of an ``LD_IMM64`` is skipped, as bpftool does."""
    lines = []
    pc = 0
    while pc < len(insns):
        lines.append(f"{pc:4d}: {format_insn(insns, pc)}")
        pc += 2 if insns[pc].code == OPCODE_LD_IMM64 else 1
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
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def _parse_body(code: int, body: str, where: str) -> list[Insn]:
    """Rebuild the slot(s) of one listing line; ``code`` (the bracketed opcode) is authoritative."""
    cls = code & 0x07

    def bad() -> ProgramError:
        return ProgramError(f"{where}: cannot read instruction ({code:02x}) {body!r}")

    if code == OPCODE_LD_IMM64:
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
    if cls in (CLASS_ALU, CLASS_ALU64):
        if m := _NEG_RE.match(body):
            return [Insn(code, int(m[1]))]
        if m := _END_RE.match(body):
            return [Insn(code, int(m[1]), 0, 0, int(m[2]))]
        m = _ALU_RE.match(body)
        expected = _ALU_SYMBOL.get(ALU_NAMES.get(code & 0xF0, ""), "")
        if m and m[2] in (expected, "s" + expected):
            if m[4] is not None:
                off = int(m[3]) if m[3] else 0
                if m[2] in ("s/=", "s%="):
                    off = 1
                return [Insn(code, int(m[1]), int(m[4]), off, 0)]
            off = 1 if m[2] in ("s/=", "s%=") else 0
            return [Insn(code, int(m[1]), 0, off, _s32(int(m[5])))]
        raise bad()
    if cls == CLASS_LDX:
        if m := _LOAD_RE.match(body):
            return [Insn(code, int(m[1]), int(m[3]), int(m[4]), 0)]
        raise bad()
    if cls in (CLASS_ST, CLASS_STX):
        if m := _STORE_RE.match(body):
            if m[3] is not None:
                return [Insn(code, int(m[1]), int(m[3]), int(m[2]), 0)]
            return [Insn(code, int(m[1]), 0, int(m[2]), _s32(int(m[4])))]
        raise bad()
    if cls in (CLASS_JMP, CLASS_JMP32):
        op = code & 0xF0
        if op == JMP_OPS["exit"] and body == "exit":
            return [Insn(code)]
        if op == JMP_OPS["ja"]:
            if m := _GOTO_RE.match(body):
                off = int(m[1])
                return [Insn(code, 0, 0, 0, off) if cls == CLASS_JMP32 else Insn(code, 0, 0, off, 0)]
            raise bad()
        if op == JMP_OPS["call"]:
            if m := _CALL_RE.match(body):
                if m[1] is not None:
                    return [Insn(code, 0, 1, 0, int(m[1]))]
                return [Insn(code, 0, 0, 0, int(m[2]) if m[2] is not None else 0)]
            raise bad()
        if (m := _COND_RE.match(body)) and _JMP_SYMBOL.get(JMP_NAMES.get(op, "")) == m[0].split()[2]:
            off = int(m[4])
            if m[2] is not None:
                return [Insn(code, int(m[1]), int(m[2]), off, 0)]
            return [Insn(code, int(m[1]), 0, off, _s32(int(m[3], 16)))]
        raise bad()
    raise bad()


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
