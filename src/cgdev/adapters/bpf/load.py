"""Loading a BPF_PROG_TYPE_CGROUP_DEVICE program, with the verifier's reason when it is refused."""

from __future__ import annotations

import ctypes
import errno
import resource
from typing import Final

from cgdev.adapters.bpf.abi import (
    BPF_CGROUP_DEVICE,
    BPF_PROG_LOAD,
    BPF_PROG_TYPE_CGROUP_DEVICE,
    INSN_SIZE,
    ProgLoadAttr,
    bpf_error,
    errno_text,
    raw_bpf,
)
from cgdev.adapters.bpf.fd import Fd
from cgdev.core.progname import kernel_program_name
from cgdev.errors import VerifierError

LOG_START: Final = 64 * 1024
LOG_MAX: Final = 16 * 1024 * 1024  # the verifier log grows on ENOSPC up to this


def _load_attr(
    insns_buf: ctypes.Array[ctypes.c_char], count: int, name: bytes, lic: ctypes.Array[ctypes.c_char]
) -> ProgLoadAttr:
    attr = ProgLoadAttr()
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE
    attr.expected_attach_type = BPF_CGROUP_DEVICE
    attr.insn_cnt = count
    attr.insns = ctypes.addressof(insns_buf)
    attr.license = ctypes.addressof(lic)
    attr.prog_name = name
    return attr


def _summary(log: str) -> str:
    """The verifier's reason: the last log line that is not a statistics trailer."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("processed ", "verification time", "stack depth")):
            return line
    return ""


def _raise_memlock() -> bool:
    """Kernels before 5.11 charge programs to RLIMIT_MEMLOCK; lift it once (as crun/runc do)."""
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        return False
    return True


def prog_load(insns: bytes, *, name: str = "", license: str = "GPL") -> Fd:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program.

    The first try runs without a log (the common case must be fast); only a failure is retried
    with a log, grown on ENOSPC up to 16 MiB, so the error carries the verifier's reason.  ``name``
    is made legal first (``kernel_program_name``): an illegal name is EINVAL, not a program error.
    """
    if not insns or len(insns) % INSN_SIZE:
        raise VerifierError(f"program length {len(insns)} is not a positive multiple of {INSN_SIZE} bytes")
    encoded_name = kernel_program_name(name).encode()
    insns_buf = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    count = len(insns) // INSN_SIZE
    attr = _load_attr(insns_buf, count, encoded_name, lic)
    ret, err = raw_bpf(BPF_PROG_LOAD, attr)
    if ret < 0 and err == errno.EPERM and _raise_memlock():
        ret, err = raw_bpf(BPF_PROG_LOAD, attr)
    if ret >= 0:
        return Fd(ret)
    if err == errno.EPERM:
        raise bpf_error(BPF_PROG_LOAD, err, "a cgroup device program")
    fd, log, err = _load_with_log(insns_buf, count, encoded_name, lic)
    if fd is not None:  # a transient failure (e.g. EAGAIN): the retry loaded it
        return fd
    if not log and err in (errno.EPERM, errno.EACCES):
        raise bpf_error(BPF_PROG_LOAD, err, "a cgroup device program")
    reason = _summary(log)
    suffix = f": {reason}" if reason else ""
    raise VerifierError(
        f"the kernel refused the device program ({count} instructions): {errno_text(err)}{suffix}", log=log
    )


def _load_with_log(
    insns_buf: ctypes.Array[ctypes.c_char], count: int, name: bytes, lic: ctypes.Array[ctypes.c_char]
) -> tuple[Fd | None, str, int]:
    """Retry a failed load with the verifier log: (fd if it loaded after all, log text, errno)."""
    size = LOG_START
    while True:
        log_buf = ctypes.create_string_buffer(size)
        attr = _load_attr(insns_buf, count, name, lic)
        attr.log_level = 1
        attr.log_size = size
        attr.log_buf = ctypes.addressof(log_buf)
        ret, err = raw_bpf(BPF_PROG_LOAD, attr)
        if ret >= 0:
            return Fd(ret), "", 0
        if err == errno.ENOSPC and size < LOG_MAX:
            size = min(size * 4, LOG_MAX)
            continue
        log = log_buf.value.decode(errors="replace")
        if err == errno.ENOSPC:  # the log outgrew LOG_MAX: ENOSPC is about the log, not the program
            retry = _load_attr(insns_buf, count, name, lic)
            ret, err = raw_bpf(BPF_PROG_LOAD, retry)
            if ret >= 0:
                return Fd(ret), "", 0
            log += f"\n(verifier log truncated at {LOG_MAX} bytes)"
        return None, log, err
