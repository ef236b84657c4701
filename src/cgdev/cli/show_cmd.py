"""``cgdev show TARGET``: the effective device allowlist, layer by layer, and what a reload changes."""

from __future__ import annotations

import argparse

from cgdev.cli.inspect_args import add_target_arguments, add_view_arguments, inspection_from_args
from cgdev.present.json_out import print_json

HELP = "show a target's effective device allowlist, per layer, and after the next reload"
DESCRIPTION = (
    "Lift every device program on the path from the cgroup root to the target, AND them, and print "
    "the result as a minimal rule list with the per-layer breakdown and what the next systemd "
    "daemon-reload or set-property would change. Exit status: 0 clean, 1 findings, 2 bad input, "
    "3 environment (no root, no cgroup2)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from cgdev.ops.show import show

    inspection, _live = inspection_from_args(args)
    result = show(inspection)
    if args.json:
        print_json(result.to_json())
    else:
        from cgdev.cli.inspect_args import command_host
        from cgdev.present.human import make_console, print_show

        print_show(result, make_console(args.color), quiet=args.quiet, host=command_host(args))
    return 1 if result.findings else 0
