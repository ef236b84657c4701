"""``cgdev compile``: rules -> the device program cgdev (or runc, crun, systemd) would attach.

Pure unless ``--verify`` is given: reading rules and compiling needs no privileges.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cgdev.cli.output import print_json
from cgdev.errors import InputError

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

SEMANTICS = ("ordered", "runc", "crun", "crun-1.8", "systemd", "v1")
SHAPES = ("cgdev", "runc", "crun", "crun-1.8", "systemd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("rules", nargs="*", metavar="RULE", help="rules in v1 or systemd syntax")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, metavar="FILE", help="an OCI config.json")
    source.add_argument(
        "--rules", dest="rules_file", type=Path, metavar="FILE", help="a rule file, any syntax"
    )
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


def read_rules(args: argparse.Namespace) -> list[Any]:
    from cgdev.core import rules

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
        return rules.parse_oci_config(document)
    if args.rules_file is not None:
        return rules.parse_rule_text(_read(args.rules_file, "--rules"))
    out = []
    for i, text in enumerate(args.rules):
        out.extend(rules.parse_rule_line(text, f"rule {i + 1}"))
    return out


def _semantics(args: argparse.Namespace) -> str:
    if args.shape == "cgdev":
        return args.semantics or "ordered"
    if args.semantics not in (None, args.shape):
        raise InputError(
            f'--semantics "{args.semantics}": --shape {args.shape} always reads rules as {args.shape} does'
        )
    return args.shape


def _warnings(rule_list: list[Any], semantics: str, policy: Any) -> list[str]:
    """What the chosen reading does that the rules do not say: systemd's lossy conversion, and a
    runtime that allows *more* than the rules and its documented forced defaults (runc turns any
    ``a`` rule into allow-all: a silent privilege widening, DESIGN.md §4)."""
    from cgdev.core.policy import Policy
    from cgdev.core.semantics import policy_of, systemd_properties_of
    from cgdev.core.semantics.defaults import forced_defaults

    out = list(systemd_properties_of(rule_list).warnings) if semantics == "systemd" else []
    if semantics not in ("ordered", "v1"):
        said = policy_of(rule_list, "ordered") | policy_of(list(forced_defaults(semantics)), "ordered")
        wider = policy.minus(said)
        if wider != Policy.deny_all():
            examples = ", ".join(str(m.request) for m in Policy.deny_all().diff(wider, limit=3))
            out.append(
                f"{semantics} allows more than these rules (read in order) and its forced defaults: "
                f"e.g. {examples}"
            )
    return out


def run(args: argparse.Namespace) -> int:
    from cgdev.core.disasm import disassemble
    from cgdev.core.isa import encode
    from cgdev.core.semantics import policy_of

    if args.format == "elf" and args.output is None:
        raise InputError('--format "elf": an ELF object is binary, give -o FILE')
    rule_list = read_rules(args)
    semantics = _semantics(args)
    policy = policy_of(rule_list, semantics)
    if args.shape == "cgdev":
        from cgdev.core.compile import compile_policy

        program = compile_policy(policy)
    else:
        from cgdev.core.shapes import shape_program

        program = shape_program(rule_list, args.shape)
    raw = encode(program)
    warnings = _warnings(rule_list, semantics, policy)
    if not program:
        warnings.append(f"{args.shape} attaches no program for these rules (every device is allowed)")
    if args.verify and program:
        from cgdev.adapters import bpf
        from cgdev.core.progname import kernel_program_name

        bpf.prog_load(raw, name=kernel_program_name(f"cgdev_{args.shape}")).close()
    if args.output is not None:
        data = raw
        if args.format == "elf":
            from cgdev.core.elf import device_program_elf

            if not program:
                raise InputError(f'--format "elf": {args.shape} attaches no program for these rules')
            data = device_program_elf(raw, name=f"cgdev_{args.shape}")
        try:
            args.output.write_bytes(data)
        except OSError as exc:
            raise InputError(f'-o "{args.output}": cannot write ({exc.strerror})') from None
    listing = disassemble(program) if program else ""
    if args.json:
        document = {
            "shape": args.shape,
            "semantics": semantics,
            "instructions": len(program),
            "program": raw.hex(),
            "disassembly": listing.splitlines(),
            "policy": policy.to_json(),
            "warnings": warnings,
            "verified": bool(args.verify and program),
        }
        print_json(document)
        return 0
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output is not None:
        what = "as an ELF object (section cgroup/dev) " if args.format == "elf" else ""
        print(f"{len(program)} instructions ({args.shape}) written {what}to {args.output}")
    elif listing:
        print(listing.rstrip("\n"))
    if args.verify and program:
        print("the kernel's verifier accepts it", file=sys.stderr)
    return 0
