"""Lift device programs into rules, and ask each (and all of them together) about requests.

The ``lift`` command's operation: each program's lifted rules, generator and instruction ranges,
the exact policy, and for each request the verdict of every program and of their AND (every
program on a path must allow).  The lifter's answer is cross-checked with the interpreter on every
request asked: a disagreement is a cgdev bug, raised as such, never a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cgdev.errors import InputError, LifterDisagreement, ProgramError
from cgdev.ops.layers import all_allow
from cgdev.ops.program_input import ProgramSource

if TYPE_CHECKING:
    from cgdev.core.lift import LiftResult
    from cgdev.core.model import Request


@dataclass(frozen=True, slots=True)
class Check:
    """One request's verdict: ``allowed`` None when it cannot be computed (instructions withheld)."""

    request: Request
    allowed: bool | None
    rule: str | None = None
    insn_range: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "request": str(self.request),
            "allowed": self.allowed,
            "rule": self.rule,
            "insn_range": None if self.insn_range is None else list(self.insn_range),
        }


@dataclass(frozen=True, slots=True)
class ProgramLift:
    source: ProgramSource
    result: LiftResult
    policy_rules: tuple[str, ...] | None  # the exact policy as rules, when the blocks do not read so
    checks: tuple[Check, ...]

    def to_json(self, with_policy: bool = True) -> dict[str, Any]:
        from cgdev.core.lift.generators import releases

        out: dict[str, Any] = {**self.source.to_json(), **self.result.to_json()}
        out["releases"] = releases(self.result.insns, self.result.generator)
        if self.policy_rules is not None:
            out["policy_rules"] = list(self.policy_rules)
        if not with_policy:
            out.pop("policy")
        out["checks"] = [c.to_json() for c in self.checks]
        return out


@dataclass(frozen=True, slots=True)
class LiftReport:
    programs: tuple[ProgramLift, ...]
    overall: tuple[Check, ...]  # per request: every program must allow
    with_policy: bool = True
    notes: tuple[str, ...] = ()

    @property
    def all_allowed(self) -> bool:
        return all(check.allowed is True for check in self.overall)

    def to_json(self) -> dict[str, Any]:
        return {
            "programs": [p.to_json(self.with_policy) for p in self.programs],
            "checks": [{"request": str(c.request), "allowed": c.allowed} for c in self.overall],
            "notes": list(self.notes),
        }


def _lift_one(source: ProgramSource, requests: Sequence[Request]) -> ProgramLift:
    from cgdev.core.lift import LiftResult, lift

    if source.unreadable is not None:
        unreadable = LiftResult((), None, source.unreadable, "unknown")
        return ProgramLift(source, unreadable, None, tuple(Check(r, None) for r in requests))
    try:
        result = lift(source.insns, blinded=source.blinded, calls=source.helpers)
    except ProgramError as err:
        raise InputError(f"{source.label}: {err}") from None
    policy_rules = None
    if result.policy is not None and not result.reads_as_rules:
        # The blocks are a tree's leaves (cgdev's own programs) and do not read as a rule list:
        # give the exact policy as one, too.
        from cgdev.core.render import to_rules

        policy_rules = tuple(str(rule) for rule in to_rules(result.policy).rules)
    checks = []
    for request in requests:
        decision = result.decide(request)
        if result.policy is not None and result.policy.allows(request) != decision.allowed:
            raise LifterDisagreement(
                f"{source.label}: lifted policy says {result.policy.allows(request)} but the interpreter says"
                f" {decision.allowed} for {request} (a cgdev bug; please report it)"
            )
        rule = str(decision.rule) if decision.rule is not None else None
        checks.append(Check(request, decision.allowed, rule, decision.insn_range))
    return ProgramLift(source, result, policy_rules, tuple(checks))


def parents_note(cgroup: str) -> str:
    """Why ``lift --cgroup X --check`` is not the container's verdict: the programs on X's parent
    cgroups also decide (every program on the path must allow), and ``explain`` asks them all."""
    from cgdev.ops.program_input import parent_program_count

    rel, count = parent_program_count(cgroup)
    return (
        f"only the programs attached to {rel} are checked; its parent cgroups are not considered "
        f"({count} device program{'' if count == 1 else 's'} there): "
        f"cgdev explain {rel} --device DEV gives the verdict across every layer"
    )


def lift_programs(
    sources: Sequence[ProgramSource],
    requests: Sequence[Request],
    *,
    with_policy: bool = True,
    cgroup: str | None = None,
) -> LiftReport:
    """``cgroup``: the programs are every one attached there (``lift --cgroup``), which a check
    must not present as the container's verdict."""
    programs = tuple(_lift_one(source, requests) for source in sources)
    overall = tuple(
        Check(request, all_allow(p.checks[i].allowed for p in programs)) for i, request in enumerate(requests)
    )
    notes = (parents_note(cgroup),) if cgroup is not None and requests else ()
    return LiftReport(programs, overall, with_policy, notes)
