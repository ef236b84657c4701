"""The lab's containers: started, found, deleted and listed from their records.

A container is run through a runtime inside the lab, and a record of it (runtime, driver,
cgroup, PID) is kept in the lab's state so status, probe and ``down`` find it again.  Every
start and delete takes the machine-wide lab lock, so a container is never started or deleted
while ``down`` runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from cgdev.errors import BusUnreachable, CgdevError, EnvError, InputError, NotFound
from cgdev.lab import bundle, install, runtime
from cgdev.lab.instance import Lab, find_lab, system_version
from cgdev.lab.lock import lab_lock
from cgdev.lab.paths import StateFiles, lab_timeout
from cgdev.lab.runtime import Container, Driver, Runtime


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


def start_container(
    lab: Lab,
    container_id: str,
    rt: Runtime,
    driver: Driver,
    config: dict[str, Any],
    *,
    preset: str | None = None,
    timeout: float | None = None,
) -> Started:
    """Start a container (replacing one of the same id), record where it lives, say if it replaced one.

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
    with lab_lock(limit):
        require_same_lab(lab)
        return _start_locked(lab, container_id, rt, driver, config, preset, limit)


def require_same_lab(lab: Lab) -> None:
    """Under the lock: the lab found before taking it is still the one running (``down`` may have won)."""
    current = find_lab(lab.state)
    if current is None or current.pid1 != lab.pid1:
        raise EnvError("the lab is not running (it was stopped meanwhile): start it with `cgdev lab up`")


def _start_locked(
    lab: Lab,
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
        if driver == "systemd" and system_version(lab, check=False) is None:
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
        cgroup=runtime.lab_process_cgroup(lab, pid),
        scope=runtime.scope_name(rt, driver, container_id),
    )
    lab.state.containers.mkdir(parents=True, exist_ok=True)
    (lab.state.containers / f"{container_id}.json").write_text(record.to_json())
    return Started(record, replaced)


def _remove(lab: Lab, rt: Runtime, driver: Driver, container_id: str) -> bool:
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


def _delete(lab: Lab, record: Container) -> bool:
    """Delete a recorded container and its record; True when the runtime still had it.

    The caller holds the lab lock (``delete_all``, ``start_container``, ``delete_container``).
    """
    rt = runtime_named(record.runtime)
    existed = _remove(lab, rt, record.driver, record.id)
    (lab.state.containers / f"{record.id}.json").unlink(missing_ok=True)
    bundle.remove_bundle(record.id)
    return existed


def delete_container(lab: Lab, container_id: str, *, timeout: float | None = None) -> None:
    """Delete a recorded container, under the lab lock (never while ``down`` or a start runs)."""
    with lab_lock(lab_timeout() if timeout is None else timeout):
        record = find_container(container_id)
        require_same_lab(lab)
        _delete(lab, record)


def delete_all(lab: Lab, errors: list[str]) -> list[str]:
    """Delete every container, recorded or not, before ``down`` stops the lab; returns their ids.

    A container that will not go never stops ``down``: each failed delete is suppressed and its
    one-line message appended to ``errors``.  The caller holds the lab lock.
    """
    deleted: list[str] = []
    tried: set[tuple[str, str]] = set()  # (runtime family, id): each container is tried once
    for record in containers():
        tried.add((runtime.family_of(record.runtime), record.id))
        try:
            _delete(lab, record)
        except CgdevError as exc:
            errors.append(f"{record.id}: {exc}")
        else:
            deleted.append(record.id)
    return deleted + _delete_unrecorded(lab, errors, tried)


def _delete_unrecorded(lab: Lab, errors: list[str], tried: set[tuple[str, str]]) -> list[str]:
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


def container_runtime(record: Container) -> Runtime:
    return runtime_named(record.runtime)
