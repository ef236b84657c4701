"""bpf(2) for cgroup device programs, through ctypes: the package face (``bpf.prog_load(...)``).

No Python binding covers what cgdev needs (CGROUP_DEVICE query with per-program flags, atomic
BPF_F_REPLACE, raw xlated dumps), and a compiled extension would cost a build step, so this is a
small typed layer of our own over the raw syscall.  It imports nothing but ctypes and the stdlib, so
the OCI hook and the pure commands can import it cheaply, without root.  One concept per module:
``abi`` (uapi layouts, the syscall, errno -> error), ``fd``, ``load``, ``attach`` (attach, detach,
query), ``info``, ``pin``, ``stats``.  A rejected load is a ``VerifierError`` carrying the log.
"""

from cgdev.adapters.bpf.abi import (
    BPF_CGROUP_DEVICE,
    BPF_F_ALLOW_MULTI,
    BPF_F_ALLOW_OVERRIDE,
    BPF_F_REPLACE,
    BPF_OBJ_NAME_LEN,
    BPF_PROG_TYPE_CGROUP_DEVICE,
    INSN_SIZE,
    errno_text,
)
from cgdev.adapters.bpf.attach import QUERY_START, Query, prog_attach, prog_detach, prog_query, swap_program
from cgdev.adapters.bpf.fd import Fd, open_cgroup
from cgdev.adapters.bpf.info import ProgInfo, prog_fd_by_id, prog_info
from cgdev.adapters.bpf.load import LOG_MAX, prog_load
from cgdev.adapters.bpf.pin import obj_get, obj_pin
from cgdev.adapters.bpf.stats import bpf_stats

__all__ = [
    "BPF_CGROUP_DEVICE",
    "BPF_F_ALLOW_MULTI",
    "BPF_F_ALLOW_OVERRIDE",
    "BPF_F_REPLACE",
    "BPF_OBJ_NAME_LEN",
    "BPF_PROG_TYPE_CGROUP_DEVICE",
    "INSN_SIZE",
    "LOG_MAX",
    "QUERY_START",
    "Fd",
    "ProgInfo",
    "Query",
    "bpf_stats",
    "errno_text",
    "obj_get",
    "obj_pin",
    "open_cgroup",
    "prog_attach",
    "prog_detach",
    "prog_fd_by_id",
    "prog_info",
    "prog_load",
    "prog_query",
    "swap_program",
]
