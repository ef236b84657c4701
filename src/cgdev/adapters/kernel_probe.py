"""The kernel as the oracle for device verdicts: a forked child asks from inside a cgroup.

Differential tests compare what cgdev computes (interpreter, lifter, compiler) with what the kernel
actually decides, hundreds of thousands of times, so a probe must be fast and must never touch a
real device (``device_safety``).  The design:

* Device nodes are made by the calling process on a private tmpfs (``probe_nodes``).
* One forked child per batch moves itself into the cgroup and performs every request:
  mknod of a fresh path for ``m``; open with O_RDONLY / O_WRONLY / O_RDWR for ``r`` / ``w`` /
  ``rw``.  EPERM is the program's "deny"; any other outcome of an open (success, ENXIO, ENODEV,
  EIO ...) happened after the program allowed it.  The child reports raw errnos through a pipe and
  the parent judges them, so the judgement lives in one place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from array import array
from collections.abc import Sequence
from typing import Final

from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.device_safety import check_request, unsafe_majors
from cgdev.adapters.probe_nodes import NODE_MODE, node_dir
from cgdev.core.model import ACC_M, ACC_R, ACC_W, Request
from cgdev.errors import EnvError, NeedsRoot, NotFound

_OPEN_FLAGS: Final[dict[int, int]] = {
    ACC_R: os.O_RDONLY,
    ACC_W: os.O_WRONLY,
    ACC_R | ACC_W: os.O_RDWR,
}
_OPEN_COMMON: Final = os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
# errnos that an open or mknod can return BEFORE the device program is asked: no verdict.
_UNDECIDED: Final[frozenset[int]] = frozenset(
    {errno.EACCES, errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EMFILE, errno.ENFILE, errno.EROFS}
)

_v1_checked_pid = 0


def _check_v1_unrestricted() -> None:
    """In a hybrid layout the v1 devices controller also judges: it must allow everything here."""
    global _v1_checked_pid
    if _v1_checked_pid == os.getpid():
        return
    lines = cgroupfs.v1_devices_list(os.getpid())
    if lines is not None and lines != ["a *:* rwm"]:
        raise EnvError(
            f"this process's v1 devices cgroup restricts devices ({lines[:3]}...): probe verdicts "
            "would mix it in; run from an unrestricted v1 devices cgroup"
        )
    _v1_checked_pid = os.getpid()


def _plan(requests: Sequence[Request]) -> list[tuple[bool, str | int, int]]:
    """Per request: (is_open, path or mknod mode, open flags or dev_t) — all work done up front."""
    unsafe = unsafe_majors()
    for request in requests:
        check_request(request, unsafe)
    node_dir.ensure()
    node_dir.trim(len(requests))
    plan: list[tuple[bool, str | int, int]] = []
    for r in requests:
        if r.access == ACC_M:
            plan.append((False, NODE_MODE[r.type], os.makedev(r.major, r.minor)))
        else:
            plan.append((True, node_dir.node(r.type, r.major, r.minor), _OPEN_FLAGS[r.access] | _OPEN_COMMON))
    return plan


def _run_child(procs_fd: int, plan: list[tuple[bool, str | int, int]], fresh: str, out_fd: int) -> None:
    """The child: join the cgroup, do every request, report errnos; never returns."""
    code = 0
    try:
        try:
            os.write(procs_fd, b"0")
        except OSError as exc:
            os.write(out_fd, struct.pack("<i", exc.errno or errno.EIO))
            code = 1
            return
        results = array("H", bytes(2 * len(plan)))
        opn, close, mknod, unlink = os.open, os.close, os.mknod, os.unlink
        for i, (is_open, target, arg) in enumerate(plan):
            try:
                if is_open:
                    close(opn(target, arg))  # type: ignore[arg-type]  # the plan's open entries are (path, flags)
                else:
                    mknod(fresh, target, arg)  # type: ignore[arg-type]  # and its mknod entries (mode, rdev)
                    unlink(fresh)
            except OSError as exc:
                results[i] = exc.errno or errno.EIO
        payload = memoryview(struct.pack("<i", 0) + results.tobytes())
        while payload:
            payload = payload[os.write(out_fd, payload) :]
    except BaseException:
        code = 2
    finally:
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _verdict(request: Request, err: int) -> bool:
    if err == 0:
        return True
    if err == errno.EPERM:
        return False
    if request.access == ACC_M or err in _UNDECIDED:
        raise EnvError(f"probe of {request} gave no verdict (not success, not EPERM): {bpf.errno_text(err)}")
    return True  # ENXIO, ENODEV, EIO ...: the program allowed it, then no driver answered


def kernel_verdicts(cgroup_path: str, requests: Sequence[Request]) -> list[bool]:
    """The kernel's verdict (True = allowed) for each request, made from inside ``cgroup_path``.

    The verdict is the whole kernel's: every device program on the path from the cgroup2 root down
    to ``cgroup_path``.  Raises ValueError for requests it refuses to make (unsafe opens, numbers
    mknod cannot encode) before touching anything.
    """
    if not requests:
        return []
    plan = _plan(requests)
    _check_v1_unrestricted()
    try:
        procs_fd = os.open(os.path.join(cgroup_path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"cgroup {cgroup_path} not found") from None
    except PermissionError:
        raise NeedsRoot(f"moving a process into {cgroup_path} needs root") from None
    fresh = f"{node_dir.path}/fresh-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):  # left over only if a child was killed mid-request
        os.unlink(fresh)
    try:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:  # EAGAIN/ENOMEM: no child, so nobody else will close the pipe
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(read_fd)
            _run_child(procs_fd, plan, fresh, write_fd)
        os.close(write_fd)
        try:
            data = _read_all(read_fd)
        finally:
            os.close(read_fd)
            _reap(pid)
    finally:
        os.close(procs_fd)
    return _decode(requests, data, cgroup_path)


def _reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise EnvError(f"probe child {pid} failed (wait status {status:#x})")


def _decode(requests: Sequence[Request], data: bytes, cgroup_path: str) -> list[bool]:
    if len(data) < 4:
        raise EnvError(f"probe child reported nothing for {cgroup_path}")
    (move_err,) = struct.unpack_from("<i", data)
    if move_err:
        raise EnvError(f"probe child could not join {cgroup_path}: {bpf.errno_text(move_err)}")
    errs = array("H")
    errs.frombytes(data[4:])
    if len(errs) != len(requests):
        raise EnvError(f"probe child reported {len(errs)} verdicts for {len(requests)} requests")
    return [_verdict(r, e) for r, e in zip(requests, errs, strict=True)]
