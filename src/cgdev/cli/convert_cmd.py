"""``cgdev convert``: a device rule list from one syntax to another (``ops.convert``)."""

from __future__ import annotations

import argparse
import sys

from cgdev.present.json_out import print_json

HELP = "convert device rules between OCI JSON, v1 lines and systemd properties (exact, or warned)"
DESCRIPTION = """\
Convert device rules between syntaxes through their exact policy: the input is read the way its
syntax means it (--from oci: in order, or as --semantics runc/crun/crun-1.8 reads it; v1: the
kernel's devices.allow/deny; systemd: DevicePolicy=strict + DeviceAllow), the output never allows
more, and a warning names anything the target syntax cannot say (no warning: exact).

  cgdev convert --from oci --to systemd --config config.json
  cgdev convert --from v1 --to oci 'deny a' 'allow c 1:3 rwm'
  cgdev convert --from systemd --to rules --rules props.txt --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cgdev.cli.compile_cmd import add_rule_input_arguments
    from cgdev.ops.compile_rules import SEMANTICS
    from cgdev.ops.convert import SOURCES, TARGETS

    add_rule_input_arguments(parser)
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the input's syntax")
    parser.add_argument("--to", dest="target", required=True, choices=TARGETS,
                        help="the output's syntax (rules: cgdev's minimal ordered list)")  # fmt: skip
    parser.add_argument("--semantics", choices=SEMANTICS, help="how an OCI list is read (default: ordered)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/json-schema.md)")


def run(args: argparse.Namespace) -> int:
    from cgdev.cli.compile_cmd import read_rules
    from cgdev.ops.convert import convert, convert_systemd, semantics_of

    semantics_of(args.source, args.semantics)  # refused before anything is read
    if args.source == "systemd" and args.config is None:
        lines, source = list(args.rules), "rule"
        if args.rules_file is not None:
            from cgdev.cli.compile_cmd import _read

            lines, source = _read(args.rules_file, "--rules").splitlines(), str(args.rules_file)
        result = convert_systemd(lines, args.target, _proc_devices(), source)
    else:
        result = convert(read_rules(args), args.source, args.target, args.semantics)
    if args.json:
        print_json(result.to_json())
        return 0
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for line in result.lines:
        print(line)
    return 0


def _proc_devices() -> str:
    """The host's driver table, for systemd's ``char-DRIVER`` names ("" where unreadable)."""
    try:
        with open("/proc/devices") as fh:
            return fh.read()
    except OSError:
        return ""
