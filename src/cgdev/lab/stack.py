"""The running lab: systemd as PID 1 of private namespaces, found, started, entered and stopped.

A lab is identified by the pid of its systemd as seen from the host (``pid1``) and the host path
of the cgroup that is the root of its cgroup namespace.  Both are written to the state dir on
start and re-verified on every lookup (comm is ``systemd`` and it sits in our cgroup), so a
recycled pid can never make ``down`` kill a stranger.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, Final

from cgdev.errors import EnvError, NeedsRoot
from cgdev.lab.paths import ADMIN_CGROUP, CGROUP_NAME, LOCK_FILE, STATE_DIR, VAR_DIR, StateFiles, lab_timeout

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
READY_STATES: Final = frozenset({"running", "degraded"})
SYSTEMD_PROPERTY: Final = (
    "busctl",
    "--system",
    "--timeout=5",
    "get-property",
    "org.freedesktop.systemd1",
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1.Manager",
)
LAST_CONSOLE_LOG: Final = VAR_DIR / "console.last.log"
# After a timeout the command's leaf is killed; a process it started elsewhere (a `runc exec`
# process lives in the container's cgroup) may still hold our pipes: wait this long, no more.
DRAIN_AFTER_KILL_S: Final = 2.0


def cgroup2_mount() -> Path:
    """Where the host mounts cgroup2 (pure v2: /sys/fs/cgroup; hybrid: /sys/fs/cgroup/unified)."""
    from cgdev.adapters.cgroupfs import cgroup2_mount as discover

    return Path(discover())


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes: every wait in the lab is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _unified_cgroup(pid: int) -> str | None:
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
                    remove_cgroup_tree(leaf, 2.0)
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


def kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process in a cgroup subtree at once (cgroup.kill, Linux 5.14+)."""
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")


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
    pid1 = _read_int(state.pid1)
    try:
        cgroup_root = Path(state.cgroup_root.read_text().strip())
    except OSError:
        return None
    if pid1 is None or not alive(pid1) or _comm(pid1) != "systemd":
        return None
    if _unified_cgroup(pid1) != f"/{cgroup_root.name}/init.scope":
        return None
    return Lab(pid1=pid1, cgroup_root=cgroup_root, state=state)


def require_lab() -> Lab:
    lab = find_lab()
    if lab is None:
        raise EnvError("the lab is not running: start it with `cgdev lab up`")
    return lab


def require_root() -> None:
    if os.geteuid() != 0:
        raise NeedsRoot("the lab needs root (namespaces, cgroups, BPF): run it with sudo")


_lock_depth = 0  # how many lab_lock blocks of this process are open (the lock is re-entrant)


@contextlib.contextmanager
def lab_lock(timeout: float | None = None) -> Iterator[None]:
    """One lab per machine: ``up``, ``down`` and container changes take this lock in turn.

    Re-entrant within a process (``down`` deletes containers under the lock it holds): flock
    conflicts between two opens of the file even in one process, so a nested take would wait
    for itself until the timeout.
    """
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    limit = lab_timeout() if timeout is None else timeout
    with open(LOCK_FILE, "a+") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not wait_until(take, limit, 0.1):
            raise EnvError(f"another cgdev lab command holds {LOCK_FILE} (waited {limit:g}s)")
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def unit_dir() -> str:
    """The lab's unit files are package data; systemd reads them straight from the package."""
    return str(resources.files("cgdev.lab") / "units")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def start(timeout: float) -> Lab:
    """Launch systemd in fresh namespaces on a fresh cgroup and wait until it and its bus answer.

    On any failure what was started so far (launcher, unshare, systemd, the cgroup, the state
    dir) is stopped again before the one-line ``EnvError`` is raised.
    """
    try:
        return _start(timeout)
    except BaseException as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            error: BaseException = EnvError(f"the lab's launcher failed with exit status {exc.returncode}")
        elif isinstance(exc, subprocess.TimeoutExpired):
            error = EnvError(f"the lab's launcher did not return within {timeout:g}s")
        elif isinstance(exc, OSError):
            error = EnvError(f"starting the lab: {exc}")
        else:
            error = exc
        with contextlib.suppress(Exception):
            stop(min(timeout, 10.0))
        if error is exc:
            raise
        raise error from None


