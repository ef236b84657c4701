"""The bpf(2) ABI for cgroup device programs: uapi constants, attribute layouts, the raw syscall.

Everything here mirrors include/uapi/linux/bpf.h; the other modules of this package build one bpf
command each on top of ``raw_bpf`` and turn its errno into one typed ``CgdevError`` line
(``bpf_error``): EPERM/EACCES -> ``NeedsRoot``, ENOENT -> ``NotFound`` naming the object, anything
else -> ``EnvError`` naming the bpf command and the errno.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from typing import Final

from cgdev.errors import EnvError, NeedsRoot, NotFound

# --- constants from include/uapi/linux/bpf.h --------------------------------------------------

_SYSCALL_BPF: Final[dict[str, int]] = {"x86_64": 321, "aarch64": 280, "arm64": 280}

BPF_PROG_LOAD: Final = 5
BPF_OBJ_PIN: Final = 6
BPF_OBJ_GET: Final = 7
BPF_PROG_ATTACH: Final = 8
BPF_PROG_DETACH: Final = 9
BPF_PROG_GET_FD_BY_ID: Final = 13
BPF_OBJ_GET_INFO_BY_FD: Final = 15
BPF_PROG_QUERY: Final = 16
BPF_ENABLE_STATS: Final = 32

COMMAND_NAMES: Final[dict[int, str]] = {
    BPF_PROG_LOAD: "BPF_PROG_LOAD",
    BPF_OBJ_PIN: "BPF_OBJ_PIN",
    BPF_OBJ_GET: "BPF_OBJ_GET",
    BPF_PROG_ATTACH: "BPF_PROG_ATTACH",
    BPF_PROG_DETACH: "BPF_PROG_DETACH",
    BPF_PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID",
    BPF_OBJ_GET_INFO_BY_FD: "BPF_OBJ_GET_INFO_BY_FD",
    BPF_PROG_QUERY: "BPF_PROG_QUERY",
    BPF_ENABLE_STATS: "BPF_ENABLE_STATS",
}

BPF_PROG_TYPE_CGROUP_DEVICE: Final = 15
BPF_CGROUP_DEVICE: Final = 6  # attach type

BPF_F_ALLOW_OVERRIDE: Final = 1
BPF_F_ALLOW_MULTI: Final = 2
BPF_F_REPLACE: Final = 4
BPF_F_QUERY_EFFECTIVE: Final = 1
BPF_STATS_RUN_TIME: Final = 0

INSN_SIZE: Final = 8
BPF_OBJ_NAME_LEN: Final = 16

# --- attribute layouts (each the command's member of union bpf_attr) ---------------------------

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


class ProgLoadAttr(ctypes.Structure):
    _fields_ = (
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
    )


class AttachAttr(ctypes.Structure):
    _fields_ = (
        ("target_fd", _u32),
        ("attach_bpf_fd", _u32),
        ("attach_type", _u32),
        ("attach_flags", _u32),
        ("replace_bpf_fd", _u32),
    )


class QueryAttr(ctypes.Structure):
    # Laid out to the end of ``revision`` (Linux 6.17+): kernels 6.17-7.1 write that field back
    # whatever size the caller passed, so a shorter struct would let the kernel scribble past it.
    _fields_ = (
        ("target_fd", _u32),
        ("attach_type", _u32),
        ("query_flags", _u32),
        ("attach_flags", _u32),
        ("prog_ids", _u64),
        ("prog_cnt", _u32),
        ("_pad", _u32),
        ("prog_attach_flags", _u64),
        ("link_ids", _u64),
        ("link_attach_flags", _u64),
        ("revision", _u64),
    )


class GetIdAttr(ctypes.Structure):
    _fields_ = (("id", _u32), ("next_id", _u32), ("open_flags", _u32))


class ObjAttr(ctypes.Structure):
    _fields_ = (("pathname", _u64), ("bpf_fd", _u32), ("file_flags", _u32))


class InfoAttr(ctypes.Structure):
    _fields_ = (("bpf_fd", _u32), ("info_len", _u32), ("info", _u64))


class StatsAttr(ctypes.Structure):
    _fields_ = (("type", _u32),)


class ProgInfoAttr(ctypes.Structure):
    _fields_ = (
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad", _u32),
    )


# --- the syscall ------------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


@functools.cache
def _syscall_number() -> int:
    """The bpf(2) number of this machine (looked up once: ``os.uname`` is a syscall too, and the
    watcher polls thousands of cgroups)."""
    machine = os.uname().machine
    try:
        return _SYSCALL_BPF[machine]
    except KeyError:
        raise EnvError(f"bpf(2): unsupported architecture {machine!r} (x86_64 and aarch64 only)") from None


def raw_bpf(cmd: int, attr: ctypes.Structure) -> tuple[int, int]:
    """One bpf(2) call: (return value, errno).  The libc handle is opened on first use only."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    ret = _libc.syscall(
        ctypes.c_long(_syscall_number()),
        ctypes.c_long(cmd),
        ctypes.byref(attr),
        ctypes.c_uint(ctypes.sizeof(attr)),
    )
    return ret, (ctypes.get_errno() if ret < 0 else 0)


def errno_text(err: int) -> str:
    """``EPERM (Operation not permitted)``: the symbol for grep, the text for humans."""
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def bpf_error(cmd: int, err: int, what: str) -> Exception:
    """The one-line typed error for a failed bpf command on ``what``."""
    name = COMMAND_NAMES.get(cmd, f"cmd {cmd}")
    if err in (errno.EPERM, errno.EACCES):
        return NeedsRoot(f"bpf({name}) on {what} needs root (CAP_SYS_ADMIN/CAP_BPF): {errno_text(err)}")
    if err == errno.ENOENT:
        return NotFound(f"{what} not found (bpf({name}): {errno_text(err)})")
    return EnvError(f"bpf({name}) on {what} failed: {errno_text(err)}")


def checked_call(cmd: int, attr: ctypes.Structure, what: str) -> int:
    ret, err = raw_bpf(cmd, attr)
    if ret < 0:
        raise bpf_error(cmd, err, what)
    return ret
