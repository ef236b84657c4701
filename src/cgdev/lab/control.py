"""The lab's lifecycle: preflight, up, down and status, and starting and stopping its systemd.

This is what the CLI, the pytest fixture, the scenarios and the demo call; each returns plain
values.  ``up`` and ``down`` are idempotent and take the machine-wide lab lock; ``down`` deletes
every container (``containers``) before it stops the lab and then reports what is left
(``leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from cgdev.adapters import cgroupfs
from cgdev.errors import EnvError, NeedsRoot
from cgdev.lab import bundle, containers, engine_record, install, leftovers
from cgdev.lab.instance import Lab, console_tail, find_lab, system_version
from cgdev.lab.lock import lab_lock
from cgdev.lab.paths import StateFiles, current_stack, lab_cgroup, lab_timeout
from cgdev.lab.processes import (
    alive,
    children,
    cmdline,
    comm,
    kill_cgroup,
    kill_if,
    read_int,
    remove_tree_when_empty,
    unified_cgroup,
    wait_until,
)
from cgdev.lab.runtime import Runtime

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class UpReport:
    lab: Lab
    runtimes: dict[str, Runtime]
    started: bool  # False: it was already running
    seconds: float
    systemd_version: str
    stack: str = "host"


def preflight() -> None:
    """The one-line reasons the lab cannot run here, before anything is changed."""
    require_root()
    cgroupfs.cgroup2_mount()  # EnvError without cgroup2
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        raise EnvError("unshare/nsenter not found: install util-linux")


def up(progress: Progress = _quiet, *, timeout: float | None = None) -> UpReport:
    limit = lab_timeout() if timeout is None else timeout
    started_at = time.monotonic()
    preflight()
    with lab_lock(limit):
        runtimes = install.prepare(limit, progress)
        bundle.ensure_rootfs()
        lab = find_lab()
        started = lab is None
        if lab is None:
            if current_stack().state_dir.exists() or lab_cgroup().exists():
                progress("cleaning up a previous lab that did not stop cleanly")
                _stop(limit)
            progress("starting systemd in private namespaces")
            lab = start_systemd(limit)
        version = system_version(lab) or "?"
        if current_stack().root_dir is not None:
            runtimes = lab_runtimes(lab, runtimes)
    return UpReport(lab, runtimes, started, time.monotonic() - started_at, version, current_stack().name)


def lab_runtimes(lab: Lab, runtimes: dict[str, Runtime]) -> dict[str, Runtime]:
    """The versions the runtime binaries report inside the running lab (a stack's, not the host's)."""
    from dataclasses import replace

    from cgdev.lab.runtime import version_of

    found = {}
    for name, rt in runtimes.items():
        done = lab.exec([rt.path, "--version"], check=False, timeout=10)
        version = version_of(done.stdout) if done.returncode == 0 else None
        if version is None:
            raise EnvError(f"{rt.path} --version failed inside the lab: {done.stderr.strip()[-200:]}")
        found[name] = replace(rt, version=version)
    return found


@dataclass(frozen=True, slots=True)
class DownReport:
    was_running: bool
    deleted: list[str]
    leftovers: list[str]
    seconds: float
    # Containers that could not be deleted one by one (stopping the lab killed them anyway).
    errors: list[str] = field(default_factory=list)


def _stop(limit: float, errors: list[str] | None = None) -> list[str]:
    """Delete every container, then stop the lab: a container that will not go never stops ``down``.

    Each failed delete is suppressed and its one-line message appended to ``errors``.
    """
    errors = [] if errors is None else errors
    lab = find_lab()
    deleted = []
    if lab is not None:
        from cgdev.lab import engines

        # First: the lab's runtimes list the engines' containers too (podman's crun ones are in
        # /run/crun) and deleting them under the engine would leave it a dangling record.
        deleted += engines.remove_all(lab, errors)
        deleted += containers.delete_all(lab, errors)
    stop_systemd(limit)
    for leftover in (current_stack().var_dir / "bundles").glob("*"):
        bundle.remove_bundle(leftover.name)
    return deleted


def down(progress: Progress = _quiet, *, timeout: float | None = None) -> DownReport:
    """Stop the lab and everything in it; ``leftovers`` lists anything that survived (should be [])."""
    limit = lab_timeout() if timeout is None else timeout
    started_at = time.monotonic()
    require_root()
    errors: list[str] = []
    with lab_lock(limit):
        was_running = find_lab() is not None
        progress("stopping the lab" if was_running else "the lab is not running; cleaning up")
        deleted = _stop(limit, errors)
        found = leftovers.leftovers(limit)
    return DownReport(was_running, deleted, found, time.monotonic() - started_at, errors)


@dataclass(frozen=True, slots=True)
class Status:
    running: bool
    stack: str = "host"
    root: dict[str, Any] | None = None  # a stack root's stamp: suite, mirror, build date, packages
    pid1: int | None = None
    cgroup_root: str | None = None
    bus_address: str | None = None
    systemd_version: str | None = None
    runtimes: dict[str, str] = field(default_factory=dict)
    containers: list[dict[str, Any]] = field(default_factory=list)
    # podman / containerd containers (``engines``): engine, name, id, runtime, driver, cgroup
    engine_containers: list[dict[str, Any]] = field(default_factory=list)


def status() -> Status:
    stack = current_stack()
    root = None
    if stack.root_dir is not None:
        from cgdev.lab.roots import read_stamp, stamp_json

        stamp = read_stamp(stack.root_dir)
        root = None if stamp is None else {"path": str(stack.root_dir), **stamp_json(stamp)}
    found = install.installed_runtimes() if stack.root_dir is None or root else {}
    lab = find_lab()
    if lab is not None and stack.root_dir is not None:
        with contextlib.suppress(EnvError):
            found = lab_runtimes(lab, found)
    runtimes = {name: f"{rt.version} ({rt.path})" for name, rt in found.items()}
    if lab is None:
        return Status(running=False, stack=stack.name, root=root, runtimes=runtimes)
    return Status(
        running=True,
        stack=stack.name,
        root=root,
        pid1=lab.pid1,
        cgroup_root=str(lab.cgroup_root),
        bus_address=lab.bus_address,
        systemd_version=system_version(lab, check=False),
        runtimes=runtimes,
        containers=[
            {"id": c.id, "runtime": c.runtime, "driver": c.driver, "cgroup": c.cgroup}
            for c in containers.containers()
        ],
        engine_containers=[
            {
                "engine": c.engine.value,
                "name": c.name,
                "id": c.id,
                "runtime": c.runtime,
                "driver": c.driver,
                "cgroup": c.cgroup,
            }
            for c in engine_record.load_all(lab.state)
        ],
    )


# --- starting and stopping systemd in its namespaces ------------------------------------------

READY_STATES: Final = frozenset({"running", "degraded"})
LAST_CONSOLE_LOG: Final = "console.last.log"  # in the stack's var dir


def require_root() -> None:
    if os.geteuid() != 0:
        raise NeedsRoot("the lab needs root (namespaces, cgroups, BPF): run it with sudo")


def unit_dir() -> str:
    """The lab's unit files are package data; systemd reads them straight from the package.

    A stack's lab sees only its root and its var dir: the units are copied there afresh.
    """
    package_units = resources.files("cgdev.lab") / "units"
    stack = current_stack()
    if stack.root_dir is None:
        return str(package_units)
    copy = stack.var_dir / "units"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for unit in package_units.iterdir():
        if unit.is_file():
            (copy / unit.name).write_text(unit.read_text())
    return str(copy)


def start_systemd(timeout: float) -> Lab:
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
            stop_systemd(min(timeout, 10.0))
        if error is exc:
            raise
        raise error from None


def _start(timeout: float) -> Lab:
    state = StateFiles()
    stack = current_stack()
    root = lab_cgroup()
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    state.containers.mkdir(exist_ok=True)
    root.mkdir(exist_ok=True)
    state.cgroup_root.write_text(f"{root}\n")
    in_root = [] if stack.root_dir is None else [str(stack.root_dir), str(stack.var_dir)]
    stack.var_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "cgdev.lab.launcher", str(root), unit_dir(), str(stack.state_dir), *in_root],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=timeout,
    )

    def systemd_started() -> bool:
        unshare = read_int(state.unshare_pid)
        launcher = read_int(state.launcher_pid)
        if launcher is not None and not alive(launcher):
            raise EnvError(f"the lab's launcher exited early: {console_tail(state) or 'no console output'}")
        if unshare is None:
            return False
        return any(comm(child) == "systemd" for child in children(unshare))

    if not wait_until(systemd_started, timeout):
        raise EnvError(f"systemd did not start within {timeout:g}s: {console_tail(state) or 'no output'}")
    unshare = read_int(state.unshare_pid)
    assert unshare is not None
    pid1 = next(child for child in children(unshare) if comm(child) == "systemd")
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
    launcher = read_int(StateFiles().launcher_pid)
    home = unified_cgroup(launcher) if launcher else None
    if home is None:
        return
    with contextlib.suppress(OSError):
        (Path(cgroupfs.cgroup2_mount()) / home.lstrip("/") / "cgroup.procs").write_text(str(unshare))


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


def _is_systemd(pid: int) -> bool:
    """PID 1 is ``systemd``, or ``systemd-shutdow(n)`` once ``systemctl exit`` reached its end."""
    return (comm(pid) or "").startswith("systemd")


def _is_unshare(pid: int) -> bool:
    """Our unshare, not any: it runs ``python -m cgdev.lab.nsinit`` (see ``launcher``)."""
    return comm(pid) == "unshare" and "cgdev.lab.nsinit" in cmdline(pid)


def _is_launcher(pid: int) -> bool:
    return "cgdev.lab.launcher" in cmdline(pid)


def stop_systemd(timeout: float) -> None:
    """Stop what ``start_systemd`` started, and only that: graceful ``systemctl exit``, SIGKILL as a fallback.

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
        wait_until(lambda: not alive(lab.pid1) or comm(lab.pid1) == "systemd-shutdow", grace)
        if not wait_until(lambda: not alive(lab.pid1), 1.0):
            kill_cgroup(lab.cgroup_root)
            kill_if(lab.pid1, _is_systemd)
            wait_until(lambda: not alive(lab.pid1), grace)
    else:
        # No lab answers to the state files (a failed start, a stale dir): whatever runs in our
        # cgroup is left over from it, systemd included when its pid was never recorded.
        leftover_root = _recorded_root(state)
        if leftover_root is not None:
            kill_cgroup(leftover_root)
    unshare, launcher = read_int(state.unshare_pid), read_int(state.launcher_pid)
    if not wait_until(lambda: not alive(unshare), grace):
        kill_if(unshare, _is_unshare)
    if not wait_until(lambda: not alive(launcher), grace):
        kill_if(launcher, _is_launcher)
    wait_until(lambda: not alive(launcher) and not alive(unshare), grace)
    root = _recorded_root(state)
    if root is not None:
        remove_tree_when_empty(root, grace)
    var = current_stack().var_dir
    if state.console_log.exists():
        with contextlib.suppress(OSError):
            var.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state.console_log, var / LAST_CONSOLE_LOG)
    shutil.rmtree(state.root, ignore_errors=True)


def _recorded_root(state: StateFiles) -> Path | None:
    try:
        return Path(state.cgroup_root.read_text().strip())
    except OSError:
        candidate = lab_cgroup()
        return candidate if candidate.exists() else None
