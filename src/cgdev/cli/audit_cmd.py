"""``cgdev audit``: every container on the node against the known device-access failure modes."""

from __future__ import annotations

import argparse

from cgdev.cli.inspect_args import (
    add_system_arguments,
    add_view_arguments,
    check_cgroup_flag,
    host_from_args,
    nested,
    warn_systemd,
)

HELP = "audit every container cgroup on the node (exit 1 when there are findings)"
DESCRIPTION = (
    "Walk the cgroup tree once, read every container's device programs, systemd units and (on hybrid "
    "hosts) v1 devices.list, lift each distinct program once and report containers x findings. "
    "With --lab, --ns-pid or --host-root the default subtree is that host's systemd cgroup root. "
    "Exit status: 0 clean, 1 findings, 2 bad input, 3 environment error."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        metavar="CGROUP",
        help="audit only this subtree (relative to the cgroup2 mount, or its host path)",
    )
    add_system_arguments(parser)
    add_view_arguments(parser)
    parser.add_argument(
        "--wide",
        action="store_true",
        help="every column whole (default: one line per container, 100 columns piped)",
    )


def run(args: argparse.Namespace) -> int:
    from cgdev.ops.audit import audit_host

    check_cgroup_flag(args.root, "root")
    host = host_from_args(args)
    root = args.root if args.root or not nested(args) else host.systemd_root
    result = audit_host(host, root)
    warn_systemd(args, result.systemd)
    if args.json:
        from cgdev.present.json_out import print_json

        print_json(result.to_json(), compact=True)
    else:
        import sys

        from cgdev.present.human import AUDIT_PIPE_WIDTH, make_console, print_audit

        width = None if args.wide or sys.stdout.isatty() else AUDIT_PIPE_WIDTH
        print_audit(result, make_console(args.color, width=width), wide=args.wide, quiet=args.quiet)
    return 1 if result.has_findings else 0
