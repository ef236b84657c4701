"""``cgdev attach`` / ``cgdev detach``: put a compiled program on a cgroup, or take one off.

Two faces (``ATTACH``, ``DETACH``) in one module, as ``grant_cmd`` does; the work is
``ops.attach`` (the swap is the repair code's ``bpf.swap_program``).
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from cgdev.present.json_out import print_json

_ATTACH_DESCRIPTION = """\
Load a device program and attach it to CGROUP (a path under the cgroup2 mount, or the mount's
absolute path). PROGRAM|RULES is a file: raw instructions (compile -o), an ELF object (compile
--format elf -o, or clang's SEC("cgroup/dev")), or rules in any syntax compile reads (compiled by
cgdev); or, when no such file exists, rules on the command line ('deny a; allow c 1:3 rw').
--replace ID puts the program in place of program ID: atomically (BPF_F_REPLACE) when ID is the
cgroup's only program, else attached first and ID detached after; never a moment without a filter.

  cgdev compile 'allow c 1:3 rw' --format elf -o null.o
  cgdev attach /mygroup null.o
  cgdev attach /mygroup rules.txt --replace 42
"""

_DETACH_DESCRIPTION = """\
Detach program ID from CGROUP and say what the cgroup is left with. The last program of a cgroup
a systemd unit owns is kept unless --force: systemd re-attaches its own only on the next
daemon-reload or set-property, and until then the container would be unfiltered.
"""


def _add_attach(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("cgroup", metavar="CGROUP", help="the cgroup (relative to the cgroup2 mount)")
    parser.add_argument("program", metavar="PROGRAM|RULES", help="a raw or ELF program, or rules")
    parser.add_argument("--replace", type=int, metavar="ID", help="replace this attached program")
    parser.add_argument("--format", choices=("raw", "elf", "rules"),
                        help="what PROGRAM|RULES holds (default: detected)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _add_detach(parser: argparse.ArgumentParser) -> None:
    from cgdev.cli.inspect_args import add_system_arguments

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("cgroup", metavar="CGROUP", help="the cgroup (relative to the cgroup2 mount)")
    parser.add_argument("id", type=int, metavar="ID", help="the program to detach (cgdev show, bpftool)")
    parser.add_argument(
        "--force", action="store_true", help="detach even the last program of a unit's cgroup"
    )
    add_system_arguments(parser)  # how to reach systemd, to know whether a unit owns CGROUP


def _run_attach(args: argparse.Namespace) -> int:
    import sys

    from cgdev.ops.attach import InputKind, attach_program, read_input

    loaded = read_input(args.program, InputKind(args.format) if args.format else None)
    done = attach_program(args.cgroup, loaded, replace=args.replace)
    if args.json:
        print_json(done.to_json())
        return 0
    for warning in done.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    how = ""
    if done.replaced is not None:
        how = " atomically" if done.atomic else f" (attached, then #{done.replaced} detached)"
        how = f" in place of #{done.replaced}{how}"
    print(f"attached program #{done.program_id} ({loaded.kind}) to {done.cgroup}{how}")
    print(f"{done.cgroup} now runs: " + ", ".join(f"#{i}" for i in done.programs))
    return 0


def _run_detach(args: argparse.Namespace) -> int:
    from cgdev.cli.inspect_args import host_from_args
    from cgdev.ops.attach import detach_program

    done = detach_program(args.cgroup, args.id, host_from_args(args), force=args.force)
    if args.json:
        print_json(done.to_json())
        return 0
    print(f"detached program #{done.program_id} from {done.cgroup}")
    if done.programs:
        print(f"{done.cgroup} is left with: " + ", ".join(f"#{i}" for i in done.programs))
    else:
        parents = f"{done.inherited} on its parents still apply" if done.inherited else "none on its parents"
        print(f"{done.cgroup} is left with no device program of its own ({parents})")
    if done.unit is not None and not done.programs:
        print(
            f"systemd unit {done.unit} re-attaches its own program on the next daemon-reload or set-property"
        )
    for note in done.notes:
        print(f"note: {note}")
    return 0


ATTACH = SimpleNamespace(
    HELP="load a device program (raw, ELF, or rules) and attach it to a cgroup, or replace one",
    DESCRIPTION=_ATTACH_DESCRIPTION,
    add_arguments=_add_attach,
    run=_run_attach,
)
DETACH = SimpleNamespace(
    HELP="detach a device program from a cgroup (not a unit's last one unless --force)",
    DESCRIPTION=_DETACH_DESCRIPTION,
    add_arguments=_add_detach,
    run=_run_detach,
)
