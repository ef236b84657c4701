"""Arguments shared by explain, show and snapshot: how to find the target and its layers.

The three commands compute on the same ``Inspection``: collected live (target + kernel + systemd)
or read from ``--snapshot FILE`` (offline, any user).  Keeping the options and the collection in
one place keeps their behaviour identical, which is what makes a snapshot answer like the node.

systemd: by default the system bus is tried and, when nobody answers, cgdev goes on without it
(one warning line; the after-reload prediction then only keeps what is attached).  An explicit
``--bus`` that cannot be reached is an environment error (exit status 3); ``--no-systemd`` never
asks.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # building the parser must not import the lifter
    from cgdev.ops.layers import Inspection


def add_target_arguments(parser: argparse.ArgumentParser, *, offline: bool = True) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="PID, cgroup path, container id/prefix/name, unit, engine scope or pod UID",
    )
    if offline:
        parser.add_argument("--snapshot", metavar="FILE", help="read a snapshot instead of the live system")
    add_system_arguments(parser)


def add_system_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime-root",
        metavar="DIR",
        action="append",
        default=[],
        help="another runtime state root to look containers up in (repeatable); "
        "/proc/PID/root/run/crun reads a runtime in PID's namespaces (a lab), its pids translated",
    )
    parser.add_argument("--bus", metavar="ADDRESS", help="systemd's D-Bus (address or socket path)")
    parser.add_argument("--no-systemd", action="store_true", help="do not ask systemd")
    parser.add_argument(
        "--systemd-root",
        metavar="CGROUP",
        default="/",
        help="where systemd's cgroup root is in our cgroup2 tree (a lab's subtree; default /)",
    )
    parser.add_argument(
        "--systemd-fs-root",
        metavar="DIR",
        default="/",
        help="systemd's root directory, for its pins and DeviceAllow paths (default /)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def open_systemd(args: argparse.Namespace, command: str) -> tuple[Any, str]:
    """A SystemdClient (or None) and the status string recorded in results."""
    if args.no_systemd:
        return None, "off"
    from cgdev.adapters.systemd_client import SystemdClient
    from cgdev.errors import BusUnreachable

    try:
        return SystemdClient(args.bus), "ok"
    except BusUnreachable as err:
        if args.bus:
            raise
        print(f"cgdev {command}: warning: systemd not asked: {err}", file=sys.stderr)
        return None, f"unreachable: {err}"


def inspection_from_args(args: argparse.Namespace, command: str) -> tuple[Inspection, bool]:
    """The Inspection to compute on, and whether it is live (device paths may be looked up)."""
    from cgdev.errors import InputError

    if getattr(args, "snapshot", None):
        if args.target:
            raise InputError(f"TARGET {args.target!r}: give a TARGET or --snapshot, not both")
        from cgdev.ops import snapshot

        return snapshot.read(args.snapshot), False
    if not args.target:
        raise InputError("TARGET: missing (or give --snapshot FILE)")
    return collect_live(args, command), True


def collect_live(args: argparse.Namespace, command: str, *, with_devices: bool = True) -> Inspection:
    from cgdev.adapters.runtime_state import runtime_roots
    from cgdev.ops.collect import collect
    from cgdev.ops.targets import resolve

    roots = runtime_roots(args.runtime_root)
    client, status = open_systemd(args, command)
    try:
        target = resolve(args.target, runtime_roots=roots, systemd=client, systemd_root=args.systemd_root)
        return collect(
            target,
            systemd=client,
            systemd_status=status,
            systemd_root=args.systemd_root,
            systemd_fs_root=args.systemd_fs_root,
            with_devices=with_devices,
        )
    finally:
        if client is not None:
            client.close()
