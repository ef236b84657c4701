"""The running lab, as seen from the host: found, verified, entered and asked for its systemd version.

A lab is identified by the pid of its systemd as seen from the host (``pid1``) and the host path
of the cgroup that is the root of its cgroup namespace.  Both are written to the state dir on
start (``control``) and re-verified on every lookup (comm is ``systemd`` and it sits in our
cgroup), so a recycled pid can never make ``down`` kill a stranger.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from cgdev.errors import EnvError
from cgdev.lab.paths import ADMIN_CGROUP, StateFiles, lab_timeout
from cgdev.lab.processes import alive, comm, kill_cgroup, read_int, remove_tree_when_empty, unified_cgroup

# What a command run inside the lab sees: a clean environment, no pager, no colours.
LAB_ENV: Final[dict[str, str]] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
NSENTER_FLAGS: Final = ("-m", "-p", "-C", "-u", "-i", "-n")
SYSTEMD_PROPERTY: Final = (
    "busctl",
    "--system",
    "--timeout=5",
    "get-property",
    "org.freedesktop.systemd1",
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1.Manager",
)
# After a timeout the command's leaf is killed; a process it started elsewhere (a `runc exec`
# process lives in the container's cgroup) may still hold our pipes: wait this long, no more.
DRAIN_AFTER_KILL_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Lab:
    """A running lab, as seen from the host."""

    pid1: int
    cgroup_root: Path
    state: StateFiles = field(default_factory=StateFiles)

    @property
    def bus_address(self) -> str:
        """The lab's system bus, reachable from the host through PID 1's root directory."""
        return f"unix:path=/proc/{self.pid1}/root/run/dbus/system_bus_socket"

    @property
    def admin_cgroup(self) -> Path:
        return self.cgroup_root / ADMIN_CGROUP

    def host_cgroup(self, lab_path: str) -> Path:
        """The host path of a cgroup the lab names ``lab_path`` (``/system.slice/x.scope``)."""
        return self.cgroup_root / lab_path.lstrip("/")

    def nsenter_argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid1), *NSENTER_FLAGS, "--", *argv]

    def exec_cgroup(self, pid: int) -> Path:
        """Each command entering the lab gets its own leaf under the admin cgroup.

        nsenter joins the cgroup namespace but not a cgroup: a process outside the lab's subtree
        would see its own cgroup as ``/..`` from inside, which breaks systemctl and runtimes.  A
        leaf per command also lets a timed-out command be killed with everything it started.
        """
        return self.admin_cgroup / f"exec-{pid}"

    def enter_admin_cgroup(self) -> None:
        """Move the calling process into its own leaf of the admin cgroup (before nsenter)."""
        leaf = self.exec_cgroup(os.getpid())
        leaf.mkdir(parents=True, exist_ok=True)
        fd = os.open(leaf / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def exec(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdout: int | IO[Any] = subprocess.PIPE,
        stderr: int | IO[Any] = subprocess.PIPE,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the lab's namespaces (mount, pid, cgroup, uts, ipc, net).

        ``check`` raises ``EnvError`` naming the command and its last line of stderr.  A command
        that outlives ``timeout`` is killed inside the lab too, with whatever it started.
        """
        limit = lab_timeout() if timeout is None else timeout
        with subprocess.Popen(
            self.nsenter_argv(argv),
            env=LAB_ENV,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            text=True,
            preexec_fn=self.enter_admin_cgroup,
        ) as proc:
            leaf = self.exec_cgroup(proc.pid)
            try:
                out, err = proc.communicate(input, timeout=limit)
            except subprocess.TimeoutExpired:
                kill_cgroup(leaf)
                proc.kill()
                _drain_and_close(proc, DRAIN_AFTER_KILL_S)
                with contextlib.suppress(EnvError):
                    remove_tree_when_empty(leaf, 2.0)
                raise EnvError(f"lab exec: {' '.join(argv)!r} did not finish within {limit:g}s") from None
        with contextlib.suppress(OSError):  # still busy if the command left a process running
            leaf.rmdir()
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and done.returncode != 0:
            lines = (done.stderr or "").strip().splitlines() or [f"exit status {done.returncode}"]
            raise EnvError(f"lab exec: {' '.join(argv)!r} failed: {lines[-1]}")
        return done

    def console_tail(self, lines: int = 5) -> str:
        return console_tail(self.state, lines)


def _drain_and_close(proc: subprocess.Popen[str], timeout: float) -> None:
    """Collect what a killed command wrote for at most ``timeout``, then close our pipe ends.

    ``communicate()`` without a timeout waits for EOF, i.e. for every process holding the pipe,
    including ones outside the killed cgroup; nsenter itself is dead, so ``wait`` is prompt.
    """
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def console_tail(state: StateFiles, lines: int = 5) -> str:
    """The last lines systemd wrote to the lab's console (for error messages)."""
    try:
        text = state.console_log.read_text(errors="replace")
    except OSError:
        return ""
    tail = [line.strip() for line in text.replace("\r", "").splitlines() if line.strip()][-lines:]
    return " | ".join(tail)


def find_lab(state: StateFiles | None = None) -> Lab | None:
    """The running lab, or None; a pid whose process is not our systemd is ignored."""
    state = state or StateFiles()
    pid1 = read_int(state.pid1)
    try:
        cgroup_root = Path(state.cgroup_root.read_text().strip())
    except OSError:
        return None
    if pid1 is None or not alive(pid1) or comm(pid1) != "systemd":
        return None
    if unified_cgroup(pid1) != f"/{cgroup_root.name}/init.scope":
        return None
    return Lab(pid1=pid1, cgroup_root=cgroup_root, state=state)


def require_lab() -> Lab:
    from cgdev.lab.paths import current_stack

    lab = find_lab()
    if lab is None:
        stack = current_stack()
        option = "" if stack.is_host else f" --stack {stack.name}"
        raise EnvError(f"the lab is not running: start it with `cgdev lab up{option}`")
    return lab


def system_version(lab: Lab, *, check: bool = True) -> str | None:
    """systemd's Version property, read over the lab's D-Bus system bus (proves the bus works).

    ``check=False``: None when the bus does not answer, in time or at all (busctl gives up after
    5 s, the exec after 10 s).
    """
    try:
        done = lab.exec([*SYSTEMD_PROPERTY, "Version"], check=check, timeout=10)
    except EnvError:
        if check:
            raise
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip().split(" ", 1)[-1].strip('"')
