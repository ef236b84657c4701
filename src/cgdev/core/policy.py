"""Policies: the exact function (type, major, minor, access mask) -> allowed, in a canonical form.

A device program, a rule list read under some semantics, a systemd unit and the AND of several
cgroup layers all denote the same kind of object.  Representing it canonically is what lets cgdev
say "these two are equal", "this layer takes away exactly these requests" and "lift(compile(p)) is
p" without enumerating 2 x 2^32 x 2^32 x 4 requests.

Representation: per device type, a step function over the major number (``StepFn``) whose values
are step functions over the minor number, whose values are *mask sets*: 8-bit bitmaps with bit
``1 << mask`` set when a request with that access mask is allowed (only the four masks of
``model.REQUEST_MASKS`` are meaningful; the others are always clear).  Step functions are stored
with merged neighbours, so structural equality is semantic equality.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from cgdev.core.model import (
    DEV_TYPES,
    MASKSET_ALL,
    MASKSET_NONE,
    REQUEST_MASKS,
    U32_MAX,
    DevType,
    Request,
)

V = TypeVar("V")
W = TypeVar("W")
X = TypeVar("X")


@dataclass(frozen=True, slots=True)
class StepFn(Generic[V]):
    """A piecewise-constant function over the u32 range: ``values[i]`` holds on
    ``[starts[i], starts[i+1] - 1]``.  Canonical: ``starts[0] == 0`` and neighbours differ."""

    starts: tuple[int, ...]
    values: tuple[V, ...]
    # How this function was made, when it was made by ``with_points``: ``(base, points)``.  Not
    # part of its value (equality and hashing ignore it); the compiler uses it to compile the
    # function as its few differences from ``base`` instead of rediscovering them piece by piece.
    origin: tuple[StepFn[V], tuple[int, ...]] | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def const(value: V) -> StepFn[V]:
        return StepFn((0,), (value,))

    @staticmethod
    def from_pieces(pieces: Iterable[tuple[int, V]]) -> StepFn[V]:
        """From ``(start, value)`` pairs sorted by start, the first at 0; merges equal neighbours."""
        starts: list[int] = []
        values: list[V] = []
        for start, value in pieces:
            if values and values[-1] == value:
                continue
            if starts and start <= starts[-1]:
                raise ValueError(f"step starts not increasing: {start} after {starts[-1]}")
            starts.append(start)
            values.append(value)
        if not starts or starts[0] != 0:
            raise ValueError("a step function must start at 0")
        return StepFn(tuple(starts), tuple(values))

    @staticmethod
    def from_points(default: V, points: Mapping[int, V]) -> StepFn[V]:
        """``default`` everywhere except at the given single points."""
        starts: dict[int, V] = {0: default}
        for point in sorted(points):
            starts[point] = points[point]
            if point < U32_MAX and point + 1 not in points:
                starts[point + 1] = default
        pieces = sorted(starts.items())
        return StepFn.from_pieces(pieces)

    def with_points(self, points: Mapping[int, V]) -> StepFn[V]:
        """``self`` except at the given single points: ``from_points`` over an existing function.

        Why: a semantics builds one shared function for many majors (the ``*:N`` column pattern)
        and each major differs from it at a few points of its own.  Splicing copies the shared
        tuples at C speed and touches Python code only around the points, so building thousands
        of such maps costs their points, not their breakpoints.
        """
        if not points:
            return self
        starts, values = self.starts, self.values
        out_s: list[int] = []
        out_v: list[V] = []
        check: list[int] = []  # output positions that may equal their left neighbour
        taken = 0  # the first piece of ``self`` not yet copied
        for point in sorted(points):
            i = bisect.bisect_right(starts, point) - 1  # the piece holding the point
            if i >= taken:
                check.append(len(out_s))
                out_s.extend(starts[taken : i + 1])
                out_v.extend(values[taken : i + 1])
                taken = i + 1
            if out_s and out_s[-1] == point:  # a piece starts at the point: the point replaces it
                out_s.pop()
                out_v.pop()
            check.append(len(out_s))
            out_s.append(point)
            out_v.append(points[point])
            if point < U32_MAX and not (taken < len(starts) and starts[taken] == point + 1):
                check.append(len(out_s))
                out_s.append(point + 1)
                out_v.append(values[i])
        check.append(len(out_s))
        out_s.extend(starts[taken:])
        out_v.extend(values[taken:])
        for j in sorted(set(check), reverse=True):
            if 0 < j < len(out_s) and out_v[j] == out_v[j - 1]:
                del out_s[j], out_v[j]
        return StepFn(tuple(out_s), tuple(out_v), (self, tuple(sorted(points))))

    def at(self, x: int) -> V:
        return self.values[bisect.bisect_right(self.starts, x) - 1]

    def pieces(self) -> Iterator[tuple[int, int, V]]:
        """``(lo, hi, value)`` for every maximal constant interval, inclusive bounds."""
        ends = [*self.starts[1:], U32_MAX + 1]
        for lo, end, value in zip(self.starts, ends, self.values, strict=True):
            yield lo, end - 1, value

    def map(self, fn: Callable[[V], W]) -> StepFn[W]:
        return StepFn.from_pieces((s, fn(v)) for s, v in zip(self.starts, self.values, strict=True))

    def combine(self, other: StepFn[W], fn: Callable[[V, W], X]) -> StepFn[X]:
        """Pointwise ``fn(self(x), other(x))``, by merging the two sets of breakpoints."""
        starts = sorted(set(self.starts) | set(other.starts))
        return StepFn.from_pieces((s, fn(self.at(s), other.at(s))) for s in starts)

    @property
    def is_const(self) -> bool:
        return len(self.starts) == 1

    def points(self) -> Iterator[tuple[int, V]]:
        """The single-point pieces, for renderers that speak in exact numbers."""
        for lo, hi, value in self.pieces():
            if lo == hi:
                yield lo, value


MinorMap = StepFn[int]
MajorMap = StepFn[MinorMap]

_DENY_MINORS: MinorMap = StepFn.const(MASKSET_NONE)
_ALLOW_MINORS: MinorMap = StepFn.const(MASKSET_ALL)


class Mismatch(msgspec.Struct, frozen=True):
    """A request on which two policies disagree (one counter-example of a difference)."""

    request: Request
    left: bool
    right: bool


class Policy(msgspec.Struct, frozen=True):
    """The exact device policy: ``block`` and ``char`` major maps of minor maps of mask sets."""

    block: MajorMap
    char: MajorMap

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def deny_all() -> Policy:
        return Policy(StepFn.const(_DENY_MINORS), StepFn.const(_DENY_MINORS))

    @staticmethod
    def allow_all() -> Policy:
        return Policy(StepFn.const(_ALLOW_MINORS), StepFn.const(_ALLOW_MINORS))

    @staticmethod
    def from_types(maps: Mapping[str, MajorMap]) -> Policy:
        return Policy(maps["b"], maps["c"])

    @staticmethod
    def from_function(
        fn: Callable[[DevType, int, int], int],
        majors: Mapping[str, Iterable[int]],
        minors: Mapping[tuple[str, int | None], Iterable[int]],
    ) -> Policy:
        """Build from a mask-set function that is constant off the given points.

        ``majors[t]`` are the major numbers where type ``t`` may differ from "any other major";
        ``minors[(t, major)]`` (``major`` None for the other majors) are the minor numbers where
        it may differ from "any other minor".  ``fn`` is evaluated once per cell.  Semantics with
        cleverer per-rule algorithms build their ``StepFn`` directly instead.
        """
        maps: dict[str, MajorMap] = {}
        for t in DEV_TYPES:
            points = sorted(set(majors.get(t, ())))
            other = _free_point(points)

            def minor_map(major_key: int | None, rep: int, t: DevType = t) -> MinorMap:
                mpoints = sorted(set(minors.get((t, major_key), ())))
                mother = _free_point(mpoints)
                return StepFn.from_points(fn(t, rep, mother), {m: fn(t, rep, m) for m in mpoints})

            default = minor_map(None, other)
            maps[t] = StepFn.from_points(default, {p: minor_map(p, p) for p in points})
        return Policy.from_types(maps)

    # -- queries ------------------------------------------------------------------------------

    def major_map(self, dev_type: str) -> MajorMap:
        return self.block if dev_type == "b" else self.char

    def maskset(self, dev_type: str, major: int, minor: int) -> int:
        return self.major_map(dev_type).at(major).at(minor)

    def allows(self, request: Request) -> bool:
        return bool(self.maskset(request.type, request.major, request.minor) >> request.access & 1)

    def verdict(self, dev_type: str, major: int, minor: int, access: int) -> bool:
        return bool(self.maskset(dev_type, major, minor) >> access & 1)

    def regions(self) -> Iterator[tuple[DevType, int, int, int, int, int]]:
        """``(type, major_lo, major_hi, minor_lo, minor_hi, maskset)`` for every constant box."""
        for t in DEV_TYPES:
            for mlo, mhi, minors in self.major_map(t).pieces():
                for nlo, nhi, maskset in minors.pieces():
                    yield t, mlo, mhi, nlo, nhi, maskset

    @property
    def size(self) -> int:
        """Number of constant boxes: a measure of how complex a policy is to render or compile."""
        return sum(1 for _ in self.regions())

    # -- algebra ------------------------------------------------------------------------------

    def _combine(self, other: Policy, op: Callable[[int, int], int]) -> Policy:
        def per_type(a: MajorMap, b: MajorMap) -> MajorMap:
            return a.combine(b, lambda ma, mb: ma.combine(mb, op))

        return Policy(per_type(self.block, other.block), per_type(self.char, other.char))

    def __and__(self, other: Policy) -> Policy:
        """Intersection: what two layers allow together (every program must return 1)."""
        return self._combine(other, lambda a, b: a & b)

    def __or__(self, other: Policy) -> Policy:
        return self._combine(other, lambda a, b: a | b)

    def minus(self, other: Policy) -> Policy:
        """What ``self`` allows and ``other`` does not."""
        return self._combine(other, lambda a, b: a & ~b & MASKSET_ALL)

    def __invert__(self) -> Policy:
        return self._combine(Policy.deny_all(), lambda a, _b: ~a & MASKSET_ALL)

    def issubset(self, other: Policy) -> bool:
        return self.minus(other) == Policy.deny_all()

    def diff(self, other: Policy, limit: int | None = None) -> list[Mismatch]:
        """A minimal list of counter-examples: one request per differing box and access mask."""
        out: list[Mismatch] = []
        xor = self._combine(other, lambda a, b: a ^ b)
        for t, mlo, _mhi, nlo, _nhi, maskset in xor.regions():
            for mask in REQUEST_MASKS:
                if maskset >> mask & 1:
                    req = Request(t, mlo, nlo, mask)
                    out.append(Mismatch(req, self.allows(req), other.allows(req)))
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    def to_json(self) -> dict[str, Any]:
        """A stable, exact serialisation (for snapshots and ``--json``)."""

        def major_json(major_map: MajorMap) -> list[Any]:
            return [
                [lo, [[nlo, ms] for nlo, _nhi, ms in minors.pieces()]]
                for lo, _hi, minors in major_map.pieces()
            ]

        return {"b": major_json(self.block), "c": major_json(self.char)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Policy:
        def major_from(items: list[Any]) -> MajorMap:
            return StepFn.from_pieces(
                (int(lo), StepFn.from_pieces((int(n), int(ms) & MASKSET_ALL) for n, ms in minors))
                for lo, minors in items
            )

        return Policy(major_from(data["b"]), major_from(data["c"]))


def _free_point(points: list[int]) -> int:
    """A u32 that is not in ``points`` (a representative of "every other number")."""
    taken = set(points)
    candidate = U32_MAX
    while candidate in taken:
        candidate -= 1
    return candidate
