"""What lifting answers: the rules a program reads as (``LiftedRule``), which block decided one
request (``Decision``), and the whole answer for one program (``LiftResult``).

Kept apart from how the answer is computed (``lifter``, ``engine``, ``assembly``, ``widen``): this
module is what callers read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from cgdev.core import interp
from cgdev.core.isa import Insn, Opcode, jump_target
from cgdev.core.lift import intervals as iv
from cgdev.core.lift.assembly import Cells, policy_of_cells
from cgdev.core.lift.coverage import Gap
from cgdev.core.lift.engine import CTX_TYPES
from cgdev.core.lift.intervals import IntervalSet
from cgdev.core.model import (
    KERNEL_TYPE,
    REQUEST_MASKS,
    TYPE_OF_KERNEL,
    Request,
    Rule,
    access_to_str,
    maskset_for_bits,
)
from cgdev.core.policy import Policy

EXACT_TEXT_RULES: Final = 3  # a remainder block whose decided set renders in this many rules says it


def _sayable_in(policy: Policy, rules: int) -> bool:
    """False when no list of ``rules`` rules can mean ``policy``, judged from its shape alone: a
    rule's box bounds the majors (and minors) at no more than two places (``M`` and ``M + 1``),
    so ``rules`` rules cut each axis into at most ``2 * rules + 1`` runs of equal value.  A leaf
    of a 100,000-rule tree fails this at once instead of being rendered (seconds) to find out."""
    limit = 2 * rules + 1
    for majors in (policy.block, policy.char):
        if len(majors.starts) > limit or any(len(minors.starts) > limit for minors in majors.values):
            return False
    return True


def _format_set(values: IntervalSet | None, limit: int = 6) -> str:
    if values is None or values == iv.ALL_U32:
        return "*"
    parts = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in values[:limit]]
    if len(values) > limit:
        parts.append(f"...(+{len(values) - limit})")
    return ",".join(parts) if parts else "{}"


@dataclass(frozen=True, slots=True)
class LiftedRule:
    """One block of instructions as a rule; the list, read top-down with the first match deciding
    the whole request, is the program.

    That reading is why a block shadowed in part by earlier ones (a chain's final ``r0 = 0; exit``,
    a wildcard after exact rules, systemd's ``1:3 rwm`` after ``char-* m``) can still print as the
    plain rule its generator wrote: the box types x majors x minors x ``masks`` is widened to that
    rule whenever the widening only covers requests earlier rules decide (``shadowed`` is then
    True).  Where no such rule exists ``remainder`` is True: the block decided the box *minus*
    what other blocks decided, and the sets are only the envelope.
    """

    allow: bool
    types: tuple[str, ...]
    masks: tuple[int, ...]
    majors: IntervalSet | None
    minors: IntervalSet | None
    insn_range: tuple[int, int]
    remainder: bool = False
    shadowed: bool = False
    cells: Cells = field(default_factory=list, compare=False, repr=False)  # what it decided, exactly

    @property
    def type(self) -> str:
        return self.types[0] if len(self.types) == 1 else "a"

    @property
    def access(self) -> int | None:
        """Rule access bits whose subset test lets exactly ``masks`` through, or None."""
        bits = wanted = 0
        for mask in self.masks:
            bits |= mask
            wanted |= 1 << mask
        return bits if maskset_for_bits(bits) == wanted else None

    def rule(self) -> Rule | None:
        """The single OCI-style rule this block is in first-match order, when it is one (never
        for a ``remainder``: its sets are only an envelope of what it decided)."""
        access = self.access
        if access is None or not self.masks or self.remainder:
            return None
        major = single_or_any(self.majors)
        minor = single_or_any(self.minors)
        if major is False or minor is False:
            return None
        return Rule(self.allow, self.type, major, minor, access)

    def __str__(self) -> str:
        access = self.access
        acc = (
            access_to_str(access)
            if access is not None
            else "masks " + "/".join(access_to_str(m) for m in self.masks)
        )
        verb = "allow" if self.allow else "deny"
        majors, minors = self.majors, self.minors
        if self.remainder:
            exact = self._exact_text()
            if exact is not None:
                return f"{verb} {exact}"
            majors, minors = _span(majors), _span(minors)  # the holes are what other blocks decided
        text = f"{verb} {self.type} {_format_set(majors)}:{_format_set(minors)} {acc}"
        return text + (" (except what other blocks decided)" if self.remainder else "")

    def _exact_text(self) -> str | None:
        """What a leaf of a decision tree decided, when a few plain rules say it exactly."""
        if not self.cells:
            return None
        from cgdev.core.render import to_rules

        decided = policy_of_cells(self.cells)
        if not _sayable_in(decided, EXACT_TEXT_RULES):
            return None
        rendering = to_rules(decided)
        rendered = rendering.rules
        if rendering.warnings or not rendered or len(rendered) > EXACT_TEXT_RULES:
            return None  # a mask set rules cannot say (w and rw but not r), or too many rules
        if not all(r.allow for r in rendered):
            return None
        return ", ".join(str(r).removeprefix("allow ") for r in rendered)

    def matches(self, request: Request) -> bool:
        """Whether the rule's box holds ``request`` (first match decides, see the class doc)."""
        return (
            request.type in self.types
            and request.access in self.masks
            and (self.majors is None or iv.contains(self.majors, request.major))
            and (self.minors is None or iv.contains(self.minors, request.minor))
        )

    def to_json(self) -> dict[str, Any]:
        rule = self.rule()
        return {
            "allow": self.allow,
            "type": self.type,
            "majors": None if self.majors is None else [list(p) for p in self.majors],
            "minors": None if self.minors is None else [list(p) for p in self.minors],
            "access": access_to_str(self.access) if self.access is not None else None,
            "masks": [access_to_str(m) for m in self.masks],
            "insn_range": list(self.insn_range),
            "remainder": self.remainder,
            "shadowed": self.shadowed,
            "rule": str(rule) if rule is not None else None,
            "text": str(self),
        }


def _span(values: IntervalSet | None) -> IntervalSet | None:
    return ((values[0][0], values[-1][1]),) if values else values


def single_or_any(values: IntervalSet | None) -> int | bool | None:
    if values is None or values == iv.ALL_U32:
        return None
    if len(values) == 1 and values[0][0] == values[0][1]:
        return values[0][0]
    return False


class Decision(msgspec.Struct, frozen=True):
    """Which block decided one request: ``rule`` is None for opaque programs; ``allowed`` None
    when the request's path reaches a helper call (the verdict is the helper's, unknown)."""

    allowed: bool | None
    rule: LiftedRule | None
    insn_range: tuple[int, int]
    executed: int


class LiftResult(msgspec.Struct):
    """One program's answer: ``policy`` and ``rules`` when it lifted, ``opaque`` (why not)
    otherwise; ``gaps`` are the instructions no rule covers; ``blinded`` that the kernel gave the
    program with constants blinded (``decide`` then admits the AX register)."""

    insns: tuple[Insn, ...]
    policy: Policy | None
    opaque: str | None
    generator: str
    rules: list[LiftedRule] = msgspec.field(default_factory=list)
    states: int = 0
    gaps: list[Gap] = msgspec.field(default_factory=list)
    blinded: bool = False

    @property
    def reads_as_rules(self) -> bool:
        """Whether ``rules``, read top-down with the first match deciding, are the program (true
        for rule chains: runc, crun, systemd, hook prefixes; a decision tree's leaves are not)."""
        return self.policy is not None and not any(rule.remainder for rule in self.rules)

    def first_match(self, request: Request) -> LiftedRule:
        """The first rule whose box holds ``request``; meaningful only when ``reads_as_rules``."""
        return next(rule for rule in self.rules if rule.matches(request))

    def decide(self, request: Request) -> Decision:
        """Run the request concretely and name the block (and lifted rule) that decided it."""
        path: list[tuple[int, bool]] = []
        try:
            outcome = interp.run(self.insns, request, checked=True, blinded=self.blinded, path=path)
        except interp.UnmodelledCall as call:
            return Decision(None, None, (call.pc, call.pc), 0)  # the call decides, not the request
        insn_range = _deciding_block(self.insns, path)
        ctx = _ctx_index(request)
        rule = None
        for candidate in self.rules:
            if (
                candidate.insn_range == insn_range
                and candidate.allow == bool(outcome.verdict)
                and TYPE_OF_KERNEL[CTX_TYPES[ctx]] in candidate.types
                and request.access in candidate.masks
            ):
                rule = candidate
                break
        return Decision(bool(outcome.verdict), rule, insn_range, outcome.executed)

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "instructions": len(self.insns),
            "opaque": self.opaque,
            "rules": [r.to_json() for r in self.rules],
            "gaps": [gap.to_json() for gap in self.gaps],
            "policy": None if self.policy is None else self.policy.to_json(),
        }


def _ctx_index(request: Request) -> int:
    return (KERNEL_TYPE[request.type] - 1) * len(REQUEST_MASKS) + REQUEST_MASKS.index(request.access)


def _deciding_block(insns: Sequence[Insn], path: Sequence[tuple[int, bool]]) -> tuple[int, int]:
    """The same block bounds the engine tracks: a block starts where a taken conditional jump
    lands (or at 0) and ends at its first ``goto`` or ``exit``."""
    start, end = 0, -1
    for pc, jumped in path:
        if jumped:
            start, end = jump_target(insns, pc), -1
        elif end < 0 and insns[pc].code in (Opcode.JA, Opcode.EXIT, Opcode.GOTOL):
            end = pc
    return start, end
