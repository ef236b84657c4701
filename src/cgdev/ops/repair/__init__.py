"""Repair: grant or revoke a device on a running target, on every layer (issue 8).

``plan`` is pure (an ``Inspection`` and a request in, typed actions out), ``apply`` is the one
module that changes the system (each action with its undo, verified, rolled back on failure).
``change_devices`` is what every front end calls (the CLI now, the hook and the watcher next): it
owns the systemd connection for the whole transaction, because the plan, the unit update and the
re-inspection that verifies it must all talk to the same systemd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from cgdev.ops.inspect import HostView
    from cgdev.ops.repair.apply import Outcome
    from cgdev.ops.repair.plan import Change, Plan


class DeviceChange(msgspec.Struct, frozen=True):
    """A planned change and, unless it was a dry run, how applying it went."""

    plan: Plan
    outcome: Outcome | None
    systemd_status: str

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome is None else self.outcome.exit_code

    def to_json(self) -> dict[str, Any]:
        if self.outcome is None:
            return self.plan.to_json()
        return {"plan": self.plan.to_json(), "outcome": self.outcome.to_json()}


def change_devices(
    target_spec: str,
    host: HostView,
    change: Change,
    devices: Sequence[str],
    access: str,
    *,
    shape: str = "auto",
    persistent: bool = False,
    dry_run: bool = False,
    why: str = "",
    cdi_dirs: Sequence[str] = (),
) -> DeviceChange:
    """Plan (and unless ``dry_run``, apply and verify) ``change`` of ``devices`` on a live target."""
    from cgdev.ops.collect import collect
    from cgdev.ops.inspect import systemd_session
    from cgdev.ops.layers import LiftCache
    from cgdev.ops.repair.plan import parse_access_bits, parse_devices, plan
    from cgdev.ops.targets import resolve

    bits = parse_access_bits(access)
    with systemd_session(host) as (client, status):
        target = resolve(
            target_spec, runtime_roots=host.runtime_roots, systemd=client, systemd_root=host.systemd_root
        )

        # no scan of the container's /dev: live, a path is looked up directly (resolve_device)
        inspection = collect(target, systemd=client, systemd_status=status, systemd_root=host.systemd_root,
                             systemd_fs_root=host.systemd_fs_root, with_devices=False)  # fmt: skip
        cache = LiftCache()
        wanted = tuple(w for d in devices for w in parse_devices(d, bits, inspection=inspection, live=True,
                                                                 cdi_dirs=cdi_dirs))  # fmt: skip
        planned = plan(inspection, change, wanted, shape=shape, persistent=persistent, cache=cache)
        if dry_run:
            return DeviceChange(planned, None, status)
        from cgdev.ops.collect import refresh
        from cgdev.ops.repair.apply import apply_plan
        from cgdev.ops.repair.plan import SetUnitDeviceAllow

        written = frozenset(a.unit for a in planned.actions if isinstance(a, SetUnitDeviceAllow))

        def reread() -> Any:  # the kernel's programs and the units the plan wrote, read again
            return refresh(inspection, units=written, systemd=client, systemd_fs_root=host.systemd_fs_root)

        outcome = apply_plan(
            planned,
            inspection,
            reread,
            systemd=client,
            systemd_fs_root=host.systemd_fs_root,
            why=why,
            cache=cache,
        )
        return DeviceChange(planned, outcome, status)


def plan_offline(
    snapshot_path: str,
    change: Change,
    devices: Sequence[str],
    access: str,
    *,
    shape: str = "auto",
    persistent: bool = False,
    cdi_dirs: Sequence[str] = (),
) -> DeviceChange:
    """The plan for a snapshot (a dry run by nature: a file cannot be changed)."""
    from cgdev.ops import snapshot
    from cgdev.ops.repair.plan import parse_access_bits, parse_devices, plan

    inspection = snapshot.read(snapshot_path)
    bits = parse_access_bits(access)
    wanted = tuple(w for d in devices for w in parse_devices(d, bits, inspection=inspection, live=False,
                                                             cdi_dirs=cdi_dirs))  # fmt: skip
    planned = plan(inspection, change, wanted, shape=shape, persistent=persistent, offline=True)
    return DeviceChange(planned, None, "off")
