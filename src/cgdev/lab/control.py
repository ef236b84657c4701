"""The lab's lifecycle: preflight, up, down and status.

This is what the CLI, the pytest fixture, the scenarios and the demo call; each returns plain
values.  ``up`` and ``down`` are idempotent and take the machine-wide lab lock; ``down`` deletes
every container (``containers``) before it stops the lab and then reports what is left
(``leftovers``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cgdev.errors import EnvError
from cgdev.lab import bundle, containers, install, leftovers, stack
from cgdev.lab.paths import CGROUP_NAME, STATE_DIR, VAR_DIR, lab_timeout
from cgdev.lab.runtime import Runtime

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
    lab = stack.find_lab()
    deleted = [] if lab is None else containers.delete_all(lab, errors)
    stack.stop(limit)
    for leftover in (VAR_DIR / "bundles").glob("*"):
        bundle.remove_bundle(leftover.name)
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
        found = leftovers.leftovers(limit)
    return DownReport(was_running, deleted, found, time.monotonic() - started_at, errors)


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
            {"id": c.id, "runtime": c.runtime, "driver": c.driver, "cgroup": c.cgroup}
            for c in containers.containers()
        ],
    )
