"""``cgdev grant`` / ``cgdev revoke`` / ``cgdev grants``: change a running target's devices.

The three commands share the target and device options, so they live in one module; each is a
small namespace (``GRANT``, ``REVOKE``, ``GRANTS``) with the ``HELP``/``add_arguments``/``run``
face ``cli.main`` expects.  The work is ``ops.repair`` (plan, apply) and ``ops.entitlements``;
this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from cgdev.cli.inspect_args import add_system_arguments, open_systemd

if TYPE_CHECKING:
    from cgdev.ops.repair.plan import Change, Plan


def _add_change_arguments(parser: argparse.ArgumentParser) -> None:
    target_help = "PID, cgroup path, container id/prefix/name, unit, engine scope or pod UID"
    parser.add_argument("target", metavar="TARGET", nargs="?", help=target_help)
    parser.add_argument("devices", metavar="DEVICE", nargs="+",
                        help="/dev/NAME (the container's node, else the host's), 'c 195:255', 195:255 "
                        "(char) or /dev/char/195:255")  # fmt: skip
    parser.add_argument("--access", default="rw", help="m, r, w, rw or rwm (default rw)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--snapshot", metavar="FILE", help="plan on a snapshot (with --dry-run; no TARGET)")
    parser.add_argument("--shape", default="auto", choices=("auto", "cgdev"),
                        help="program shape: the replaced program's generator where it can say the "
                        "policy exactly (auto), or cgdev's own")  # fmt: skip
    persistent_help = (
        "write systemd's DeviceAllow as a persistent drop-in (default: runtime; a transient unit, as "
        "every container scope is, keeps its drop-ins under /run either way)"
    )
    parser.add_argument("--persistent", action="store_true", help=persistent_help)
    parser.add_argument("--why", default="", help="a note kept with the entitlement")
    add_system_arguments(parser)


_FIELDS = {"device": "DEVICE", "access": "--access", "target": "TARGET", "shape": "--shape"}


def _run_change(args: argparse.Namespace, change: Change) -> int:
    from cgdev.errors import CgdevError, InputError

    command = str(change)
    try:
        if args.snapshot:
            if not args.dry_run:
                raise InputError("works only with --dry-run (a snapshot cannot be changed)", field="snapshot",
                                 value=args.snapshot)  # fmt: skip
            if args.target:  # a snapshot is the target: every positional is a device
                args.devices = [args.target, *args.devices]
            return _offline(args, change)
        if not args.target:
            raise InputError("missing", field="target")
        return _live(args, change)
    except CgdevError as err:
        print(f"cgdev {command}: {err.render(_FIELDS)}", file=sys.stderr)
        return err.exit_code


def _devices(args: argparse.Namespace, inspection: Any, live: bool) -> tuple[Any, ...]:
    from cgdev.ops.repair.plan import parse_access_bits, parse_device

    access = parse_access_bits(args.access)
    lookup: Any = None
    if live:
        from cgdev.ops.collect import node_of

        lookup = node_of
    return tuple(parse_device(d, access, inspection=inspection, node_of=lookup) for d in args.devices)


def _offline(args: argparse.Namespace, change: Change) -> int:
    from cgdev.ops import snapshot
    from cgdev.ops.repair.plan import plan

    inspection = snapshot.read(args.snapshot)
    result = plan(inspection, change, _devices(args, inspection, False), shape=args.shape,
                  persistent=args.persistent)  # fmt: skip
    _print_plan(result, args.json)
    return 0


def _live(args: argparse.Namespace, change: Change) -> int:
    from cgdev.adapters.runtime_state import runtime_roots
    from cgdev.ops.collect import collect
    from cgdev.ops.layers import LiftCache
    from cgdev.ops.repair.plan import plan
    from cgdev.ops.targets import resolve

    roots = runtime_roots(args.runtime_root)
    client, status = open_systemd(args, str(change))
    try:
        target = resolve(args.target, runtime_roots=roots, systemd=client, systemd_root=args.systemd_root)

        def recollect() -> Any:
            return collect(target, systemd=client, systemd_status=status, systemd_root=args.systemd_root,
                           systemd_fs_root=args.systemd_fs_root)  # fmt: skip

        inspection = recollect()
        cache = LiftCache()
        devices = _devices(args, inspection, True)
        result = plan(inspection, change, devices, shape=args.shape, persistent=args.persistent, cache=cache)
        if args.dry_run:
            _print_plan(result, args.json)
            return 0
        from cgdev.ops.repair.apply import apply_plan

        outcome = apply_plan(
            result,
            inspection,
            recollect,
            systemd=client,
            systemd_fs_root=args.systemd_fs_root,
            why=args.why,
            cache=cache,
        )
    finally:
        if client is not None:
            client.close()
    if args.json:
        from cgdev.cli.output import print_json

        print_json({"plan": result.to_json(), "outcome": outcome.to_json()})
    elif outcome.exit_code == 0:
        print(outcome.message)
        for line in outcome.checks:
            print(f"  verified: {line}")
    if outcome.exit_code != 0:
        print(f"cgdev {change}: {outcome.message}", file=sys.stderr)
    return outcome.exit_code


def _print_plan(result: Plan, as_json: bool) -> None:
    if as_json:
        from cgdev.cli.output import print_json

        print_json(result.to_json())
        return
    devices = ", ".join(map(str, result.devices))
    print(
        f"plan: {result.change} {devices} on {result.target.spec} "
        f"({result.target.kind} {result.target.cgroup})"
    )
    if not result.actions:
        print("  nothing to change: every layer already has the wanted verdict")
    for i, action in enumerate(result.actions, 1):
        print(f"  {i}. {action.describe()}")
    for note in result.notes:
        print(f"  note: {note}")


def _add_grants_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", help="only this container id, name or cgroup")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _run_grants(args: argparse.Namespace) -> int:
    import os

    from cgdev.adapters import cgroupfs
    from cgdev.ops import entitlements

    def alive(cgroup: str) -> bool:
        return os.path.isdir(cgroupfs.cgroup_path(cgroup))

    entries = entitlements.read(alive)
    if args.target:
        t = args.target
        entries = [
            e
            for e in entries
            if t in (e.container_id, e.target, e.cgroup) or (e.container_id or "").startswith(t)
        ]
    if args.json:
        from cgdev.cli.output import print_json

        print_json({"state": entitlements.state_path(), "entitlements": entitlements.to_json(entries)})
        return 0
    if not entries:
        print("no entitlements")
    for e in entries:
        who = e.container_id or e.target
        what = f"granted {e.granted or '-'}, revoked {e.revoked or '-'}"
        pending = " (PENDING: rerun the command to finish it)" if e.status != "done" else ""
        why = f" — {e.why}" if e.why else ""
        print(f"{who}: {e.type} {e.major}:{e.minor} {what}, {e.change} at {e.when}{pending}{why}")
    return 0


def _run_named(args: argparse.Namespace, change_name: str) -> int:
    from cgdev.ops.repair.plan import Change

    return _run_change(args, Change(change_name))


def _make(change_name: str) -> SimpleNamespace:
    """The command's face; the planner (and the lifter behind it) is imported only when it runs."""
    verb, done = ("add", "added") if change_name == "grant" else ("remove", "removed")
    return SimpleNamespace(
        HELP=f"{change_name} a device on a running container, on every layer (verified, rolled back)",
        DESCRIPTION=(
            f"{verb.capitalize()} DEVICE for TARGET on every device program on its path (each replaced by "
            f"one whose policy is exactly the old one with the request {done}), and in the systemd "
            "unit's DeviceAllow so the next daemon-reload or set-property keeps it; verified by the "
            "kernel, rolled back on failure. Recorded in cgdev's entitlements (`cgdev grants`)."
        ),
        add_arguments=_add_change_arguments,
        run=lambda args: _run_named(args, change_name),
    )


GRANT = _make("grant")
REVOKE = _make("revoke")
GRANTS = SimpleNamespace(
    HELP="list the devices cgdev granted or revoked, per container",
    DESCRIPTION="The entitlements cgdev recorded (containers whose cgroup is gone are dropped).",
    add_arguments=_add_grants_arguments,
    run=_run_grants,
)
