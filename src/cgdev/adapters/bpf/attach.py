"""Attaching, detaching (atomically replacing) and listing the device programs of one cgroup."""

from __future__ import annotations

import ctypes
import errno
from typing import Final

import msgspec

from cgdev.adapters.bpf.abi import (
    BPF_CGROUP_DEVICE,
    BPF_F_ALLOW_MULTI,
    BPF_F_QUERY_EFFECTIVE,
    BPF_F_REPLACE,
    BPF_PROG_ATTACH,
    BPF_PROG_DETACH,
    BPF_PROG_QUERY,
    AttachAttr,
    QueryAttr,
    bpf_error,
    checked_call,
    raw_bpf,
)
from cgdev.adapters.bpf.fd import Fd, raw_fd
from cgdev.errors import EnvError

# Initial capacity of a query; it doubles on ENOSPC.
QUERY_START: Final = 8


def prog_attach(
    cgroup_fd: Fd | int, prog_fd: Fd | int, *, multi: bool = True, replace: Fd | int | None = None
) -> None:
    """Attach a device program to a cgroup.

    ``replace`` swaps an attached program for ``prog_fd`` atomically (BPF_F_REPLACE): there is
    never a moment with neither, nor with both — the only safe way to change a live filter.
    """
    attr = AttachAttr()
    attr.target_fd = raw_fd(cgroup_fd)
    attr.attach_bpf_fd = raw_fd(prog_fd)
    attr.attach_type = BPF_CGROUP_DEVICE
    attr.attach_flags = BPF_F_ALLOW_MULTI if multi else 0
    what = f"cgroup fd {attr.target_fd}"
    if replace is not None:
        attr.attach_flags |= BPF_F_REPLACE
        attr.replace_bpf_fd = raw_fd(replace)
        what = f"the program to replace (fd {attr.replace_bpf_fd}) on cgroup fd {attr.target_fd}"
    checked_call(BPF_PROG_ATTACH, attr, what)


def prog_detach(cgroup_fd: Fd | int, prog_fd: Fd | int) -> None:
    """Detach one device program from a cgroup (NotFound if it is not attached there)."""
    attr = AttachAttr()
    attr.target_fd = raw_fd(cgroup_fd)
    attr.attach_bpf_fd = raw_fd(prog_fd)
    attr.attach_type = BPF_CGROUP_DEVICE
    checked_call(
        BPF_PROG_DETACH, attr, f"attachment of program fd {attr.attach_bpf_fd} to cgroup fd {attr.target_fd}"
    )


class Query(msgspec.Struct, frozen=True):
    """The device programs of one cgroup, in the kernel's run order.

    ``prog_flags`` holds per-program attach flags where the kernel reports them (Linux 6.0+,
    non-effective queries only); otherwise ``None``.  ``revision`` is 0 before Linux 6.6.
    """

    ids: list[int]
    attach_flags: int
    prog_flags: list[int] | None
    revision: int
    effective: bool


def prog_query(cgroup_fd: Fd | int, *, effective: bool = False) -> Query:
    """List the device programs attached to a cgroup (``effective``: also those inherited)."""
    capacity = QUERY_START
    while True:
        ids = (ctypes.c_uint32 * capacity)()
        flags = (ctypes.c_uint32 * capacity)()
        attr = QueryAttr()
        attr.target_fd = raw_fd(cgroup_fd)
        attr.attach_type = BPF_CGROUP_DEVICE
        attr.query_flags = BPF_F_QUERY_EFFECTIVE if effective else 0
        attr.prog_ids = ctypes.addressof(ids)
        attr.prog_cnt = capacity
        if not effective:  # the kernel refuses per-program flags for effective queries
            attr.prog_attach_flags = ctypes.addressof(flags)
        ret, err = raw_bpf(BPF_PROG_QUERY, attr)
        if ret < 0 and err == errno.ENOSPC:
            capacity = max(capacity * 2, attr.prog_cnt)
            continue
        if ret < 0:
            raise bpf_error(BPF_PROG_QUERY, err, f"cgroup fd {attr.target_fd}")
        count = attr.prog_cnt
        # Kernels before 6.0 ignore prog_attach_flags and leave it zero: then there is no report.
        per_prog = list(flags[:count]) if not effective and any(flags[:count]) else None
        return Query(
            ids=list(ids[:count]),
            attach_flags=attr.attach_flags,
            prog_flags=per_prog,
            revision=attr.revision,
            effective=effective,
        )


def swap_program(cgroup_fd: Fd | int, old: Fd | int, old_id: int, new: Fd | int) -> None:
    """Put ``new`` where ``old`` (id ``old_id``) is attached, never leaving a moment without it.

    When ``old`` is the cgroup's only program, BPF_F_REPLACE swaps them in one step; beside
    other programs ``new`` is attached first and ``old`` detached after (for a moment both filter,
    never neither; every program of the list must allow, so the order does not matter).  Shared
    by the repair code (grant/revoke) and ``cgdev attach --replace``.
    """
    ids = prog_query(cgroup_fd).ids
    if old_id not in ids:
        raise EnvError(f"program #{old_id} is no longer attached there (changed under cgdev)")
    if ids == [old_id]:
        prog_attach(cgroup_fd, new, replace=old)
    else:
        prog_attach(cgroup_fd, new)
        prog_detach(cgroup_fd, old)
