"""eBPF arithmetic as the kernel computes it: ALU operations, byte swaps and jump comparisons.

Shared by the interpreter (on concrete values) and the lifter (on each of the eight contexts'
values), so both compute every operation, division by zero and signed forms included, in one
place.  Operations are named by their mnemonics (``isa.AluOp.mnemonic``, ``isa.JmpOp.mnemonic``).
"""

from __future__ import annotations


def to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def alu(name: str, dst: int, src: int, bits: int, off: int = 0) -> int | None:
    """``dst op src`` on ``bits``-wide unsigned values, the kernel's way; None if undefined."""
    mask = (1 << bits) - 1
    dst &= mask
    src &= mask
    if name == "mov":
        if off in (8, 16, 32):
            return to_signed(src, off) & mask
        return src
    if name == "add":
        return (dst + src) & mask
    if name == "sub":
        return (dst - src) & mask
    if name == "mul":
        return (dst * src) & mask
    if name == "or":
        return dst | src
    if name == "and":
        return dst & src
    if name == "xor":
        return dst ^ src
    if name == "lsh":
        return (dst << (src & (bits - 1))) & mask
    if name == "rsh":
        return dst >> (src & (bits - 1))
    if name == "arsh":
        return (to_signed(dst, bits) >> (src & (bits - 1))) & mask
    if name == "neg":
        return -dst & mask
    if name in ("div", "mod"):
        if off == 1:  # signed division (cpu v4)
            if src == 0:
                return 0 if name == "div" else dst
            a, b = to_signed(dst, bits), to_signed(src, bits)
            q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
            return (q if name == "div" else a - q * b) & mask
        if src == 0:
            return 0 if name == "div" else dst
        return dst // src if name == "div" else dst % src
    return None


def byteswap(value: int, bits: int, to_big: bool) -> int:
    value &= (1 << bits) - 1
    if not to_big:  # little-endian host: to-le is truncation
        return value
    return int.from_bytes(value.to_bytes(bits // 8, "little"), "big")


def compare(name: str, a: int, b: int, bits: int) -> bool:
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    if name == "jeq":
        return a == b
    if name == "jne":
        return a != b
    if name == "jgt":
        return a > b
    if name == "jge":
        return a >= b
    if name == "jlt":
        return a < b
    if name == "jle":
        return a <= b
    if name == "jset":
        return bool(a & b)
    sa, sb = to_signed(a, bits), to_signed(b, bits)
    return {"jsgt": sa > sb, "jsge": sa >= sb, "jslt": sa < sb, "jsle": sa <= sb}[name]
