"""The lab's operations: up, down, status, and containers run and deleted through it.

This is what the CLI, the pytest fixture, the scenarios and the demo call; each returns plain
values.  ``up`` and ``down`` are idempotent; they and every container change (start, delete)
take the machine-wide lab lock, so a container is never started or deleted while ``down`` runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgdev.errors import BusUnreachable, CgdevError, EnvError, InputError, NotFound
from cgdev.lab import bundle, install, runtime, stack
from cgdev.lab.paths import CGROUP_NAME, STATE_DIR, VAR_DIR, StateFiles, lab_timeout
from cgdev.lab.runtime import Container, Driver, Runtime

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class UpReport:
    lab: stack.Lab
    runtimes: dict[str, Runtime]
    started: bool  # False: it was already running
    seconds: float
    systemd_version: str


def preflight() -> None:
    """The one-line reasons the lab cannot run here, before anything is changed."""
    import shutil

    stack.require_root()
    stack.cgroup2_mount()  # EnvError without cgroup2
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        raise EnvError("unshare/nsenter not found: install util-linux")


def up(progress: Progress = _quiet, *, timeout: float | None = None) -> UpReport:
    limit = lab_timeout() if timeout is None else timeout
    started_at = time.monotonic()
    preflight()
    with stack.lab_lock(limit):
        runtimes = install.prepare(limit, progress)
        bundle.ensure_rootfs()
        lab = stack.find_lab()
        started = lab is None
        if lab is None:
            if STATE_DIR.exists() or (stack.cgroup2_mount() / CGROUP_NAME).exists():
                progress("cleaning up a previous lab that did not stop cleanly")
                _stop(limit)
            progress("starting systemd in private namespaces")
            lab = stack.start(limit)
        version = stack.system_version(lab) or "?"
    return UpReport(lab, runtimes, started, time.monotonic() - started_at, version)


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
    deleted: list[str] = []
    tried: set[tuple[str, str]] = set()  # (runtime family, id): each container is tried once
    lab = stack.find_lab()
    if lab is not None:
        for record in containers():
            tried.add((runtime.family_of(record.runtime), record.id))
            try:
                _delete(lab, record)
            except CgdevError as exc:
                errors.append(f"{record.id}: {exc}")
            else:
                deleted.append(record.id)
        deleted += _delete_unrecorded(lab, errors, tried)
    stack.stop(limit)
    for leftover in (VAR_DIR / "bundles").glob("*"):
        bundle.remove_bundle(leftover.name)
    return deleted


def _delete_unrecorded(lab: stack.Lab, errors: list[str], tried: set[tuple[str, str]]) -> list[str]:
    """Containers a runtime knows but we have no record of (a run that failed half-way).

    systemd's shutdown can wait a long time for a container's PID 1 that ignores SIGTERM, so
    every container is deleted before the manager is asked to exit, with the cgroup driver it
    was created with.  crun and crun-1.8.1 share one state dir (/run/crun), and a recorded
    container that would not go is listed too: each (state dir, id) is tried once.
    """
    deleted: list[str] = []
    for rt in install.installed_runtimes().values():
        try:
            ids = runtime.listed(lab, rt)
        except CgdevError as exc:
            errors.append(f"{rt.name} list: {exc}")
            continue
        for container_id in ids:
            if (rt.family, container_id) in tried:
                continue
            tried.add((rt.family, container_id))
            try:
                _remove(lab, rt, runtime.state_driver(lab, rt, container_id), container_id)
            except CgdevError as exc:
                errors.append(f"{container_id}: {exc}")
            else:
                deleted.append(container_id)
    return deleted


def down(progress: Progress = _quiet, *, timeout: float | None = None) -> DownReport:
    """Stop the lab and everything in it; ``leftovers`` lists anything that survived (should be [])."""
    limit = lab_timeout() if timeout is None else timeout
    started_at = time.monotonic()
    stack.require_root()
    errors: list[str] = []
    with stack.lab_lock(limit):
        was_running = stack.find_lab() is not None
        progress("stopping the lab" if was_running else "the lab is not running; cleaning up")
        deleted = _stop(limit, errors)
        found = leftovers(limit)
    return DownReport(was_running, deleted, found, time.monotonic() - started_at, errors)


def leftovers(timeout: float = 5.0) -> list[str]:
    """Anything of the lab still on the machine: processes, cgroups, mounts, state, hook programs."""
    root = stack.cgroup2_mount() / CGROUP_NAME
    found: list[str] = []
    if root.exists():
        found.append(f"cgroup {root}")
    if STATE_DIR.exists():
        found.append(f"state dir {STATE_DIR}")
    found += [f"process {pid} ({name})" for pid, name in _lab_processes()]
    mountinfo = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mountinfo.splitlines() if "cgdev-lab" in line]
    found += _hook_programs_left(timeout)
    return found


def _lab_processes() -> list[tuple[int, str]]:
    """Host processes in the lab's cgroup, or started by it (launcher, nsinit, unshare)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cgroup = (proc / "cgroup").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            started_by_us = "cgdev.lab.launcher" in cmdline or "cgdev.lab.nsinit" in cmdline
            in_lab = f"::/{CGROUP_NAME}/" in cgroup or f"::/{CGROUP_NAME}\n" in cgroup
            if (in_lab or started_by_us) and stack.alive(int(proc.name)):
                out.append((int(proc.name), cmdline.strip()[:60]))
    return out


