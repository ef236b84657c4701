"""The device programs on every cgroup from the lab's root down to a container's cgroup.

Access is allowed only if every program on that path returns 1, so this list -- not the leaf's
program alone -- is what decides what a container may open.  The walk and the reading are
cgdev's own (``cgroupfs.ancestors``, ``ops.collect.program_records``), so the lab records exactly
what ``explain`` reads; only the names differ: the lab names cgroups from its own root, as the
systemd inside it does.
"""

from __future__ import annotations

from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.cgroupfs import relative
from cgdev.core.model import Request
from cgdev.lab.instance import Lab
from cgdev.ops.collect import program_records
from cgdev.ops.layers import Layer, ProgramRecord


def path_layers(lab: Lab, cgroup: str) -> list[Layer]:
    """Every level from the lab's root to ``cgroup`` (lab names), outermost first."""
    root = str(lab.cgroup_root)
    levels = cgroupfs.ancestors(str(lab.host_cgroup(cgroup)), mount=root)
    return [Layer(relative(path, root), program_records(path)) for path in levels]


def insn_count(program: ProgramRecord) -> int:
    return len(program.xlated) // bpf.INSN_SIZE


def program_allows(program: ProgramRecord, request: Request) -> bool:
    """The kernel's verdict of this one program alone: loaded into a scratch cgroup and asked.

    The kernel, not a model of it, says which layer denies -- so the demo's claim is a measurement.
    """
    from cgdev.adapters.scratch_cgroup import ScratchCgroup

    with ScratchCgroup() as scratch:
        scratch.attach(program.xlated, name="lab_layer")
        return scratch.kernel_verdicts([request])[0]
