"""Pytest fixtures and helpers for tests that ask the real kernel.

The kernel is never faked: these fixtures give a real scratch cgroup and real programs, and skip
(with the reason) only where the capability is truly missing — not root, no cgroup2, no bpf(2).
The tiny assembler here exists so kernel tests do not depend on the core ISA module they may be
used to check.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence

import pytest

from cgdev.core.model import Request

__all__ = [
    "ALLOW_ALL",
    "ALLOW_C_1_3_R",
    "DENY_ALL",
    "bpffs_dir",
    "in_child",
    "insn",
    "kernel_unavailable_reason",
    "probe",
    "requires_root_bpf",
    "root_bpf",
    "scratch_cgroup",
]

# --- running something in a forked child ------------------------------------------------------


def in_child(action: Callable[[], str]) -> str:
    """Run ``action`` in a forked child and return the text it returned.

    For what must not touch the test process itself: joining another cgroup, dropping
    privileges.  An exception in the child comes back as ``"error\t<type>: <message>"``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_end)
            try:
                answer = action()
            except BaseException as exc:
                answer = f"error\t{type(exc).__name__}: {exc}"
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


# --- a tiny assembler (struct bpf_insn, little-endian hosts) ----------------------------------

LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
ALU64_AND_K = 0x57
ALU64_RSH_K = 0x77
ALU64_MOV_X = 0xBF
ALU64_MOV_K = 0xB7
ALU32_MOV_K = 0xB4
JMP_JNE_K = 0x55
EXIT = 0x95


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte eBPF instruction."""
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def _return(value: int, *, mov32: bool = False) -> bytes:
    return insn(ALU32_MOV_K if mov32 else ALU64_MOV_K, 0, imm=value) + insn(EXIT)


DENY_ALL = _return(0)
ALLOW_ALL = _return(1)
# Allow exactly "c 1:3 r": every other device, and w / rw / m on 1:3, is denied.
ALLOW_C_1_3_R = b"".join(
    [
        insn(LDX_W, 2, 1, 0),  # r2 = ctx->access_type
        insn(ALU64_MOV_X, 3, 2),  # r3 = r2
        insn(ALU64_AND_K, 3, imm=0xFFFF),  # r3 = type
        insn(ALU64_RSH_K, 2, imm=16),  # r2 = access
        insn(LDX_W, 4, 1, 4),  # r4 = major
        insn(LDX_W, 5, 1, 8),  # r5 = minor
        insn(JMP_JNE_K, 3, off=5, imm=2),  # type != char -> deny
        insn(JMP_JNE_K, 4, off=4, imm=1),  # major != 1 -> deny
        insn(JMP_JNE_K, 5, off=3, imm=3),  # minor != 3 -> deny
        insn(JMP_JNE_K, 2, off=2, imm=2),  # access != r -> deny
        _return(1),
        _return(0),
    ]
)

# --- capability detection ---------------------------------------------------------------------


@functools.cache
def kernel_unavailable_reason() -> str | None:
    """Why kernel tests cannot run here, or None when they can (asked without cgdev's code)."""
    from capabilities import kernel_missing_reason

    return kernel_missing_reason()


# Marker for tests, classes or a module (``pytestmark = requires_root_bpf``): skips through the
# ``root_bpf`` fixture, so the skip names the precise missing capability.
requires_root_bpf = pytest.mark.usefixtures("root_bpf")


@pytest.fixture
def root_bpf() -> None:
    """Skip the test, with the precise reason, when the kernel cannot be asked."""
    reason = kernel_unavailable_reason()
    if reason is not None:
        from capabilities import skip_unless_ci

        skip_unless_ci(reason)


_swept = False


@pytest.fixture
def scratch_cgroup(root_bpf: None) -> Iterator[object]:
    """A fresh ScratchCgroup (entered); asserts on teardown that nothing of it is left behind."""
    from cgdev.adapters.scratch_cgroup import ScratchCgroup, sweep_stale_scratch

    global _swept
    if not _swept:  # scratch cgroups of earlier runs that were killed
        sweep_stale_scratch()
        _swept = True
    with ScratchCgroup() as scratch:
        yield scratch
    assert not os.path.exists(scratch.path), f"scratch cgroup {scratch.path} left behind"


@pytest.fixture
def probe(root_bpf: None) -> Callable[[bytes | None, Sequence[Request]], list[bool]]:
    """``probe(insns, requests)``: the kernel's verdicts with ``insns`` attached (None: no program)."""
    from cgdev.adapters.scratch_cgroup import ScratchCgroup

    def run(insns: bytes | None, requests: Sequence[Request]) -> list[bool]:
        with ScratchCgroup() as scratch:
            if insns is not None:
                scratch.attach(insns)
            return scratch.kernel_verdicts(requests)

    return run


_MNT_DETACH = 2


@pytest.fixture
def bpffs_dir(root_bpf: None) -> Iterator[str]:
    """A directory on a bpf filesystem: a fresh private bpffs in a temp dir, unmounted after."""
    libc = ctypes.CDLL(None, use_errno=True)
    path = tempfile.mkdtemp(prefix="cgdev-bpffs-")
    if libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        os.rmdir(path)
        pytest.skip(f"cannot mount a bpf filesystem: {errno.errorcode.get(err, err)}")
    try:
        yield path
    finally:
        libc.umount2(os.fsencode(path), _MNT_DETACH)
        os.rmdir(path)