def _hook_programs_left(timeout: float) -> list[str]:
    """hook-sim programs live only as long as their cgroup; the kernel frees them soon after rmdir.

    Reads the program table with bpftool when it is installed (the check is then real, not assumed).
    """
    import json
    import shutil
    import subprocess

    if shutil.which("bpftool") is None:
        return []
    from cgdev.lab.hooksim import PROGRAM_NAME

    names: list[str] = []

    def gone() -> bool:
        done = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=10)
        progs = json.loads(done.stdout or "[]") if done.returncode == 0 else []
        names[:] = [f"bpf program {p['id']} ({PROGRAM_NAME})" for p in progs if p.get("name") == PROGRAM_NAME]
        return not names

    stack.wait_until(gone, timeout, 0.1)
    return names


# -- containers ---------------------------------------------------------------------------------


def containers(state: StateFiles | None = None) -> list[Container]:
    state = state or StateFiles()
    records = []
    for path in sorted(state.containers.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            records.append(Container.from_json(path.read_text()))
    return records


def find_container(container_id: str) -> Container:
    for record in containers():
        if record.id == container_id:
            return record
    raise NotFound(f"container {container_id!r} is not a lab container (see `cgdev lab status`)")


def runtime_named(name: str, available: dict[str, Runtime] | None = None) -> Runtime:
    known = install.installed_runtimes() if available is None else available
    name = runtime.RUNTIME_ALIASES.get(name, name)
    if name in known:
        return known[name]
    if name not in runtime.RUNTIME_NAMES:
        raise InputError(f"--runtime: {name!r} is not one of {', '.join(runtime.RUNTIME_NAMES)}")
    raise EnvError(f"runtime {name} is not available on this machine (run `cgdev lab up` first)")


@dataclass(frozen=True, slots=True)
class Started:
    container: Container
    replaced: bool  # a container of the same id existed and was deleted first


def run_container(
    lab: stack.Lab,
    container_id: str,
    rt: Runtime,
    driver: Driver,
    config: dict[str, Any],
    *,
    preset: str | None = None,
    timeout: float | None = None,
) -> Container:
    """Start a container (replacing one of the same id) and record where it lives."""
    return start_container(lab, container_id, rt, driver, config, preset=preset, timeout=timeout).container


def start_container(
    lab: stack.Lab,
    container_id: str,
    rt: Runtime,
    driver: Driver,
    config: dict[str, Any],
    *,
    preset: str | None = None,
    timeout: float | None = None,
) -> Started:
    """``run_container``, also saying whether a container of the same id was replaced.

    The id and the config are checked before anything is written or deleted.  A container of
    the same id that cannot be deleted is an ``EnvError``, and it keeps its record: it is never
    left running unlisted.  Holds the lab lock, so ``down`` cannot run meanwhile.
    """
    runtime.check_container_id(container_id)
    limit = lab_timeout() if timeout is None else timeout
    linux = config.get("linux")
    if linux is None:
        linux = config["linux"] = {}
    elif not isinstance(linux, dict):
        raise InputError(f"container {container_id!r}: the config's linux section is not an object")
    linux["cgroupsPath"] = runtime.cgroups_path(rt, driver, container_id)
    with stack.lab_lock(limit):
        _require_same_lab(lab)
        return _start_locked(lab, container_id, rt, driver, config, preset, limit)


def _require_same_lab(lab: stack.Lab) -> None:
    """Under the lock: the lab found before taking it is still the one running (``down`` may have won)."""
    current = stack.find_lab(lab.state)
    if current is None or current.pid1 != lab.pid1:
        raise EnvError("the lab is not running (it was stopped meanwhile): start it with `cgdev lab up`")


def _start_locked(
    lab: stack.Lab,
    container_id: str,
    rt: Runtime,
    driver: Driver,
    config: dict[str, Any],
    preset: str | None,
    limit: float,
) -> Started:
    replaced = False
    try:
        record = find_container(container_id)
    except NotFound:
        pass
    else:
        replaced = _delete(lab, record)
    replaced = _remove(lab, rt, driver, container_id) or replaced
    path = bundle.write_bundle(container_id, config)
    try:
        runtime.start(lab, rt, driver, container_id, path, limit)
    except EnvError:
        if driver == "systemd" and stack.system_version(lab, check=False) is None:
            raise BusUnreachable(
                f"{rt.name} run {container_id}: the lab's system bus does not answer at {lab.bus_address} "
                "(start it: `cgdev lab exec -- systemctl start dbus.socket dbus.service`)"
            ) from None
        raise
    pid = runtime.state_pid(lab, rt, driver, container_id)
    if pid is None:
        raise NotFound(f"container {container_id!r} not found in {rt.name} right after it was started")
    record = Container(
        id=container_id,
        runtime=rt.name,
        driver=driver,
        preset=preset,
        bundle=str(path),
        pid=pid,
        cgroup=runtime.process_cgroup(lab, pid),
        scope=runtime.scope_name(rt, driver, container_id),
    )
    lab.state.containers.mkdir(parents=True, exist_ok=True)
    (lab.state.containers / f"{container_id}.json").write_text(record.to_json())
    return Started(record, replaced)


def _remove(lab: stack.Lab, rt: Runtime, driver: Driver, container_id: str) -> bool:
    """``<runtime> delete -f``, checked: True when the runtime had the container (now gone).

    A failed delete leaves the container running: an ``EnvError`` with the runtime's message.
    """
    existed = runtime.state_pid(lab, rt, driver, container_id) is not None
    done = runtime.delete(lab, rt, driver, container_id)  # also clears what a failed run left
    if existed and runtime.state_pid(lab, rt, driver, container_id) is not None:
        said = (done.stderr or "").strip() or (done.stdout or "").strip() or f"exit status {done.returncode}"
        raise EnvError(
            f"container {container_id!r} is still there after `{rt.name} delete -f`: {said.splitlines()[-1]}"
        )
    return existed


def _delete(lab: stack.Lab, record: Container) -> bool:
    """Delete a recorded container and its record; True when the runtime still had it.

    The caller holds the lab lock (``down``, ``start_container``, ``delete_container``).
    """
    rt = runtime_named(record.runtime)
    existed = _remove(lab, rt, record.driver, record.id)
    (lab.state.containers / f"{record.id}.json").unlink(missing_ok=True)
    bundle.remove_bundle(record.id)
    return existed


def delete_container(lab: stack.Lab, container_id: str, *, timeout: float | None = None) -> None:
    """Delete a recorded container, under the lab lock (never while ``down`` or a start runs)."""
    with stack.lab_lock(lab_timeout() if timeout is None else timeout):
        record = find_container(container_id)
        _require_same_lab(lab)
        _delete(lab, record)


def container_runtime(record: Container) -> Runtime:
    return runtime_named(record.runtime)


@dataclass(frozen=True, slots=True)
class Status:
    running: bool
    pid1: int | None = None
    cgroup_root: str | None = None
    bus_address: str | None = None
    systemd_version: str | None = None
    runtimes: dict[str, str] = field(default_factory=dict)
    containers: list[dict[str, Any]] = field(default_factory=list)


def status() -> Status:
    runtimes = {name: f"{rt.version} ({rt.path})" for name, rt in install.installed_runtimes().items()}
    lab = stack.find_lab()
    if lab is None:
        return Status(running=False, runtimes=runtimes)
    return Status(
        running=True,
        pid1=lab.pid1,
        cgroup_root=str(lab.cgroup_root),
        bus_address=lab.bus_address,
        systemd_version=stack.system_version(lab, check=False),
        runtimes=runtimes,
        containers=[
            {"id": c.id, "runtime": c.runtime, "driver": c.driver, "cgroup": c.cgroup} for c in containers()
        ],
    )
