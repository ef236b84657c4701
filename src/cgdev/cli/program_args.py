"""The program inputs of ``lift`` and ``disasm``: one of a file, a text dump, an id, a pin, a cgroup."""

from __future__ import annotations

import argparse


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "file", nargs="?", metavar="FILE", help="raw instructions (bpftool ... dump xlated file F)"
    )
    group.add_argument("--text", metavar="FILE", help="a bpftool 'prog dump xlated' text listing")
    group.add_argument("--id", type=int, metavar="N", help="a loaded program, by id (root)")
    group.add_argument("--pinned", metavar="PATH", help="a program pinned in a bpffs (root)")
    group.add_argument("--cgroup", metavar="PATH", help="every device program attached to a cgroup (root)")
