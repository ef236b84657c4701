"""Exact sets of unsigned integers as sorted interval tuples, and preimages of sets under the
arithmetic a device program may apply to ``major``/``minor`` before comparing them.

Why preimages: the lifter never enumerates numbers.  A test ``if (major >> 8) & 0xff == 3`` splits
the set of majors still possible on a path into the exact set where the test holds and the rest;
that set is the preimage of ``{3}`` under ``x -> (x >> 8) & 0xff``.  Each operation knows its own
preimage; anything whose preimage would explode (more than ``MAX_PIECES`` intervals) or that has no
cheap exact inverse is refused with ``Inexact``, and the lifter reports the program as opaque.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

from cgdev.core.isa import U32

IntervalSet = tuple[tuple[int, int], ...]  # sorted, disjoint, non-adjacent, inclusive bounds

MAX_PIECES: Final = 1 << 14
EMPTY: IntervalSet = ()
ALL_U32: IntervalSet = ((0, U32),)


class Inexact(Exception):
    """This operation's preimage cannot be represented exactly within the budget."""


def normalize(pieces: Iterable[tuple[int, int]]) -> IntervalSet:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(p for p in pieces if p[0] <= p[1]):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    if len(out) > MAX_PIECES:
        raise Inexact(f"more than {MAX_PIECES} separate ranges")
    return tuple(out)


