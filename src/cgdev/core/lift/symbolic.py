"""Symbolic register values: a context field (major or minor) pushed through constant arithmetic.

A value is ``ops(x)`` for one unknown u32 ``x``; a branch on it is turned into the exact set of
``x`` that takes the branch by walking the operations backwards (``intervals.pre_*``).  Keeping
an upper bound of every intermediate value lets truncations and shifts invert without wrapping
into astronomically many ranges.
"""

from __future__ import annotations

import msgspec

from cgdev.core.lift import intervals as iv
from cgdev.core.lift.intervals import Inexact, IntervalSet

MAJOR = 0
MINOR = 1
VAR_NAMES = ("major", "minor")

Op = tuple[str, int, int, int]  # (name, constant, bits, bound of the input)


class Sym(msgspec.Struct, frozen=True):
    var: int
    ops: tuple[Op, ...] = ()
    hi: int = iv.U32  # every value this expression can take is <= hi

    def describe(self) -> str:
        return VAR_NAMES[self.var] + "".join(
            f" {name} {const:#x}/{bits}" for name, const, bits, _ in self.ops
        )


_INVERTIBLE = ("and", "or", "xor", "add", "sub", "neg", "lsh", "rsh", "trunc")


def extend(sym: Sym, name: str, const: int, bits: int) -> Sym:
    """``sym op const`` in a ``bits``-wide ALU (32-bit ops first truncate their input)."""
    if name not in _INVERTIBLE:
        raise Inexact(f"{name} on {VAR_NAMES[sym.var]} cannot be inverted exactly")
    mask = (1 << bits) - 1
    const &= mask
    if name == "sub":
        name, const = "add", -const & mask
    hi_t = min(sym.hi, mask)
    if name == "trunc" or (name in ("add", "or", "xor", "lsh", "rsh") and const == 0):
        if sym.hi <= mask:
            return sym
        name, const = "trunc", 0
    if name in ("lsh", "rsh") and const >= bits:
        raise Inexact(f"shift by {const}")
    full = (1 << hi_t.bit_length()) - 1
    if name == "and" and const & full == full and sym.hi <= mask:
        return sym
    if name == "and":
        hi_out = min(hi_t, const)
    elif name == "rsh":
        hi_out = hi_t >> const
    elif name == "lsh":
        hi_out = min(hi_t << const, mask)
    elif name == "add":
        hi_out = hi_t + const if hi_t + const <= mask else mask
    elif name in ("or", "xor"):
        hi_out = min((1 << max(hi_t.bit_length(), const.bit_length())) - 1, mask)
    elif name == "neg":
        hi_out = mask
    else:  # trunc
        hi_out = hi_t
    return Sym(sym.var, (*sym.ops, (name, const, bits, sym.hi)), hi_out)


def _pre_op(op: Op, target: IntervalSet) -> IntervalSet:
    name, const, bits, hi_in = op
    mask = (1 << bits) - 1
    top = min(hi_in, mask)
    if name == "and":
        inner = iv.pre_and(target, const, top)
    elif name == "or":
        inner = iv.clip(iv.pre_or(target, const, mask), top)
    elif name == "xor":
        inner = iv.clip(iv.pre_xor(target, const, mask), top)
    elif name == "add":
        inner = iv.clip(iv.pre_add(target, const, bits), top)
    elif name == "neg":
        inner = iv.clip(iv.pre_neg(target, bits), top)
    elif name == "lsh":
        inner = iv.pre_lsh(target, const, bits, top)
    elif name == "rsh":
        inner = iv.pre_rsh(target, const, top)
    else:  # trunc
        inner = iv.clip(target, top)
    if hi_in > mask:  # the input was truncated to ``bits`` first
        return iv._periodic(inner, bits, hi_in)
    return inner


def preimage(sym: Sym, target: IntervalSet) -> IntervalSet:
    """The ``x`` (u32) for which ``sym`` evaluates into ``target``."""
    for op in reversed(sym.ops):
        target = _pre_op(op, target)
    return iv.clip(target, iv.U32)


def rebase(sym: Sym, x_hi: int) -> Sym:
    """The same expression knowing the path already bounds ``x`` by ``x_hi``: tighter bounds let
    masks and shifts invert into fewer ranges (or vanish)."""
    out = Sym(sym.var, (), min(x_hi, iv.U32))
    for name, const, bits, _ in sym.ops:
        out = extend(out, name, const, bits)
    return out


def branch_set(sym: Sym, op: str, const: int, bits: int) -> IntervalSet:
    """The ``x`` for which ``if sym <op> const`` (a ``bits``-wide compare) is taken."""
    if bits == 32:
        sym = extend(sym, "trunc", 0, 32)
    if op == "jset":
        sym = extend(sym, "and", const, bits)
        target: IntervalSet = ((1, (1 << bits) - 1),)
    elif op in ("jsgt", "jsge", "jslt", "jsle"):
        target = iv.signed_set(op, const, bits)
    else:
        target = iv.unsigned_set(op, const, bits)
    return preimage(sym, iv.clip(target, sym.hi))


def evaluate(sym: Sym, x: int) -> int:
    """Forward evaluation (tests cross-check ``preimage`` against it)."""
    value = x
    for name, const, bits, _ in sym.ops:
        mask = (1 << bits) - 1
        value &= mask
        if name == "and":
            value &= const
        elif name == "or":
            value |= const
        elif name == "xor":
            value ^= const
        elif name == "add":
            value = (value + const) & mask
        elif name == "neg":
            value = -value & mask
        elif name == "lsh":
            value = (value << const) & mask
        elif name == "rsh":
            value >>= const
    return value
