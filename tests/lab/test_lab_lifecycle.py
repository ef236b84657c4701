"""down leaves the machine clean (no process, mount, cgroup or BPF program), and up comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgdev.adapters import bpf
from cgdev.errors import NotFound
from cgdev.lab import control, hooksim, instance
from cgdev.lab.paths import STATE_DIR
from cgdev.ops.inspect import HostView, systemd_layers
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab


def test_down_leaves_nothing_and_up_restarts(lab: LabHandle) -> None:
    container = lab.run("runc-sd", name="lab-test-down")
    hooksim.hook_cgroup(str(lab.cgroup_root / container.cgroup.lstrip("/")), 195, 255)
    program_ids = [p.id for layer in _path(container.cgroup) for p in layer.programs]
    assert program_ids
    # engine containers (podman, containerd) go with down too: removed first, their state with /run
    engine_names = ["lab-test-down-podman", "lab-test-down-ctr"]
    lab.run_engine("podman", engine_names[0], runtime="crun")
    lab.run_engine("containerd", engine_names[1], runtime="runc")
    old_pid1, cgroup_root = lab.pid1, lab.cgroup_root
    mountinfo = Path(f"/proc/{old_pid1}/mountinfo").read_text()
    assert "/run/cgdev-dev" in mountinfo  # the lab's mounts exist, in its own namespace

    report = lab.restart()

    assert report.was_running and "lab-test-down" in report.deleted
    assert set(engine_names) <= set(report.deleted) and report.errors == []
    assert report.leftovers == []
    # independent checks of what leftovers() claims
    assert (
        not Path(f"/proc/{old_pid1}").exists() or "systemd" not in Path(f"/proc/{old_pid1}/comm").read_text()
    )
    assert "/run/cgdev-dev" not in Path("/proc/self/mountinfo").read_text()
    for prog_id in program_ids:
        with pytest.raises(NotFound):
            bpf.prog_fd_by_id(prog_id).close()
    # and it comes back: a new systemd on the same cgroup
    assert lab.pid1 != old_pid1 and lab.cgroup_root == cgroup_root and STATE_DIR.exists()
    assert instance.system_version(instance.require_lab())


def test_down_twice_is_harmless_when_not_running(lab: LabHandle) -> None:
    """The idempotent path of down: with the lab already gone, it only checks; then bring it back."""
    lab.restart()
    first = control.down()
    second = control.down()
    assert first.was_running and not second.was_running and second.leftovers == []
    lab.report = control.up()
    assert lab.report.started


def _path(cgroup: str) -> list:
    """Every cgroup from the lab's root to ``cgroup``, as explain reads it."""
    return systemd_layers(HostView.for_ns_pid(instance.require_lab().pid1), cgroup)
