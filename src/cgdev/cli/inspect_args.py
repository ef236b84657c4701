"""Arguments shared by explain, show, snapshot and audit: which host to look at, and how.

The commands compute on the same ``Inspection``: collected live by ``ops.inspect`` on a
``HostView`` built here from the arguments, or read from ``--snapshot FILE`` (offline, any user).
Keeping the options in one place keeps their behaviour identical, which is what makes a snapshot
answer like the node.

A nested systemd (the lab, a node container, a chroot with its own systemd) takes one flag:
``--host-root DIR``, ``--ns-pid PID`` or ``--lab``; the four detailed flags remain for unusual
layouts and override what the one flag derived.  systemd: the bus is tried and, when nobody
answers, the command goes on without it (one warning line); an explicit ``--bus`` that cannot be
reached is an environment error (exit status 3); ``--no-systemd`` never asks.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building the parser must not import the lifter
    from cgdev.ops.inspect import HostView
    from cgdev.ops.layers import Inspection
    from cgdev.present.human import CommandHost


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
    nested = parser.add_mutually_exclusive_group()
    nested.add_argument(
        "--host-root",
        metavar="DIR",
        help="look at the host whose root directory is DIR (a chroot or node container with its own "
        "systemd; /proc/PID/root for a process's namespaces): runtime state, bus, systemd derived",
    )
    nested.add_argument(
        "--ns-pid",
        metavar="PID",
        type=int,
        help="look at the host in PID's namespaces (a kind/minikube node's init): --host-root "
        "/proc/PID/root with systemd's cgroup root from PID's cgroup namespace",
    )
    nested.add_argument("--lab", action="store_true", help="look into the running cgdev lab")
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
        help="where systemd's cgroup root is in our cgroup2 tree (a lab's subtree; default /)",
    )
    parser.add_argument(
        "--systemd-fs-root",
        metavar="DIR",
        help="systemd's root directory, for its pins and DeviceAllow paths (default /)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_cdi_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Where a DEVICE given as a CDI name is looked up (as ``cdi``'s ``--spec-dir``)."""
    parser.add_argument(
        "--cdi-dir", action="append", metavar="DIR", dest="cdi_dirs",
        help="a CDI spec directory for DEVICE given as vendor/class=name, instead of /etc/cdi and "
        "/var/run/cdi (repeat; later ones override)",
    )  # fmt: skip


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """How a human view prints: styling and the one-line form (explain, show, audit)."""
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="style the output (colour, bold, italic): on a terminal without NO_COLOR (auto), always, never",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the one-line verdict or summary"
    )


def command_host(args: argparse.Namespace) -> CommandHost:
    """The host flags the user gave, for the commands a view prints (explain's fixes): a printed
    ``cgdev grant`` must reach the same host, and a ``systemctl`` the same systemd."""
    from cgdev.present.human import CommandHost

    flags: list[str] = []
    prefix: tuple[str, ...] = ()
    if args.lab:
        flags.append("--lab")
        prefix = ("cgdev", "lab", "exec", "--")
    elif args.ns_pid is not None:
        flags += ["--ns-pid", str(args.ns_pid)]
        prefix = ("nsenter", "--target", str(args.ns_pid), "--all", "--")
    elif args.host_root:
        flags += ["--host-root", args.host_root]
        prefix = ("chroot", args.host_root)
    for root in args.runtime_root:
        flags += ["--runtime-root", root]
    for flag, value in (("--bus", args.bus), ("--systemd-root", args.systemd_root),
                        ("--systemd-fs-root", args.systemd_fs_root)):  # fmt: skip
        if value is not None:
            flags += [flag, value]
    return CommandHost(tuple(flags), prefix)


def nested(args: argparse.Namespace) -> bool:
    """Whether one of the one-flag forms names another host than ours."""
    return bool(args.lab or args.ns_pid is not None or args.host_root)


