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
from typing import TYPE_CHECKING

from cgdev.cli.inspect_args import add_cdi_dir_argument, add_system_arguments
from cgdev.present.repair_view import print_change, print_entitlements, print_plan

if TYPE_CHECKING:
    from cgdev.ops.repair.plan import Change


def _add_change_arguments(parser: argparse.ArgumentParser) -> None:
    target_help = "PID, cgroup path, container id/prefix/name, unit, engine scope or pod UID"
    parser.add_argument("target", metavar="TARGET", nargs="?", help=target_help)
    parser.add_argument("devices", metavar="DEVICE", nargs="+",
                        help="/dev/NAME (the container's node, else the host's), 'c 195:255', 195:255 "
                        "(char), /dev/char/195:255, or a CDI name vendor/class=name (every device "
                        "node it injects)")  # fmt: skip
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
    add_cdi_dir_argument(parser)
    add_system_arguments(parser)


_FIELDS = {"device": "DEVICE", "access": "--access", "target": "TARGET", "shape": "--shape",
           "cdi_dir": "--cdi-dir"}  # fmt: skip


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


def _offline(args: argparse.Namespace, change: Change) -> int:
    from cgdev.ops.repair import plan_offline

    result = plan_offline(args.snapshot, change, args.devices, args.access, shape=args.shape,
                          persistent=args.persistent, cdi_dirs=args.cdi_dirs or ())  # fmt: skip
    print_plan(result.plan, as_json=args.json)
    return 0


def _live(args: argparse.Namespace, change: Change) -> int:
    from cgdev.cli.inspect_args import host_from_args, warn_systemd
    from cgdev.ops.repair import change_devices

    result = change_devices(args.target, host_from_args(args), change, args.devices, args.access,
                            shape=args.shape, persistent=args.persistent, dry_run=args.dry_run,
                            why=args.why, cdi_dirs=args.cdi_dirs or ())  # fmt: skip
    warn_systemd(args, result.systemd_status)
    if result.outcome is None:
        print_plan(result.plan, as_json=args.json)
        return 0
    print_change(result, as_json=args.json)
    if result.exit_code != 0:
        print(f"cgdev {change}: {result.outcome.message}", file=sys.stderr)
    return result.exit_code


def _add_grants_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", help="only this container id, name or cgroup")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _run_grants(args: argparse.Namespace) -> int:
    from cgdev.ops import entitlements

    print_entitlements(entitlements.current(args.target), entitlements.state_path(), as_json=args.json,
                       target=args.target)  # fmt: skip
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
