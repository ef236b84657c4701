"""The ``lab`` fixture: one real lab (systemd + D-Bus + crun/runc) for the whole test session.

It is brought up once, on first use; if this session started it, it is brought down at the end
and the teardown checks that the machine is clean (no process, mount, cgroup or hook program
left).  A lab that was already running (``.ci/run`` starts one; a developer's) is left as it was.
It skips only when the lab is truly impossible here (not root, no cgroup2, no unshare/nsenter),
and under CI not even then; a failing ``up`` on a machine that should run it is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = ["LabHandle", "lab", "lab_impossible_reason"]


def lab_impossible_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (namespaces, cgroups, BPF)"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) are not installed"
    if not shutil.which("apt-get") or not Path("/etc/debian_version").exists():
        return "the lab installs its runtimes with Debian's apt"
    from capabilities import cgroup2_mounted  # not cgdev's own mount discovery: see there

    if not cgroup2_mounted():
        return "no cgroup2 filesystem is mounted"
    return None


class LabHandle:
    """What tests use: the lab's identity, ``exec`` inside it, and containers run through it."""

    def __init__(self) -> None:
        from cgdev.lab import containers, control

        self._control = control
        self._containers = containers
        self.report = control.up()
        self.runtimes = self.report.runtimes

    @property
    def running(self) -> Any:
        from cgdev.lab.instance import require_lab

        return require_lab()

    @property
    def pid1(self) -> int:
        return int(self.running.pid1)

    @property
    def cgroup_root(self) -> Path:
        return Path(self.running.cgroup_root)

    @property
    def bus_address(self) -> str:
        return str(self.running.bus_address)

    def exec(
        self, argv: Sequence[str], check: bool = True, timeout: float | None = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the lab; ``check`` raises ``EnvError`` with the command's last stderr line."""
        return self.running.exec(argv, check=check, timeout=timeout)

    def run(
        self, preset: str, *, runtime: str | None = None, driver: str | None = None, name: str | None = None
    ):
        """Start a container from a preset (optionally with another runtime or driver)."""
        from cgdev.lab import presets, scenario

        chosen = presets.get(preset)
        rt = self._containers.runtime_named(runtime or chosen.runtime, self.runtimes)
        return self._containers.start_container(
            self.running,
            name or chosen.container_id,
            rt,
            driver or chosen.driver,  # type: ignore[arg-type]
            scenario.preset_config(chosen),
            preset=chosen.name,
        ).container

    def delete(self, container_id: str) -> None:
        self._containers.delete_container(self.running, container_id)

    def probe(self, container: Any) -> dict[str, str]:
        from cgdev.lab import bundle, runtime

        rt = self._containers.runtime_named(container.runtime, self.runtimes)
        return runtime.open_in_container(self.running, rt, container.driver, container.id, bundle.PROBE_NODES)

    def run_engine(self, engine: str, name: str, **options: Any) -> Any:
        """Start ``name`` with podman or containerd (``cgdev.lab.engines.run_engine_container``'s
        options: runtime= a lab runtime or a binary path, devices=, annotations=, hooks_dir=)."""
        from cgdev.lab import engines

        return engines.run_engine_container(self.running, engine, name, **options)

    def remove_engine(self, name: str) -> None:
        from cgdev.lab import engines

        engines.remove_engine_container(self.running, name)

    def probe_engine(self, record: Any, nodes: Sequence[str] = ("null", "nvidiactl")) -> dict[str, str]:
        """Open each ``/dev/<node>`` read-write inside an engine container (through the engine)."""
        from cgdev.lab import engines

        return engines.probe(self.running, record, tuple(nodes))

    def restart(self) -> Any:
        """down + up; returns the down report (tests of cleanliness use it)."""
        report = self._control.down()
        self.report = self._control.up()
        self.runtimes = self.report.runtimes
        return report


@pytest.fixture(scope="session")
def lab() -> Iterator[LabHandle]:
    reason = lab_impossible_reason()
    if reason:
        from capabilities import skip_unless_ci

        skip_unless_ci(reason)
    handle = LabHandle()
    started_here = handle.report.started
    yield handle
    if not started_here:  # someone else's lab (.ci/run, a developer): theirs to bring down
        return
    from cgdev.lab import control

    report = control.down()
    assert report.leftovers == [], f"cgdev lab down left: {report.leftovers}"
