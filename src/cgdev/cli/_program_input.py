"""Reading device programs for a command: a raw file, a bpftool text dump, a program id, a pin, or
every program attached to a cgroup.

Shared by ``lift``, ``disasm`` and other commands so each input is named and refused the same
way everywhere.  The file inputs are pure (no root needed); the kernel inputs import the bpf
adapter only when used, so pure commands never pay for ctypes set-up.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from cgdev.core.isa import Insn, decode
from cgdev.errors import InputError, NotFound

BPF_PROG_TYPE_CGROUP_DEVICE = 15


@dataclass(frozen=True, slots=True)
class ProgramSource:
    """One program and where it came from; ``unreadable`` says why ``insns`` is empty."""

    label: str
    insns: tuple[Insn, ...]
    name: str = ""
    prog_id: int | None = None
    cgroup: str | None = None
    unreadable: str | None = None
    blinded: bool = False  # the kernel gave the instructions with constants blinded

    def to_json(self) -> dict[str, object]:
        return {"source": self.label, "id": self.prog_id, "name": self.name, "cgroup": self.cgroup}


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "file", nargs="?", metavar="FILE", help="raw instructions (bpftool ... dump xlated file F)"
    )
    group.add_argument("--text", metavar="FILE", help="a bpftool 'prog dump xlated' text listing")
    group.add_argument("--id", type=int, metavar="N", help="a loaded program, by id (root)")
    group.add_argument("--pinned", metavar="PATH", help="a program pinned in a bpffs (root)")
    group.add_argument("--cgroup", metavar="PATH", help="every device program attached to a cgroup (root)")


def _read_file(path: str, field: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise NotFound(f"{field} {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{field} {path}: is a directory") from None
    except PermissionError:
        raise InputError(f"{field} {path}: permission denied") from None


def _decode_file(path: str) -> tuple[Insn, ...]:
    raw = _read_file(path, "file")
    try:
        return decode(raw)
    except InputError as err:
        raise InputError(f"file {path}: {err}") from None


def _text_file(path: str) -> tuple[Insn, ...]:
    from cgdev.core.disasm import parse_bpftool_text

    raw = _read_file(path, "--text")
    try:
        return parse_bpftool_text(raw.decode("utf-8", errors="replace"))
    except InputError as err:
        raise InputError(f"--text {path}: {err}") from None


def _from_fd(fd: object, label: str, cgroup: str | None = None) -> ProgramSource:
    from cgdev.adapters import bpf

    info = bpf.prog_info(fd)  # type: ignore[arg-type]
    if info.type != BPF_PROG_TYPE_CGROUP_DEVICE:
        raise InputError(f"{label}: program type {info.type} is not a cgroup device program")
    if not info.xlated_readable:
        return ProgramSource(
            label,
            (),
            info.name,
            info.id,
            cgroup,
            "the kernel withheld the instructions (blinded or restricted: bpf_jit_harden / kptr_restrict)",
        )
    return ProgramSource(label, decode(info.xlated), info.name, info.id, cgroup, blinded=info.blinded)


def _by_id(prog_id: int, cgroup: str | None = None) -> ProgramSource:
    from cgdev.adapters import bpf

    if prog_id <= 0:
        raise InputError(f"--id {prog_id}: program ids are positive")
    with bpf.prog_fd_by_id(prog_id) as fd:
        return _from_fd(fd, f"id {prog_id}", cgroup)


def _cgroup_dir(path: str) -> tuple[str, str]:
    """(host path, path relative to the cgroup2 mount, as explain and audit print it)."""
    from cgdev.adapters import cgroupfs

    host, rel = cgroupfs.locate(path)
    if not os.path.isdir(host):
        raise NotFound(f"--cgroup {path}: no such cgroup")
    return host, rel


def read_programs(args: argparse.Namespace) -> list[ProgramSource]:
    """The programs named on the command line (``add_program_arguments``)."""
    if args.file is not None:
        return [ProgramSource(f"file {args.file}", _decode_file(args.file))]
    if args.text is not None:
        return [ProgramSource(f"text {args.text}", _text_file(args.text))]
    if args.id is not None:
        return [_by_id(args.id)]
    from cgdev.adapters import bpf

    if args.pinned is not None:
        with bpf.obj_get(args.pinned) as fd:
            return [_from_fd(fd, f"pinned {args.pinned}")]
    host, rel = _cgroup_dir(args.cgroup)
    with bpf.open_cgroup(host) as cgroup_fd:
        ids = bpf.prog_query(cgroup_fd).ids
    return [_by_id(prog_id, rel) for prog_id in ids]