def union_all(parts: Iterable[IntervalSet]) -> IntervalSet:
    """The union of several sets in one sort, with no piece budget: a union is exact and linear in
    its input (the budget guards preimages, which can explode)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(p for part in parts for p in part):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def complement(a: IntervalSet, top: int) -> IntervalSet:
    """``[0, top]`` minus ``a``."""
    out = []
    nxt = 0
    for lo, hi in a:
        if lo > top:
            break
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= top:
        out.append((nxt, top))
    return tuple(out)


def union(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    if not a:
        return b
    if not b:
        return a
    return normalize((*a, *b))


def minus(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    if not a or not b:
        return a
    return intersect(a, complement(b, max(a[-1][1], b[-1][1])))


def contains(a: IntervalSet, x: int) -> bool:
    i = bisect.bisect_right(a, (x, 1 << 80)) - 1
    return i >= 0 and a[i][0] <= x <= a[i][1]


def size(a: IntervalSet) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


def clip(a: IntervalSet, top: int) -> IntervalSet:
    return intersect(a, ((0, top),))


# -- comparison sets ---------------------------------------------------------------------------


def unsigned_set(op: str, c: int, bits: int) -> IntervalSet:
    """``{v in [0, 2^bits) : v op c}`` for the unsigned jump operators."""
    top = (1 << bits) - 1
    c &= top
    if op == "jeq":
        return ((c, c),)
    if op == "jne":
        return complement(((c, c),), top)
    if op == "jgt":
        return ((c + 1, top),) if c < top else EMPTY
    if op == "jge":
        return ((c, top),)
    if op == "jlt":
        return ((0, c - 1),) if c > 0 else EMPTY
    if op == "jle":
        return ((0, c),)
    raise ValueError(op)


def signed_set(op: str, c: int, bits: int) -> IntervalSet:
    """``{v : signed(v) op signed(c)}`` as unsigned intervals."""
    top = (1 << bits) - 1
    half = 1 << (bits - 1)
    c &= top
    sc = c - (1 << bits) if c >= half else c
    lo, hi = -half, half - 1
    if op == "jsgt":
        lo = sc + 1
    elif op == "jsge":
        lo = sc
    elif op == "jslt":
        hi = sc - 1
    elif op == "jsle":
        hi = sc
    else:
        raise ValueError(op)
    if lo > hi:
        return EMPTY
    pieces = []
    if hi >= 0:
        pieces.append((max(lo, 0), hi))
    if lo < 0:
        pieces.append((lo + (1 << bits), min(hi, -1) + (1 << bits)))
    return normalize(pieces)


# -- preimages of one operation ----------------------------------------------------------------
# Each takes the target set S (values after the op, within [0, 2^bits)), the op's constant, the
# width, and the bound ``hi_in`` of the op's inputs; it returns the inputs in [0, hi_in] that land
# in S.  Inputs wider than ``bits`` are first truncated (32-bit ALU), handled by ``_periodic``.


def _periodic(base: IntervalSet, period_bits: int, hi_in: int) -> IntervalSet:
    """``{v in [0, hi_in] : v mod 2^period_bits in base}``."""
    period = 1 << period_bits
    copies = (hi_in >> period_bits) + 1
    if copies * max(len(base), 1) > MAX_PIECES:
        raise Inexact("a truncated or shifted field wraps into too many ranges")
    return clip(
        normalize((lo + k * period, hi + k * period) for k in range(copies) for lo, hi in base), hi_in
    )


def pre_and(target: IntervalSet, mask: int, top: int) -> IntervalSet:
    """``{v in [0, top] : v & mask in target}`` by splitting aligned blocks until each block maps
    onto a single value (the mask's low bits there are 0), a translated copy of itself (all 1), or
    lies wholly inside or outside the target."""
    out: list[tuple[int, int]] = []
    budget = [MAX_PIECES * 4]
    width = max(top.bit_length(), mask.bit_length(), 1)

    def walk(base: int, k: int) -> None:
        if base > top:
            return
        budget[0] -= 1
        if budget[0] < 0:
            raise Inexact(f"mask 0x{mask:x} splits the field into too many ranges")
        low = (1 << k) - 1
        image_lo = base & mask
        image_hi = image_lo | (mask & low)
        hit = intersect(target, ((image_lo, image_hi),))
        if not hit:
            return
        end = min(base + low, top)
        if hit == ((image_lo, image_hi),):
            out.append((base, end))
            return
        if mask & low == low:  # block maps by translation: v -> image_lo + (v - base)
            for lo, hi in hit:
                out.append((base + lo - image_lo, min(base + hi - image_lo, end)))
            return
        if mask & low == 0:
            return  # a single image value, not in target (handled above when it is)
        walk(base, k - 1)
        walk(base + (1 << (k - 1)), k - 1)

    walk(0, width)
    return normalize(out)


def _not(a: IntervalSet, top: int) -> IntervalSet:
    return normalize((top - hi, top - lo) for lo, hi in a)


def pre_or(target: IntervalSet, const: int, top: int) -> IntervalSet:
    """``v | c == ~(~v & ~c)``: reuse the AND preimage on complemented values."""
    inverted = pre_and(_not(target, top), ~const & top, top)
    return _not(inverted, top)


def pre_xor(target: IntervalSet, const: int, top: int) -> IntervalSet:
    """XOR maps each aligned power-of-two block onto another one, so decompose the target."""
    out = []
    for lo, hi in target:
        while lo <= hi:
            k = (lo & -lo).bit_length() - 1 if lo else top.bit_length()
            while lo + (1 << k) - 1 > hi:
                k -= 1
            start = (lo ^ const) & ~((1 << k) - 1)
            out.append((start, start + (1 << k) - 1))
            lo += 1 << k
    return normalize(out)


def pre_add(target: IntervalSet, const: int, bits: int) -> IntervalSet:
    modulus = 1 << bits
    out = []
    for lo, hi in target:
        a, b = (lo - const) % modulus, (hi - const) % modulus
        if a <= b:
            out.append((a, b))
        else:
            out.extend([(a, modulus - 1), (0, b)])
    return normalize(out)


def pre_neg(target: IntervalSet, bits: int) -> IntervalSet:
    modulus = 1 << bits
    out = []
    for lo, hi in target:
        if lo == 0:
            out.append((0, 0))
            lo = 1
        if lo <= hi:
            out.append((modulus - hi, modulus - lo))
    return normalize(out)


def pre_lsh(target: IntervalSet, shift: int, bits: int, hi_in: int) -> IntervalSet:
    keep = bits - shift
    units = []
    for lo, hi in target:
        ulo = -(-lo >> shift)
        uhi = min(hi >> shift, (1 << keep) - 1)
        if ulo <= uhi:
            units.append((ulo, uhi))
    return _periodic(normalize(units), keep, hi_in)


def pre_rsh(target: IntervalSet, shift: int, hi_in: int) -> IntervalSet:
    return clip(normalize((lo << shift, (hi << shift) | ((1 << shift) - 1)) for lo, hi in target), hi_in)
