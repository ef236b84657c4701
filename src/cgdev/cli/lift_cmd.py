"""``cgdev lift``: decompile device programs into rules, with generator and instruction ranges."""

from __future__ import annotations

import argparse

from cgdev.cli.program_args import add_program_arguments
from cgdev.present.json_out import print_json

HELP = "decompile device programs into the rules and the exact policy they enforce"
DESCRIPTION = (
    "Lift device programs (a raw file, a bpftool text dump, --id, --pinned, or every program on a"
    " --cgroup) into rules, naming the generator and the instructions each rule came from."
    " --check asks the lifted policy about a request and cross-checks it with the interpreter."
    " Exit 0, or 1 when a checked request is denied; 2 bad input; 3 environment."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_program_arguments(parser)
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="'DEVICE ACCESS'",
        help="a request (repeatable): a device as explain --device takes it ('c 195:255', '195:255', "
        "/dev/char/195:255, or a path looked up on this host) and m, r, w or rw; e.g. 'c 195:255 rw', "
        "'/dev/null r'. Verdict of every program and overall",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/json-schema.md)")
    parser.add_argument("--no-policy", action="store_true", help="omit the exact policy from --json output")


def run(args: argparse.Namespace) -> int:
    from cgdev.ops.explain import host_request
    from cgdev.ops.lift_report import lift_programs
    from cgdev.ops.program_input import read_programs

    requests = [host_request(text) for text in args.check]
    sources = read_programs(
        file=args.file, text=args.text, prog_id=args.id, pinned=args.pinned, cgroup=args.cgroup
    )
    report = lift_programs(sources, requests, with_policy=not args.no_policy, cgroup=args.cgroup)
    if args.json:
        print_json(report.to_json())
    else:
        from cgdev.present.human import print_lift

        print_lift(report, args.cgroup)
    return 0 if report.all_allowed else 1
