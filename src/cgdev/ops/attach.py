"""Attach a device program to a cgroup, or detach one: ``cgdev attach`` / ``cgdev detach``.

``bpftool`` loads ELF objects and attaches by hand; this is the path for what ``compile`` writes
(raw instructions, an ELF object, or the rules themselves), with the repair code's safety: a
replacement goes through ``bpf.swap_program`` (BPF_F_REPLACE when the old program is alone, else
attach-new-then-detach-old), so the cgroup is never without a filter.  ``detach`` refuses to take
away the last program of a cgroup a systemd unit owns unless forced: systemd re-attaches its own
on the next daemon-reload or set-property, and until then the container is unfiltered, which is
rarely what was meant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cgdev.adapters import bpf, cgroupfs
from cgdev.errors import InputError, NotFound, VerifierError

if TYPE_CHECKING:
    from cgdev.ops.inspect import HostView


class InputKind(StrEnum):
    """What PROGRAM|RULES holds: raw instructions, an ELF object, or rules (compiled by cgdev)."""

    RAW = "raw"
    ELF = "elf"
    RULES = "rules"


@dataclass(frozen=True, slots=True)
class LoadedInput:
    """The instructions to load, the name to load them under, and what they were read from."""

    raw: bytes
    name: str
    kind: InputKind
    warnings: tuple[str, ...] = ()


def _kind_of(data: bytes) -> InputKind:
    """ELF by its magic; text (no NUL, UTF-8) is rules; anything else raw instructions (a raw
    program always holds NUL bytes: every register-only instruction has a zero offset)."""
    from cgdev.core.elf_read import is_elf

    if is_elf(data):
        return InputKind.ELF
    if b"\0" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return InputKind.RAW
        return InputKind.RULES
    return InputKind.RAW


def read_input(source: str, kind: InputKind | None = None) -> LoadedInput:
    """PROGRAM|RULES: a file (its kind detected unless ``kind`` says) or, when no such file
    exists, rule text on the command line (``'deny a; allow c 1:3 rw'``, ``;`` between rules)."""
    from cgdev.core.isa import decode

    try:
        with open(source, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        if kind not in (None, InputKind.RULES) or not source.strip() or source.startswith(("/", ".")):
            raise NotFound("no such file", field="program", value=source) from None
        return _compile(source.replace(";", "\n"), "PROGRAM")
    except OSError as err:
        raise InputError(f"cannot read it ({err.strerror})", field="program", value=source) from None
    kind = kind or _kind_of(data)
    if kind is InputKind.RULES:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not UTF-8 rule text", field="program", value=source) from None
        return _compile(text, source)
    name = "cgdev"
    if kind is InputKind.ELF:
        from cgdev.core.elf_read import read_device_program

        try:
            found = read_device_program(data)
        except InputError as err:
            raise InputError(err.why, field="program", value=source) from None
        data, name = found.insns, found.name or name
    try:
        from cgdev.core.interp import check

        check(decode(data))  # framing and structure, in one line, before the kernel's verifier sees it
    except InputError as err:
        raise InputError(err.why, field="program", value=source) from None
    return LoadedInput(data, name, kind)


def _compile(text: str, source: str) -> LoadedInput:
    from cgdev.core.rules import read_rule_text
    from cgdev.ops.compile_rules import compile_rules, host_lookups

    lookup, proc_devices = host_lookups()
    result = compile_rules(read_rule_text(text, source, lookup, proc_devices), "cgdev")
    if not result.raw:
        raise InputError("these rules allow every device: there is no program to attach", field="program")
    return LoadedInput(result.raw, "cgdev", InputKind.RULES, result.warnings)


@dataclass(frozen=True, slots=True)
class Attached:
    cgroup: str
    program_id: int
    replaced: int | None
    atomic: bool  # BPF_F_REPLACE (the old program was alone) rather than attach-then-detach
    programs: tuple[int, ...]  # the cgroup's own programs afterwards, in run order
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "cgroup": self.cgroup,
            "id": self.program_id,
            "replaced": self.replaced,
            "how": "replace" if self.atomic else ("attach-then-detach" if self.replaced else "attach"),
            "programs": list(self.programs),
            "warnings": list(self.warnings),
        }


def _open(cgroup: str) -> tuple[str, bpf.Fd]:
    path, rel = cgroupfs.locate(cgroup)
    if not os.path.isdir(path):
        raise NotFound("no such cgroup", field="attach_cgroup", value=cgroup)
    return rel, bpf.open_cgroup(path)


def attach_program(cgroup: str, loaded: LoadedInput, *, replace: int | None = None) -> Attached:
    """Load ``loaded`` and attach it to ``cgroup`` (beside its programs), or in place of the
    program ``replace`` (never a moment without a filter)."""
    rel, cg = _open(cgroup)
    with cg:
        before = bpf.prog_query(cg).ids
        old = None
        if replace is not None:
            if replace not in before:
                attached = ", ".join(f"#{i}" for i in before) or "none"
                raise InputError(
                    f"not attached to {rel} (attached: {attached})", field="replace", value=replace
                )
            old = bpf.prog_fd_by_id(replace)
        try:
            new = bpf.prog_load(loaded.raw, name=loaded.name)
        except VerifierError as err:  # the user's program, not our environment: bad input
            raise InputError(f"the kernel's verifier refuses it: {err}", field="program") from None
        with new:
            new_id = bpf.prog_info(new).id
            if old is None:
                bpf.prog_attach(cg, new)
            else:
                with old:
                    bpf.swap_program(cg, old, replace or 0, new)
        after = tuple(bpf.prog_query(cg).ids)
    return Attached(rel, new_id, replace, before == [replace], after, loaded.warnings)


@dataclass(frozen=True, slots=True)
class Detached:
    cgroup: str
    program_id: int
    programs: tuple[int, ...]  # what the cgroup is left with, its own
    inherited: int  # programs on its parents, which still apply
    unit: str | None  # the systemd unit owning the cgroup, if known
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "cgroup": self.cgroup,
            "detached": self.program_id,
            "programs": list(self.programs),
            "inherited": self.inherited,
            "unit": self.unit,
            "notes": list(self.notes),
        }


def owning_unit(rel: str, host: HostView) -> tuple[str | None, str | None]:
    """The systemd unit whose own cgroup ``rel`` is (None if none), and a note when systemd could
    not be asked (then a unit-like name counts as owned: refusing is the safe guess)."""
    from cgdev.ops.collect import unit_record
    from cgdev.ops.inspect import systemd_session
    from cgdev.ops.targets import UNIT_SUFFIXES

    sd_path = rel
    root = host.systemd_root.rstrip("/")
    if root and (rel == root or rel.startswith(root + "/")):
        sd_path = rel[len(root) :] or "/"
    with systemd_session(host) as (client, status):
        if client is not None:
            record = unit_record(client, sd_path, host.systemd_fs_root)
            return (record.unit if record is not None else None), None
    name = sd_path.rsplit("/", 1)[-1]
    if name.endswith(UNIT_SUFFIXES):
        return name, f"systemd not asked ({status}): {name} is taken to be its unit"
    return None, None


def detach_program(cgroup: str, program_id: int, host: HostView, *, force: bool = False) -> Detached:
    """Detach program ``program_id`` from ``cgroup``; the last one of a unit's cgroup only with
    ``force``."""
    rel, cg = _open(cgroup)
    with cg:
        ids = bpf.prog_query(cg).ids
        if program_id not in ids:
            attached = ", ".join(f"#{i}" for i in ids) or "none"
            raise InputError(
                f"not attached to {rel} (attached: {attached})", field="program_id", value=program_id
            )
        unit, note = owning_unit(rel, host)
        if ids == [program_id] and unit is not None and not force:
            raise InputError(
                f"is the last device program of {rel}, which systemd unit {unit} manages: detaching it "
                "leaves the cgroup unfiltered until systemd re-applies its own (--force to do it anyway)",
                field="program_id",
                value=program_id,
            )
        with bpf.prog_fd_by_id(program_id) as prog:
            bpf.prog_detach(cg, prog)
        left = tuple(bpf.prog_query(cg).ids)
        inherited = len(bpf.prog_query(cg, effective=True).ids) - len(left)
    return Detached(rel, program_id, left, max(inherited, 0), unit, (note,) if note else ())
