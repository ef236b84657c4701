"""``cgdev snapshot TARGET -o FILE``: everything explain and show need, in one JSON file."""

from __future__ import annotations

import argparse
import sys

from cgdev.cli.inspect_args import add_target_arguments, collect_live

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
    from cgdev.errors import InputError
    from cgdev.ops import snapshot

    if not args.target:
        raise InputError("TARGET: missing")
    inspection = collect_live(args, "snapshot")
    if args.output == "-":
        import json

        json.dump(snapshot.to_json(inspection), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        snapshot.write(inspection, args.output)
        if not args.json:
            programs = sum(len(layer.programs) for layer in inspection.layers)
            print(f"wrote {args.output}: {len(inspection.layers)} layers, {programs} programs")
    return 0
