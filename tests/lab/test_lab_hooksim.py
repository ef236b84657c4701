"""hook-sim against real programs: what libnvidia-container does, instruction for instruction."""

from __future__ import annotations

import pytest

from cgdev.adapters.scratch_cgroup import ScratchCgroup
from cgdev.core import isa
from cgdev.lab import hooksim, instance
from cgdev.lab.program_path import insn_count
from cgdev.ops.inspect import HostView, systemd_layers
from cgdev.ops.layers import LiftCache, ProgramRecord
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab
PREFIX_BYTES = len(hooksim.allow_prefix(195, 255)) * 8


def leaf_programs(cgroup: str) -> tuple[ProgramRecord, ...]:
    return _path(cgroup)[-1].programs


def test_hook_prepends_to_the_leafs_program_and_keeps_it_whole(lab: LabHandle) -> None:
    container = lab.run("crun-fs", name="lab-test-hook")
    try:
        assert lab.probe(container)["nvidiactl"] == "EPERM"
        [old] = leaf_programs(container.cgroup)
        result = hooksim.hook_cgroup(str(lab.cgroup_root / container.cgroup.lstrip("/")), 195, 255)
        [new] = leaf_programs(container.cgroup)
        assert result.before == [old.id] and result.after == [new.id]
        assert new.name == hooksim.PROGRAM_NAME
        assert new.xlated[:PREFIX_BYTES] == isa.encode(hooksim.allow_prefix(195, 255))
        assert new.xlated[PREFIX_BYTES:] == old.xlated
        assert insn_count(new) == insn_count(old) + PREFIX_BYTES // 8
        assert lab.probe(container) == {"null": "ok", "nvidiactl": "ENXIO"}
    finally:
        lab.delete(container.id)


def test_hook_leaves_ancestor_programs_alone(lab: LabHandle) -> None:
    container = lab.run("crun-sd", name="lab-test-ancestors")
    try:
        before = _path(container.cgroup)
        hooksim.hook_cgroup(str(lab.cgroup_root / container.cgroup.lstrip("/")), 195, 255)
        after = _path(container.cgroup)
        assert [p.id for p in before[-2].programs] == [p.id for p in after[-2].programs]  # the scope
        assert [p.name for p in before[-2].programs] == ["sd_devices"]
        scope = f"/system.slice/{container.scope}"
        assert [layer.cgroup for layer in before] == ["/", "/system.slice", scope, container.cgroup]
        assert [p.id for p in before[-1].programs] != [p.id for p in after[-1].programs]  # the leaf
        assert lab.probe(container)["nvidiactl"] == "EPERM"
    finally:
        lab.delete(container.id)


def test_the_lifter_recognises_the_hooks_shape(lab: LabHandle) -> None:
    """Cross-check with the lifter: our prefix is libnvidia-container's shape."""
    container = lab.run("crun-fs", name="lab-test-lift")
    try:
        hooksim.hook_cgroup(str(lab.cgroup_root / container.cgroup.lstrip("/")), 195, 255)
        [program] = leaf_programs(container.cgroup)
        view = LiftCache().view(program)
        assert view.lifted is not None and view.opaque is None
        assert view.generator.startswith("libnvidia-container")
        assert str(view.lifted.rules[0]) == "allow c 195:255 rw"
    finally:
        lab.delete(container.id)


def _path(cgroup: str) -> list:
    """Every cgroup from the lab's root to ``cgroup``, as explain reads it."""
    return systemd_layers(HostView.for_ns_pid(instance.require_lab().pid1), cgroup)


def test_hook_fails_on_a_cgroup_without_a_program_as_the_kernel_refuses_it(
    scratch_cgroup: ScratchCgroup,
) -> None:
    """No program to prepend to (crun >= 1.23 under systemd): the block + bare exit is refused."""
    from cgdev.adapters import bpf
    from cgdev.errors import EnvError

    path = str(scratch_cgroup.path)
    with pytest.raises(EnvError, match="no device program to prepend to"):
        hooksim.hook_cgroup(path, 195, 255)
    with bpf.open_cgroup(path) as cgroup:
        assert bpf.prog_query(cgroup).ids == []  # nothing attached: the hook failed, no change


def test_hook_sim_cli_rewrites_an_engine_containers_leaf(lab: LabHandle) -> None:
    """``cgdev lab hook-sim NAME`` on a podman container (issue 9's hook acceptance runs it there).

    Failed before the fix: the CLI looked NAME up among the lab's own containers only (exit 2,
    "not a lab container")."""
    import os
    import subprocess
    import sys

    from capabilities import skip_unless_ci

    if lab.exec(["sh", "-c", "command -v podman"], check=False).returncode != 0:
        skip_unless_ci("podman is not installed (scripts/bootstrap installs it)")
    name = f"t-hooksim-podman-{os.getpid()}"
    record = lab.run_engine("podman", name, runtime="crun")
    try:
        before = _path(record.cgroup)
        done = subprocess.run([sys.executable, "-m", "cgdev", "lab", "hook-sim", name, "195:255"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert record.cgroup in done.stdout
        after = _path(record.cgroup)
        assert [p.name for p in after[-1].programs] == [hooksim.PROGRAM_NAME]
        # the scope keeps systemd's program (by name: another session's reload may renew its id)
        assert [p.name for p in after[-2].programs] == [p.name for p in before[-2].programs] == ["sd_devices"]
    finally:
        lab.remove_engine(name)