def host_from_args(args: argparse.Namespace) -> HostView:
    """The host the arguments describe: the one-flag form (or this machine), then the overrides."""
    import msgspec

    from cgdev.ops.inspect import HostView

    if args.lab:
        from cgdev.lab.instance import require_lab

        host = HostView.for_ns_pid(require_lab().pid1)
    elif args.ns_pid is not None:
        host = HostView.for_ns_pid(args.ns_pid)
    elif args.host_root:
        host = HostView.for_root(args.host_root)
    else:
        host = HostView.local()
    _check_systemd_overrides(args)
    return msgspec.structs.replace(
        host.with_runtime_roots(args.runtime_root),
        bus=host.bus if args.bus is None else args.bus,
        require_bus=host.require_bus or args.bus is not None,
        systemd=host.systemd and not args.no_systemd,
        systemd_root=host.systemd_root if args.systemd_root is None else args.systemd_root,
        systemd_fs_root=host.systemd_fs_root if args.systemd_fs_root is None else args.systemd_fs_root,
    )


def _check_systemd_overrides(args: argparse.Namespace) -> None:
    """A systemd root the user typed must exist: a wrong one would silently find no unit and
    answer as if systemd had nothing to say."""
    import os

    from cgdev.adapters import cgroupfs
    from cgdev.errors import InputError

    root = args.systemd_root
    if root is not None and (not root.strip() or not os.path.isdir(cgroupfs.locate(root)[0])):
        raise InputError("no such cgroup", field="systemd_root", value=args.systemd_root)
    if args.systemd_fs_root is not None and not (
        args.systemd_fs_root and os.path.isdir(args.systemd_fs_root)
    ):
        raise InputError("not a directory", field="systemd_fs_root", value=args.systemd_fs_root)


def check_cgroup_flag(value: str | None, field: str) -> None:
    """An empty cgroup flag (``--root ''``) is a typo, not "everything": refuse it."""
    from cgdev.errors import InputError

    if value is not None and not value.strip():
        raise InputError("is empty", field=field, value=value)


def warn_systemd(args: argparse.Namespace, status: str) -> None:
    """One warning line on stderr when systemd could not be asked."""
    from cgdev.ops.inspect import systemd_warning

    warning = systemd_warning(status)
    if warning is not None:
        print(f"cgdev {args.command}: warning: {warning}", file=sys.stderr)


def inspect_from_args(args: argparse.Namespace, *, with_devices: bool = True) -> Inspection:
    """The live Inspection the arguments ask for (a warning printed if systemd was not reached)."""
    from cgdev.errors import InputError
    from cgdev.ops.inspect import inspect

    if not args.target:
        missing = "missing (or give --snapshot FILE)" if hasattr(args, "snapshot") else "missing"
        raise InputError(missing, field="target")
    inspection = inspect(args.target, host_from_args(args), with_devices=with_devices)
    warn_systemd(args, inspection.systemd)
    return inspection


def inspections_from_args(args: argparse.Namespace) -> tuple[list[Inspection], bool]:
    """``inspection_from_args`` for a command that answers for each container a target names
    (a pod's): the Inspections, and whether they are live."""
    from cgdev.errors import InputError
    from cgdev.ops.inspect import inspect_all

    if getattr(args, "snapshot", None) or not args.target:
        inspection, live = inspection_from_args(args)
        return [inspection], live
    if not args.target.strip():
        raise InputError("missing (or give --snapshot FILE)", field="target")
    inspections = inspect_all(args.target, host_from_args(args))
    warn_systemd(args, inspections[0].systemd)
    return inspections, True


def inspection_from_args(args: argparse.Namespace) -> tuple[Inspection, bool]:
    """The Inspection to compute on, and whether it is live (device paths may be looked up)."""
    from cgdev.errors import InputError

    if getattr(args, "snapshot", None):
        if args.target:
            raise InputError("give a TARGET or --snapshot, not both", field="target", value=args.target)
        from cgdev.ops import snapshot

        return snapshot.read(args.snapshot), False
    return inspect_from_args(args), True
