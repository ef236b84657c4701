"""What libnvidia-container's legacy hook does to a container's device filter on cgroup v2.

Its ``AddDeviceRules`` (src/nvcgo/internal/cgroup/v2.go) takes the programs attached to the
container's *own* cgroup only, prepends one "allow c MAJOR:MINOR rw" block with its own prologue
to each, loads the result, detaches the old program and attaches the new one.  Programs on
ancestor cgroups (systemd's on the scope) are not touched: that is the whole bug the lab shows.
This reproduces exactly that, instruction for instruction, so cgdev can be tested against it.

A cgroup with no program (crun >= 1.23 under systemd hands its program to systemd, which attaches
it to the scope, and leaves ``…/container`` empty) gets what the hook builds then: the allow block
followed by a bare ``exit`` (``asm.Return()``).  On its fall-through path r0 was never set, so the
kernel's verifier refuses it ("R0 !read_ok"), and so does ``hook_cgroup``: the hook fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cgdev.adapters import bpf
from cgdev.core import isa
from cgdev.core.model import ACC_R, ACC_W, CHAR
from cgdev.errors import EnvError, InputError, VerifierError

PROGRAM_NAME: Final = "lab_hooksim"
_NEXT: Final = "old_program"


def allow_prefix(major: int, minor: int) -> tuple[isa.Insn, ...]:
    """libnvidia-container's shape: a 5-instruction prologue (16-bit type load), one allow block.

    The block falls through to whatever follows (the complete old program) when it does not match.
    """
    return isa.assemble(
        [
            isa.ldx("h", 2, 1, 0),  # r2 = type
            isa.ldx("w", 3, 1, 0),
            isa.alu32("rsh", 3, imm=16),  # w3 = access
            isa.ldx("w", 4, 1, 4),  # r4 = major
            isa.ldx("w", 5, 1, 8),  # r5 = minor
            isa.jmp("jne", 2, _NEXT, imm=CHAR),
            isa.alu32("mov", 2, src=3),
            isa.alu32("and", 2, imm=ACC_R | ACC_W),
            isa.jmp("jne", 2, _NEXT, src=3, wide32=True),  # the request must be within rw
            isa.jmp("jne", 4, _NEXT, imm=major),
            isa.jmp("jne", 5, _NEXT, imm=minor),
            isa.alu32("mov", 0, imm=1),
            isa.exit_(),
            isa.Label(_NEXT),
        ]
    )


# What the hook prepends to when the cgroup has no program: libnvidia-container's asm.Return().
NO_OLD_PROGRAM: Final = (isa.exit_(),)


class HookRefused(EnvError):
    """The hook's program for a cgroup without a program is refused by the kernel: the hook fails."""


@dataclass(frozen=True, slots=True)
class HookResult:
    cgroup: str
    device: tuple[int, int]
    before: list[int]
    after: list[int]


def parse_device(text: str) -> tuple[int, int]:
    """``195:255`` or ``c 195:255`` (the hook only ever grants character devices)."""
    spec = text.strip()
    if spec.startswith("c "):
        spec = spec[2:].strip()
    major_s, sep, minor_s = spec.partition(":")
    try:
        major, minor = int(major_s), int(minor_s)
    except ValueError:
        major = minor = -1
    if not sep or not (0 <= major <= 0xFFF and 0 <= minor <= 0xFFFFF):
        raise InputError(f"DEVICE: {text!r} is not MAJOR:MINOR of a character device (e.g. 195:255)")
    return major, minor


def _instructions(prog: bpf.Fd) -> bytes:
    info = bpf.prog_info(prog)
    if not info.xlated_readable:
        raise EnvError(f"program {info.id}: the kernel withholds its instructions (constant blinding?)")
    return info.xlated


def hook_cgroup(cgroup_dir: str, major: int, minor: int) -> HookResult:
    """Rewrite every device program on ``cgroup_dir`` (a host path) as the hook does."""
    prefix = isa.encode(allow_prefix(major, minor))
    with bpf.open_cgroup(cgroup_dir) as cgroup:
        before = bpf.prog_query(cgroup).ids
        olds = [bpf.prog_fd_by_id(prog_id) for prog_id in before]
        try:
            bodies = [_instructions(fd) for fd in olds] or [isa.encode(NO_OLD_PROGRAM)]
            try:
                news = [bpf.prog_load(prefix + body, name=PROGRAM_NAME) for body in bodies]
            except VerifierError as exc:
                if olds:
                    raise
                raise HookRefused(
                    f"hook-sim: {cgroup_dir} has no device program to prepend to, and the kernel "
                    f"refuses the hook's allow block followed by a bare exit ({exc}): the hook fails here"
                ) from None
            for old in olds:
                bpf.prog_detach(cgroup, old)
            for new in news:
                bpf.prog_attach(cgroup, new, multi=True)
                new.close()
        finally:
            for old in olds:
                old.close()
        after = bpf.prog_query(cgroup).ids
    return HookResult(cgroup=cgroup_dir, device=(major, minor), before=before, after=after)
