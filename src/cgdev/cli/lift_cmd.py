"""``cgdev lift``: decompile device programs into rules, with generator and instruction ranges."""

from __future__ import annotations

import argparse

from cgdev.cli.program_args import add_program_arguments
from cgdev.core.model import DEV_TYPES, Request
from cgdev.errors import InputError
from cgdev.present.json_out import print_json

HELP = "decompile device programs into the rules and the exact policy they enforce"
DESCRIPTION = (
    "Lift device programs (a raw file, a bpftool text dump, --id, --pinned, or every program on a"
    " --cgroup) into rules, naming the generator and the instructions each rule came from."
    " --check asks the lifted policy about a request and cross-checks it with the interpreter."
    " Exit 0, or 1 when a checked request is denied; 2 bad input; 3 environment."
)

_ACCESS = {"m": 1, "r": 2, "w": 4, "rw": 6, "wr": 6}


def parse_request(text: str) -> Request:
    """``'c 195:255 rw'`` -> Request; errors name the field and the value."""
    parts = text.split()
    if len(parts) != 3:
        raise InputError(f"--check {text!r}: expected 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 195:255 rw'")
    dev_type, numbers, access = parts
    if dev_type not in DEV_TYPES:
        raise InputError(f"--check {text!r}: type {dev_type!r} is not b or c")
    major_text, sep, minor_text = numbers.partition(":")
    if not sep or not major_text.isdigit() or not minor_text.isdigit():
        raise InputError(f"--check {text!r}: device {numbers!r} is not MAJOR:MINOR in numbers")
    major, minor = int(major_text), int(minor_text)
    for field, value in (("major", major), ("minor", minor)):
        if value > 0xFFFF_FFFF:
            raise InputError(f"--check {text!r}: {field} {value} does not fit 32 bits")
    if access not in _ACCESS:
        raise InputError(f"--check {text!r}: access {access!r} is not one of m, r, w, rw")
    return Request(dev_type, major, minor, _ACCESS[access])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_program_arguments(parser)
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="REQUEST",
        help="a request such as 'c 195:255 rw' (repeatable): verdict of every program and overall",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/json-schema.md)")
    parser.add_argument("--no-policy", action="store_true", help="omit the exact policy from --json output")


def run(args: argparse.Namespace) -> int:
    from cgdev.ops.lift_report import lift_programs
    from cgdev.ops.program_input import read_programs

    requests = [parse_request(text) for text in args.check]
    sources = read_programs(
        file=args.file, text=args.text, prog_id=args.id, pinned=args.pinned, cgroup=args.cgroup
    )
    report = lift_programs(sources, requests, with_policy=not args.no_policy)
    if args.json:
        print_json(report.to_json())
    else:
        from cgdev.present.human import print_lift

        print_lift(report, args.cgroup)
    return 0 if report.all_allowed else 1
