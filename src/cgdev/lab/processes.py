"""Processes and cgroups the lab started: bounded waits, /proc reads, and kills that hit only ours.

Pids get recycled, so a kill is always guarded by a check that the pid is still the process we
started (``kill_if``, through a pidfd); every wait is bounded (``wait_until``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from cgdev.errors import EnvError


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes: every wait in the lab is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def unified_cgroup(pid: int) -> str | None:
    """The host's cgroup2 path of ``pid``, or None when it is gone or unreadable."""
    from cgdev.adapters.cgroupfs import process_cgroup
    from cgdev.errors import CgdevError

    try:
        return process_cgroup(pid)
    except CgdevError:
        return None


def alive(pid: int | None) -> bool:
    """True for a live process; a zombie does not count (it holds nothing but its pid)."""
    if pid is None:
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def kill_if(pid: int | None, is_ours: Callable[[int], bool]) -> None:
    """SIGKILL ``pid`` only while it is still the process we started (pids get recycled).

    The pid is pinned with a pidfd before it is checked, and the signal goes through that
    pidfd: a process that exits after the check cannot have its pid reused for the kill.
    """
    if pid is None or not alive(pid):
        return
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd support (Linux < 5.3): check, then kill by pid
        if is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return
    try:
        if is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)


def kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process in a cgroup subtree at once (cgroup.kill, Linux 5.14+)."""
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")


def remove_tree_when_empty(root: Path, timeout: float) -> None:
    """rmdir a cgroup tree depth-first, retrying while the kernel reaps the last tasks of each cgroup.

    Programs attached inside go with their cgroups (unlike ``scratch_cgroup.detach_and_remove_tree``,
    which detaches them first and does not wait for processes).
    """

    def removed() -> bool:
        if not root.exists():
            return True
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        return not root.exists()

    if not wait_until(removed, timeout, 0.1):
        raise EnvError(f"could not remove {root}: processes remain in it (see {root}/**/cgroup.procs)")