def _start(timeout: float) -> Lab:
    state = StateFiles()
    root = cgroup2_mount() / CGROUP_NAME
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state.containers.mkdir(exist_ok=True)
    root.mkdir(exist_ok=True)
    state.cgroup_root.write_text(f"{root}\n")
    subprocess.run(
        [sys.executable, "-m", "cgdev.lab.launcher", str(root), unit_dir(), str(STATE_DIR)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=timeout,
    )

    def systemd_started() -> bool:
        unshare = _read_int(state.unshare_pid)
        launcher = _read_int(state.launcher_pid)
        if launcher is not None and not alive(launcher):
            raise EnvError(f"the lab's launcher exited early: {console_tail(state) or 'no console output'}")
        if unshare is None:
            return False
        return any(_comm(child) == "systemd" for child in _children(unshare))

    if not wait_until(systemd_started, timeout):
        raise EnvError(f"systemd did not start within {timeout:g}s: {console_tail(state) or 'no output'}")
    unshare = _read_int(state.unshare_pid)
    assert unshare is not None
    pid1 = next(child for child in _children(unshare) if _comm(child) == "systemd")
    state.pid1.write_text(f"{pid1}\n")
    _move_out_of_lab_root(unshare)
    lab = Lab(pid1=pid1, cgroup_root=root, state=state)
    wait_ready(lab, timeout)
    return lab


def _move_out_of_lab_root(unshare: int) -> None:
    """unshare waits for PID 1 in the namespace's root cgroup; hand it back to the launcher's.

    Left there it would be the one process systemd cannot move ("Couldn't move remaining
    userspace processes") and, on a pure v2 host, it would stop systemd enabling controllers.
    """
    launcher = _read_int(StateFiles().launcher_pid)
    home = _unified_cgroup(launcher) if launcher else None
    if home is None:
        return
    with contextlib.suppress(OSError):
        (cgroup2_mount() / home.lstrip("/") / "cgroup.procs").write_text(str(unshare))


def wait_ready(lab: Lab, timeout: float) -> None:
    """Ready = the manager finished its boot transaction and owns org.freedesktop.systemd1 on the bus."""
    last = ""

    def ready() -> bool:
        nonlocal last
        if not alive(lab.pid1):
            raise EnvError(f"the lab's systemd exited: {lab.console_tail() or 'no console output'}")
        state = lab.exec(["systemctl", "is-system-running"], check=False, timeout=timeout)
        last = state.stdout.strip() or state.stderr.strip()
        if last not in READY_STATES:
            return False
        return system_version(lab, check=False) is not None

    if not wait_until(ready, timeout, 0.05):
        raise EnvError(
            f"the lab's systemd is not ready after {timeout:g}s (state {last!r}): {lab.console_tail()}"
        )


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


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _kill_if(pid: int | None, is_ours: Callable[[int], bool]) -> None:
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


def _is_systemd(pid: int) -> bool:
    """PID 1 is ``systemd``, or ``systemd-shutdow(n)`` once ``systemctl exit`` reached its end."""
    return (_comm(pid) or "").startswith("systemd")


def _is_unshare(pid: int) -> bool:
    """Our unshare, not any: it runs ``python -m cgdev.lab.nsinit`` (see ``launcher``)."""
    return _comm(pid) == "unshare" and "cgdev.lab.nsinit" in _cmdline(pid)


def _is_launcher(pid: int) -> bool:
    return "cgdev.lab.launcher" in _cmdline(pid)


def stop(timeout: float) -> None:
    """Stop what ``start`` started, and only that: graceful ``systemctl exit``, SIGKILL as a fallback.

    PID 1 leaving its PID namespace kills every process in it (containers included); the mounts
    lived in its private mount namespace and go with it; removing the cgroup subtree releases
    every BPF program attached inside it.
    """
    state = StateFiles()
    lab = find_lab(state)
    grace = min(timeout, 10.0)
    if lab is not None:
        # Commands left running by exec (a timed-out or backgrounded one) would make systemd's
        # shutdown wait for them; they are ours, so they go first.
        kill_cgroup(lab.admin_cgroup)
        with contextlib.suppress(EnvError):  # a manager that does not answer is killed below
            lab.exec(["systemctl", "--no-block", "exit"], check=False, timeout=grace)
        # Once PID 1 is systemd-shutdown every unit is stopped; it may then wait up to 90 s for
        # a process that ignores SIGTERM.  Nothing of value is left: give it a second, then kill.
        wait_until(lambda: not alive(lab.pid1) or _comm(lab.pid1) == "systemd-shutdow", grace)
        if not wait_until(lambda: not alive(lab.pid1), 1.0):
            kill_cgroup(lab.cgroup_root)
            _kill_if(lab.pid1, _is_systemd)
            wait_until(lambda: not alive(lab.pid1), grace)
    else:
        # No lab answers to the state files (a failed start, a stale dir): whatever runs in our
        # cgroup is left over from it, systemd included when its pid was never recorded.
        leftover_root = _recorded_root(state)
        if leftover_root is not None:
            kill_cgroup(leftover_root)
    unshare, launcher = _read_int(state.unshare_pid), _read_int(state.launcher_pid)
    if not wait_until(lambda: not alive(unshare), grace):
        _kill_if(unshare, _is_unshare)
    if not wait_until(lambda: not alive(launcher), grace):
        _kill_if(launcher, _is_launcher)
    wait_until(lambda: not alive(launcher) and not alive(unshare), grace)
    root = _recorded_root(state)
    if root is not None:
        remove_cgroup_tree(root, grace)
    if state.console_log.exists():
        with contextlib.suppress(OSError):
            VAR_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state.console_log, LAST_CONSOLE_LOG)
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def _recorded_root(state: StateFiles) -> Path | None:
    try:
        return Path(state.cgroup_root.read_text().strip())
    except OSError:
        candidate = cgroup2_mount() / CGROUP_NAME
        return candidate if candidate.exists() else None


def remove_cgroup_tree(root: Path, timeout: float) -> None:
    """rmdir depth-first, retrying while the kernel reaps the last tasks of each cgroup."""

    def removed() -> bool:
        if not root.exists():
            return True
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        return not root.exists()

    if not wait_until(removed, timeout, 0.1):
        raise EnvError(f"could not remove {root}: processes remain in it (see {root}/**/cgroup.procs)")
