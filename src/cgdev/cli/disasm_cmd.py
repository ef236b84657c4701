"""``cgdev disasm``: bpftool-style listings of device programs (files, ids, pins, cgroups)."""

from __future__ import annotations

import argparse
import sys

from cgdev.cli.program_args import add_program_arguments
from cgdev.present.json_out import print_json

HELP = "print device programs as 'bpftool prog dump xlated' would"
DESCRIPTION = (
    "Disassemble device programs (a raw file, a bpftool text dump, --id, --pinned, or every program"
    " on a --cgroup) in bpftool's xlated style, so listings compare line by line with bpftool's."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_program_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/json-schema.md)")


def run(args: argparse.Namespace) -> int:
    from cgdev.core.disasm import disassemble, format_insn
    from cgdev.core.isa import Opcode
    from cgdev.ops.program_input import read_programs

    sources = read_programs(
        file=args.file, text=args.text, prog_id=args.id, pinned=args.pinned, cgroup=args.cgroup
    )
    if args.json:
        programs = []
        for source in sources:
            lines = []
            pc = 0
            while pc < len(source.insns):
                insn = source.insns[pc]
                lines.append(
                    {
                        "pc": pc,
                        "code": insn.code,
                        "text": format_insn(source.insns, pc, blinded=source.blinded),
                    }
                )
                pc += 2 if insn.code == Opcode.LD_IMM64 else 1
            programs.append({**source.to_json(), "unreadable": source.unreadable, "instructions": lines})
        print_json({"programs": programs})
        return 0
    if not sources and args.cgroup is not None:
        print(f"# no device program is attached to {args.cgroup} (its parents' programs still apply)")
    for source in sources:
        if len(sources) > 1:
            name = f" ({source.name})" if source.name else ""
            print(f"# {source.label}{name}")
        if source.unreadable is not None:
            print(f"# unreadable: {source.unreadable}")
            continue
        sys.stdout.write(disassemble(source.insns, blinded=source.blinded))
    return 0
