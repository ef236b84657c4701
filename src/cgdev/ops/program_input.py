"""Reading device programs: a raw file, a bpftool text dump, a program id, a pin, or every program
attached to a cgroup.

Shared by ``lift``, ``disasm`` and other operations so each input is named and refused the same
way everywhere (errors name the input's field: ``file``, ``text``, ``id``, ``pinned``, ``cgroup``).
The file inputs are pure (no root needed); the kernel inputs import the bpf adapter only when
used, so pure commands never pay for ctypes set-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cgdev.core.isa import Insn, decode
from cgdev.errors import InputError, NotFound


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
    helpers: dict[int, str] | None = None  # a kernel dump's call names (None: calls hold helper ids)

    def to_json(self) -> dict[str, object]:
        return {"source": self.label, "id": self.prog_id, "name": self.name, "cgroup": self.cgroup}


def _read_file(path: str, field: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise NotFound("no such file", field=field, value=path) from None
    except IsADirectoryError:
        raise InputError("is a directory", field=field, value=path) from None
    except PermissionError:
        raise InputError("permission denied", field=field, value=path) from None


def _decode_file(path: str) -> tuple[Insn, ...]:
    raw = _read_file(path, "file")
    try:
        return decode(raw)
    except InputError as err:
        raise InputError(str(err), field="file", value=path) from None


def _text_file(path: str) -> ProgramSource:
    """A bpftool listing: a kernel dump, so its calls are offsets, named by the listing itself."""
    from cgdev.core.disasm import call_names, parse_bpftool_text

    text = _read_file(path, "text").decode("utf-8", errors="replace")
    try:
        insns = parse_bpftool_text(text)
    except InputError as err:
        raise InputError(str(err), field="text", value=path) from None
    return ProgramSource(f"text {path}", insns, helpers=call_names(text))


def _from_fd(fd: object, label: str, cgroup: str | None = None) -> ProgramSource:
    from cgdev.adapters import bpf

    info = bpf.prog_info(fd)  # type: ignore[arg-type]  # an Fd or an int, as the callers hand it
    if info.type != bpf.BPF_PROG_TYPE_CGROUP_DEVICE:
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
    from cgdev.ops.collect import helper_names

    return ProgramSource(
        label,
        decode(info.xlated),
        info.name,
        info.id,
        cgroup,
        blinded=info.blinded,
        helpers=helper_names(info.xlated),
    )


def _by_id(prog_id: int, cgroup: str | None = None) -> ProgramSource:
    from cgdev.adapters import bpf

    if prog_id <= 0:
        raise InputError("program ids are positive", field="id", value=prog_id)
    with bpf.prog_fd_by_id(prog_id) as fd:
        return _from_fd(fd, f"id {prog_id}", cgroup)


def _cgroup_dir(path: str) -> tuple[str, str]:
    """(host path, path relative to the cgroup2 mount, as explain and audit print it)."""
    from cgdev.adapters import cgroupfs

    host, rel = cgroupfs.locate(path)
    if not os.path.isdir(host):
        raise NotFound("no such cgroup", field="cgroup", value=path)
    return host, rel


def read_programs(
    *,
    file: str | None = None,
    text: str | None = None,
    prog_id: int | None = None,
    pinned: str | None = None,
    cgroup: str | None = None,
) -> list[ProgramSource]:
    """The programs of the one input given (a file, a text dump, an id, a pin or a cgroup)."""
    if file is not None:
        return [ProgramSource(f"file {file}", _decode_file(file))]
    if text is not None:
        return [_text_file(text)]
    if prog_id is not None:
        return [_by_id(prog_id)]
    from cgdev.adapters import bpf

    if pinned is not None:
        with bpf.obj_get(pinned) as fd:
            return [_from_fd(fd, f"pinned {pinned}")]
    if cgroup is None:
        raise InputError("give one program input", field="file")
    host, rel = _cgroup_dir(cgroup)
    with bpf.open_cgroup(host) as cgroup_fd:
        ids = bpf.prog_query(cgroup_fd).ids
    return [_by_id(prog_id, rel) for prog_id in ids]


def parent_program_count(cgroup: str) -> tuple[str, int]:
    """``cgroup`` as explain prints it, and how many device programs sit on the cgroups above it
    (a parent that cannot be read counts nothing: the note that uses this is advice, not a
    verdict)."""
    from cgdev.adapters import bpf, cgroupfs
    from cgdev.errors import CgdevError

    host, rel = _cgroup_dir(cgroup)
    count = 0
    for parent in cgroupfs.ancestors(host)[:-1]:
        try:
            with bpf.open_cgroup(parent) as fd:
                count += len(bpf.prog_query(fd).ids)
        except CgdevError:
            continue
    return rel, count
