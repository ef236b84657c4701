"""Can this machine run the kernel and lab tests?  Asked without cgdev's own code.

The answer decides between running a test and skipping it, so it must not come from the code
under test: a bug in cgdev's bpf(2) layer would otherwise turn every kernel test into a skip and
the suite would pass.  Here the checks are a raw ``bpf(BPF_PROG_LOAD)`` through libc and a look
at /proc/self/mountinfo.  Under CI (``CI`` set) a missing capability is a failure, not a skip:
CI machines are root with a cgroup2 mount, so a skip there would only hide a broken setup.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

import pytest

SYS_BPF = {"x86_64": 321, "aarch64": 280}
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_CGROUP_DEVICE = 15
# r0 = 1; exit
ALLOW_ALL = struct.pack("<BBhi", 0xB7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0)
# errnos meaning "this process or kernel cannot load device programs at all"
MISSING = (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EINVAL)


def cgroup2_mounted() -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(line.split(" - ", 1)[-1].startswith("cgroup2 ") for line in fh)


def bpf_load_error() -> int | None:
    """The errno of loading a trivial device program, or None when it loads."""
    number = SYS_BPF.get(platform.machine())
    if number is None:
        return errno.ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(ALLOW_ALL, len(ALLOW_ALL))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, 2, ctypes.addressof(insns), ctypes.addressof(license_)
    )
    fd = libc.syscall(number, BPF_PROG_LOAD, attr, len(attr))
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return None


def kernel_missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_SYS_ADMIN/CAP_BPF) to load and attach device programs"
    if not cgroup2_mounted():
        return "no cgroup2 filesystem is mounted"
    err = bpf_load_error()
    if err in MISSING:
        return f"bpf(2) cannot load a cgroup device program here ({errno.errorcode.get(err, err)})"
    return None  # loads, or fails in a way the tests themselves must report


def skip_unless_ci(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must be able to run this test, but: {reason}")
    pytest.skip(reason)
