"""``cgdev explain TARGET --device DEV [--access rw]``: why a container may or may not open a device."""

from __future__ import annotations

import argparse

from cgdev.cli.inspect_args import (
    add_cdi_dir_argument,
    add_target_arguments,
    add_view_arguments,
    inspections_from_args,
)
from cgdev.present.json_out import print_json

HELP = "explain one device request across every layer, now and after the next reload"
DESCRIPTION = (
    "Give the verdict of every device program on every cgroup from the root to the target's, the "
    "rule and instructions that decided, the final verdict, the verdict after the next systemd "
    "daemon-reload or set-property, and findings with fix options. A pod UID is answered for "
    "each of its containers. Exit status: 0 allowed (every container), "
    "1 denied or unknown (an opaque program decides and no layer denies), 2 bad input, "
    "3 environment error."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument(
        "--device",
        required=True,
        metavar="DEV",
        help="path as the container sees it, a host path, 'c MAJOR:MINOR' / 'b MAJOR:MINOR', "
        "systemd's /dev/char/MAJOR:MINOR, or a CDI name vendor/class=name of one device node",
    )
    add_cdi_dir_argument(parser)
    parser.add_argument("--access", default="rw", help="m (mknod), r, w or rw (open); default rw")
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from cgdev.ops.explain import PodExplanation, explain_device, parse_access_request
    from cgdev.ops.layers import LiftCache

    access = parse_access_request(args.access)
    inspections, live = inspections_from_args(args)
    cache = LiftCache()
    results = [explain_device(i, args.device, access, live=live, cache=cache, cdi_dirs=args.cdi_dirs or ())
               for i in inspections]  # fmt: skip
    result = results[0] if len(results) == 1 else PodExplanation(args.target, tuple(results))
    if args.json:
        print_json(result.to_json())
    else:
        from cgdev.cli.inspect_args import command_host
        from cgdev.present.human import make_console, print_explanation

        print_explanation(result, make_console(args.color), quiet=args.quiet, host=command_host(args))
    return 0 if result.allowed else 1
