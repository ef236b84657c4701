"""``cgdev lift``: decompile device programs into rules, with generator and instruction ranges."""

from __future__ import annotations

import argparse
from typing import Any

from cgdev.cli._program_input import ProgramSource, add_program_arguments, read_programs
from cgdev.cli.output import print_json
from cgdev.core.model import Request
from cgdev.errors import InputError, LifterDisagreement, ProgramError

HELP = "decompile device programs into the rules and the exact policy they enforce"
DESCRIPTION = (
    "Lift device programs (a raw file, a bpftool text dump, --id, --pinned, or every program on a"
    " --cgroup) into rules, naming the generator and the instructions each rule came from."
    " --check asks the lifted policy about a request and cross-checks it with the interpreter."
    " Exit 0, or 1 when a checked request is denied; 2 bad input; 3 environment."
)


def parse_request(text: str) -> Request:
    """``'c 195:255 rw'`` -> Request (``Request.parse``, named as the flag)."""
    try:
        return Request.parse(text)
    except InputError as err:
        raise InputError(err.why, field="--check", value=text) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_program_arguments(parser)
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="REQUEST",
        help="a request such as 'c 195:255 rw' (repeatable): verdict of every program and overall",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/json-schema.md)")
    parser.add_argument("--no-policy", action="store_true", help="omit the exact policy from --json output")


def _lift_one(source: ProgramSource, requests: list[Request], with_policy: bool) -> dict[str, Any]:
    from cgdev.core.lift import LiftResult, lift

    if source.unreadable is not None:
        result = LiftResult((), None, source.unreadable, "unknown")
    else:
        try:
            result = lift(source.insns, blinded=source.blinded)
        except ProgramError as err:
            raise InputError(f"{source.label}: {err}") from None
    out: dict[str, Any] = {**source.to_json(), **result.to_json()}
    if result.policy is not None and not result.reads_as_rules:
        # The blocks are a tree's leaves (cgdev's own programs) and do not read as a rule list:
        # give the exact policy as one, too.
        from cgdev.core.render import to_rules

        out["policy_rules"] = [str(rule) for rule in to_rules(result.policy).rules]
    if not with_policy:
        out.pop("policy")
    checks: list[dict[str, Any]] = []
    for request in requests:
        if source.unreadable is not None:
            checks.append({"request": str(request), "allowed": None, "rule": None, "insn_range": None})
            continue
        decision = result.decide(request)
        if result.policy is not None and result.policy.allows(request) != decision.allowed:
            raise LifterDisagreement(
                f"{source.label}: lifted policy says {result.policy.allows(request)} but the interpreter says"
                f" {decision.allowed} for {request} (a cgdev bug; please report it)"
            )
        checks.append(
            {
                "request": str(request),
                "allowed": decision.allowed,
                "rule": str(decision.rule) if decision.rule is not None else None,
                "insn_range": list(decision.insn_range),
            }
        )
    out["checks"] = checks
    return out


def _print_human(programs: list[dict[str, Any]], overall: list[dict[str, Any]], cgroup: str | None) -> None:
    if not programs and cgroup is not None:
        print(f"no device program is attached to {cgroup} (its parents' programs still apply)")
    for prog in programs:
        name = f" ({prog['name']})" if prog.get("name") else ""
        print(f"{prog['source']}{name}: {prog['generator']}, {prog['instructions']} instructions")
        if prog["opaque"]:
            print(f"  opaque: {prog['opaque']}")
        for rule in prog["rules"]:
            lo, hi = rule["insn_range"]
            print(f"  [{lo:>4}-{hi:<4}] {rule['text']}")
        for gap in prog.get("gaps", ()):  # instructions no rule above accounts for
            lo, hi = gap["insn_range"]
            print(f"  [{lo:>4}-{hi:<4}] ({gap['kind']}: {gap['why']})")
        if "policy_rules" in prog:
            print("  the same policy as rules (later rules override earlier ones):")
            for text in prog["policy_rules"] or ["deny a *:* rwm"]:
                print(f"    {text}")
        for check in prog["checks"]:
            verdict = {True: "allowed", False: "denied", None: "unknown"}[check["allowed"]]
            where = f" by [{check['insn_range'][0]}-{check['insn_range'][1]}]" if check["insn_range"] else ""
            rule = f" {check['rule']}" if check["rule"] else ""
            print(f"  check {check['request']}: {verdict}{where}{rule}")
    if len(programs) > 1 or not programs:
        for check in overall:
            verdict = {True: "allowed", False: "denied", None: "unknown"}[check["allowed"]]
            print(f"overall {check['request']}: {verdict} (every program must allow)")


def run(args: argparse.Namespace) -> int:
    requests = [parse_request(text) for text in args.check]
    sources = read_programs(args)
    programs = [_lift_one(source, requests, not args.no_policy) for source in sources]
    overall = []
    for i, request in enumerate(requests):
        verdicts = [prog["checks"][i]["allowed"] for prog in programs]
        allowed: bool | None = False if False in verdicts else (None if None in verdicts else True)
        overall.append({"request": str(request), "allowed": allowed})
    if args.json:
        print_json({"programs": programs, "checks": overall})
    else:
        _print_human(programs, overall, args.cgroup)
    return 1 if any(check["allowed"] is not True for check in overall) else 0
