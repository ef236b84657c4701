"""The device programs on every cgroup from the lab's root down to a container's cgroup.

Access is allowed only if every program on that path returns 1, so this list -- not the leaf's
program alone -- is what decides what a container may open.
"""

from __future__ import annotations

from dataclasses import dataclass

from cgdev.adapters import bpf
from cgdev.core.model import Request
from cgdev.errors import NotFound
from cgdev.lab.stack import Lab


@dataclass(frozen=True, slots=True)
class Program:
    id: int
    name: str
    insns: int
    xlated: bytes

    @property
    def label(self) -> str:
        return f"{self.name or '(unnamed)'} #{self.id}, {self.insns} insns"


@dataclass(frozen=True, slots=True)
class Layer:
    cgroup: str  # as the lab names it
    programs: tuple[Program, ...]


def path_levels(cgroup: str) -> list[str]:
    """``/a/b`` -> ``["/", "/a", "/a/b"]``."""
    parts = [p for p in cgroup.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def programs_at(lab: Lab, cgroup: str) -> tuple[Program, ...]:
    found = []
    with bpf.open_cgroup(str(lab.host_cgroup(cgroup))) as fd:
        for prog_id in bpf.prog_query(fd).ids:
            try:
                with bpf.prog_fd_by_id(prog_id) as prog:
                    info = bpf.prog_info(prog)
            except NotFound:  # replaced between the query and the open
                continue
            found.append(Program(prog_id, info.name, info.insn_count, info.xlated))
    return tuple(found)


def layers(lab: Lab, cgroup: str) -> list[Layer]:
    return [Layer(level, programs_at(lab, level)) for level in path_levels(cgroup)]


def program_allows(program: Program, request: Request) -> bool:
    """The kernel's verdict of this one program alone: loaded into a scratch cgroup and asked.

    The kernel, not a model of it, says which layer denies -- so the demo's claim is a measurement.
    """
    from cgdev.adapters.probe import ScratchCgroup

    with ScratchCgroup() as scratch:
        scratch.attach(program.xlated, name="lab_layer")
        return scratch.probe([request])[0]


@dataclass(frozen=True, slots=True)
class Lifted:
    """A program read back as rules by the lifter, with the generator it recognised."""

    generator: str
    rules: list[str]
    opaque: str | None


def lift_program(program: Program) -> Lifted | None:
    """The program lifted by ``cgdev.core.lift`` when that module is present, else None.

    The lab does not depend on the lifter: without it the demo shows the kernel's verdicts only.
    """
    try:
        from cgdev.core.lift import lift
    except ImportError:
        return None
    from cgdev.core import isa

    result = lift(isa.decode(program.xlated))
    return Lifted(result.generator, [str(rule) for rule in result.rules], result.opaque)
