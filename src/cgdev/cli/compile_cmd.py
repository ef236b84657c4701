"""``cgdev compile``: rules -> the device program cgdev (or runc, crun, systemd) would attach.

Pure unless ``--verify`` is given: reading rules and compiling needs no privileges.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cgdev.errors import InputError
from cgdev.ops.compile_rules import SEMANTICS, SHAPES  # light: the compiler is imported on use
from cgdev.present.json_out import print_json

HELP = "compile device rules into a cgroup device program (cgdev's, or runc/crun/systemd's shape)"
DESCRIPTION = """\
Compile device rules into a BPF_PROG_TYPE_CGROUP_DEVICE program.

Rules come from an OCI config.json (--config: linux.resources.devices), a file in any supported
syntax (--rules: OCI JSON, v1 lines "c 1:3 rwm" / "allow c 1:3 rw", systemd "char-136 rwm"), or
the command line ('allow c 1:3 rw' ...). --semantics says how the list is read (default: ordered,
the last matching rule decides each access bit). --shape cgdev (default) emits cgdev's optimised
decision tree; runc, crun, crun-1.8 and systemd emit, instruction for instruction, what runc
1.1.5-1.3.6, crun 1.21-1.28, crun 1.8.1 (Debian 12) or systemd 252-262 attach for the same list
(and imply their own semantics).

  cgdev compile 'deny a' 'allow c 1:3 rwm' 'allow c 136:* rw'
  cgdev compile --config config.json --shape crun -o prog.bin
  cgdev compile --rules rules.txt --format elf -o prog.o
  bpftool prog load prog.o /sys/fs/bpf/myprog type cgroup/dev
  cgdev compile --rules rules.txt --json --verify
"""


def add_rule_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a rule list comes from: RULEs on the command line, ``--config`` or ``--rules`` (the
    same for every command that reads rules: compile, convert)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("rules", nargs="*", metavar="RULE", help="rules in v1 or systemd syntax")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, metavar="FILE", help="an OCI config.json")
    source.add_argument(
        "--rules", dest="rules_file", type=Path, metavar="FILE", help="a rule file, any syntax"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_rule_input_arguments(parser)
    parser.add_argument("--semantics", choices=SEMANTICS, help="how to read the rule list (default: ordered)")
    parser.add_argument("--shape", choices=SHAPES, default="cgdev", help="whose program to emit")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the program here (--format)")
    parser.add_argument(
        "--format",
        choices=("raw", "elf"),
        default="raw",
        help="-o FILE as raw instructions (default) or an ELF object for bpftool/libbpf (cgroup/dev section)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/json-schema.md)")
    parser.add_argument("--verify", action="store_true", help="load the program into the kernel (root)")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f'{what} "{path}": no such file') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f'{what} "{path}": cannot read ({exc})') from None


def read_rules(args: argparse.Namespace) -> Any:
    """The rules and the reader's warnings (a ``RuleList``)."""
    from cgdev.core import rules
    from cgdev.ops.compile_rules import host_lookups

    given = [args.config is not None, args.rules_file is not None, bool(args.rules)]
    if sum(given) != 1:
        raise InputError(
            "rules: give exactly one of --config FILE, --rules FILE or rules on the command line"
        )
    if args.config is not None:
        text = _read(args.config, "--config")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f'--config "{args.config}": {exc.msg} at line {exc.lineno} column {exc.colno}'
            ) from None
        return rules.read_oci_config(document, str(args.config))
    if args.rules_file is not None:
        lookup, proc_devices = host_lookups()  # systemd syntax: /dev/null, char-pts (this host's)
        return rules.read_rule_text(
            _read(args.rules_file, "--rules"), str(args.rules_file), lookup, proc_devices
        )
    lookup, proc_devices = host_lookups()
    out = []
    for i, text in enumerate(args.rules):
        out.extend(rules.parse_rule_line(text, f"rule {i + 1}", lookup, proc_devices))
    return rules.RuleList(out)


def run(args: argparse.Namespace) -> int:
    from cgdev.ops.compile_rules import compile_rules

    if args.format == "elf" and args.output is None:
        raise InputError("an ELF object is binary, give -o FILE", field="format", value="elf")
    result = compile_rules(read_rules(args), args.shape, args.semantics, verify=args.verify)
    if args.output is not None:
        data = result.raw
        if args.format == "elf":
            from cgdev.core.elf import device_program_elf

            if not result.program:
                raise InputError(
                    f"{args.shape} attaches no program for these rules", field="format", value="elf"
                )
            data = device_program_elf(result.raw, name=f"cgdev_{args.shape}")
        try:
            args.output.write_bytes(data)
        except OSError as exc:
            raise InputError(
                f"cannot write ({exc.strerror})", field="output", value=str(args.output)
            ) from None
    if args.json:
        print_json(result.to_json())
        return 0
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output is not None:
        what = "as an ELF object (section cgroup/dev) " if args.format == "elf" else ""
        print(f"{len(result.program)} instructions ({args.shape}) written {what}to {args.output}")
    elif result.listing:
        print(result.listing.rstrip("\n"))
    if result.verified:
        print("the kernel's verifier accepts it", file=sys.stderr)
    return 0
