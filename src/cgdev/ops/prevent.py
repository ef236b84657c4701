"""Granting a new container what it is entitled to, on every layer, durably (the OCI hook's work).

The entitlement (``ops.entitled``) says which rules; this hands them to issue 8's repair
(``ops.repair.change_devices``): every device program on the container's path is replaced by one
that also allows them, the systemd unit's ``DeviceAllow`` is written so the next reload or
set-property keeps them, the kernel verifies, a failure rolls back, and the grant is recorded in
cgdev's entitlements.  Rules are grouped by access (one transaction per access, usually one);
a rule of no access (CDI ``permissions: none``) needs nothing.  Calling it again is how the hook's
``poststart`` stage re-checks: a plan with nothing to do costs no change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from cgdev.core.cdi import OciDeviceRule
    from cgdev.ops.inspect import HostView
    from cgdev.ops.repair import DeviceChange


class EntitledGrant(msgspec.Struct, frozen=True):
    """One access group granted: the devices (``c 195:255``), the access, how it went."""

    devices: tuple[str, ...]
    access: str
    change: DeviceChange

    @property
    def exit_code(self) -> int:
        return self.change.exit_code

    def line(self) -> str:
        outcome = self.change.outcome
        status = "planned" if outcome is None else f"{outcome.status}: {outcome.message}"
        return f"grant {', '.join(self.devices)} {self.access}: {status}"


def access_groups(rules: Sequence[OciDeviceRule]) -> dict[str, list[str]]:
    """Devices by the access they get (letters in rwm order); rules of no access dropped."""
    groups: dict[str, list[str]] = {}
    for rule in rules:
        access = "".join(c for c in "rwm" if c in rule.access)
        if not rule.allow or not access or rule.type not in ("b", "c"):
            continue
        device = f"{rule.type} {rule.major}:{rule.minor}"
        if device not in groups.setdefault(access, []):
            groups[access].append(device)
    return groups


def grant_entitled(
    target: str, rules: Sequence[OciDeviceRule], host: HostView, *, why: str = ""
) -> list[EntitledGrant]:
    """Grant ``rules`` to ``target`` (a PID, as the hook knows it) on every layer; one result per
    access group, stopping at the first that fails (its own transaction is rolled back)."""
    from cgdev.ops.repair import change_devices
    from cgdev.ops.repair.plan import Change

    results: list[EntitledGrant] = []
    for access, devices in access_groups(rules).items():
        change = change_devices(target, host, Change.GRANT, devices, access, why=why)
        results.append(EntitledGrant(tuple(devices), access, change))
        if change.exit_code != 0:
            break
    return results
