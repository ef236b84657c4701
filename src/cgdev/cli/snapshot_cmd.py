"""``cgdev snapshot TARGET -o FILE``: everything explain and show need, in one JSON file."""

from __future__ import annotations

import argparse
import sys

from cgdev.cli.inspect_args import add_target_arguments, inspect_from_args

HELP = "save a target's layers, programs, unit properties and devices for offline explain/show"
DESCRIPTION = (
    "Collect what explain and show compute on (every layer's raw programs, the systemd unit "
    "properties, /proc/devices, the v1 devices.list, the container's device nodes) into one JSON "
    "file; `cgdev explain/show --snapshot FILE` then answer offline, as any user."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, offline=False)
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write (- for stdout)")


def run(args: argparse.Namespace) -> int:
    from cgdev.ops import snapshot

    inspection = inspect_from_args(args)
    if args.output == "-":
        sys.stdout.write(snapshot.dumps(inspection))
    else:
        snapshot.write(inspection, args.output)
        if not args.json:
            programs = sum(len(layer.programs) for layer in inspection.layers)
            print(f"wrote {args.output}: {len(inspection.layers)} layers, {programs} programs")
    return 0
