"""The lab's console: a detached process that outlives ``cgdev lab up`` and holds a pty master.

systemd as PID 1 needs /dev/console to be a terminal, so the lab's PID 1 is started on the slave
side of a pty whose master this process keeps reading (into ``console.log``) until every process
of the lab has closed the slave, which is when the lab is gone.  It double-forks so that it is
never a child of the ``up`` caller: a long-lived caller (pytest) would otherwise keep it as a
zombie after ``down``, and a zombie is a process left behind.

Usage (only by ``cgdev.lab.control``):
``python -m cgdev.lab.launcher CGROUP_DIR UNIT_DIR STATE_DIR [ROOT VAR_DIR]`` (ROOT: a stack's root).
"""

from __future__ import annotations

import contextlib
import os
import pty
import sys
from pathlib import Path

from cgdev.lab.paths import StateFiles

UNSHARE_ARGV = (
    "unshare",
    "--pid",
    "--fork",
    "--mount",
    "--cgroup",
    "--uts",
    "--ipc",
    "--net",
    "--propagation",
    "private",
    "--mount-proc",
)


def _start_namespaces(cgroup_dir: Path, nsinit_args: list[str]) -> None:
    """In the pty child: join the lab's cgroup first, so the new cgroup namespace is rooted there."""
    (cgroup_dir / "cgroup.procs").write_text("0")
    os.execvp(UNSHARE_ARGV[0], [*UNSHARE_ARGV, sys.executable, "-m", "cgdev.lab.nsinit", *nsinit_args])


def _copy_console(master: int, log: Path) -> None:
    with log.open("ab", buffering=0) as out:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every slave fd is closed, the lab is gone
                return
            if not chunk:
                return
            out.write(chunk)


def main(argv: list[str]) -> None:
    cgroup_dir, state = Path(argv[1]), StateFiles(Path(argv[3]))
    nsinit_args = [argv[2], argv[3], *argv[4:6]]
    if os.fork():
        os._exit(0)
    os.setsid()
    state.launcher_pid.write_text(str(os.getpid()))
    child, master = pty.fork()
    if child == 0:
        try:
            _start_namespaces(cgroup_dir, nsinit_args)
        finally:
            os._exit(127)
    state.unshare_pid.write_text(str(child))
    _copy_console(master, state.console_log)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)


if __name__ == "__main__":
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    main(sys.argv)
