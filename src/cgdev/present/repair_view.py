"""How a repair reads: the plan (``--dry-run``), the outcome of applying it, the entitlements.

Plain text, no rich: ``grant`` is on the hook's path, and its output is a few short lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cgdev.present.json_out import print_json

if TYPE_CHECKING:
    from cgdev.ops.entitlements import Entitlement
    from cgdev.ops.repair import DeviceChange
    from cgdev.ops.repair.plan import Plan


def print_plan(plan: Plan, *, as_json: bool) -> None:
    if as_json:
        print_json(plan.to_json())
        return
    devices = ", ".join(map(str, plan.devices))
    print(f"plan: {plan.change} {devices} on {plan.target.spec} ({plan.target.kind} {plan.target.cgroup})")
    if not plan.actions:
        print("  nothing to change: every layer already has the wanted verdict")
    for i, action in enumerate(plan.actions, 1):
        print(f"  {i}. {action.describe()}")
    for note in plan.notes:
        print(f"  note: {note}")


def print_change(result: DeviceChange, *, as_json: bool) -> None:
    """The outcome's success lines (a failure is the front end's one line on stderr)."""
    if as_json:
        print_json(result.to_json())
        return
    outcome = result.outcome
    if outcome is not None and outcome.exit_code == 0:
        print(outcome.message)
        for line in outcome.checks:
            print(f"  verified: {line}")


def print_entitlements(
    entries: list[Entitlement], state: str, *, as_json: bool, target: str | None = None
) -> None:
    if as_json:
        from cgdev.ops.entitlements import to_json

        print_json({"state": state, "entitlements": to_json(entries)})
        return
    if not entries:  # for one target: say which, a typo must not read as "none anywhere"
        print("no entitlements" if not target else f"no entitlements for {target}")
    for e in entries:
        who = e.container_id or e.target
        what = f"granted {e.granted or '-'}, revoked {e.revoked or '-'}"
        pending = " (PENDING: rerun the command to finish it)" if e.status != "done" else ""
        why = f" — {e.why}" if e.why else ""
        view = "" if e.in_this_view else f" [cgroup {e.cgroup} of another cgroup namespace ({e.cgroup_ns})]"
        print(f"{who}: {e.type} {e.major}:{e.minor} {what}, {e.change} at {e.when}{pending}{why}{view}")
