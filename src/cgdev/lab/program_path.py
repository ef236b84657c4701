"""One program of a lab container's path, measured alone: its size and the kernel's verdict.

The path itself (every cgroup from the lab's root down, with its programs) is what ``explain``
reads: ``ops.inspect.systemd_layers`` on the lab's ``HostView``.
"""

from __future__ import annotations

from cgdev.adapters import bpf
from cgdev.core.model import Request
from cgdev.ops.layers import ProgramRecord


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
