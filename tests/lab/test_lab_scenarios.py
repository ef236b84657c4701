"""Every reference case on the real stack: the observed timeline must match the preset's expectation."""

from __future__ import annotations

import pytest

from cgdev.core.semantics.systemd import reload_reapplies_devices
from cgdev.lab import containers, presets, runtime, scenario
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_scenario_timeline_matches(lab: LabHandle, name: str) -> None:
    preset = presets.get(name)
    result = scenario.run_scenario(lab.running, preset, lab.runtimes)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.mismatches == [], scenario.render([result])
    assert [s.step for s in result.steps][:3] == ["start", "hook", "daemon-reload"]
    assert all(s.verdicts["null"] == "ok" for s in result.steps)
    assert not (lab.cgroup_root / result.container_cgroup.lstrip("/")).exists()  # deleted afterwards


def test_double_filter_layout(lab: LabHandle) -> None:
    """crun >= 1.18 + systemd: systemd's program on the scope AND crun's on scope/container."""
    preset = presets.get("crun-sd")
    result = scenario.run_scenario(lab.running, preset, lab.runtimes)
    if result.skipped:
        pytest.skip(result.skipped)
    start = result.steps[0]
    filtered = [layer for layer in start.layers if layer.programs]
    assert [layer.cgroup for layer in filtered] == [
        "/system.slice/crun-scn-crun-sd.scope",
        "/system.slice/crun-scn-crun-sd.scope/container",
    ]
    assert filtered[0].programs[0].name == "sd_devices"
    started = filtered[0].programs[0].id
    reload = result.steps[2].layers[-2].programs[0]
    assert reload.name == "sd_devices"
    if reload_reapplies_devices(lab.report.systemd_version):
        assert reload.id != started  # re-attached afresh
    else:  # systemd 257: the reload rebuilds nothing, the set-property does
        assert reload.id == started
        changed = result.steps[3].layers[-2].programs[0]
        assert changed.name == "sd_devices" and changed.id != started


def test_a_scenario_leaves_the_users_container_alone(lab: LabHandle) -> None:
    """`cgdev lab run crun-fs` starts lab-crun-fs; the crun-fs scenario runs and deletes scn-crun-fs."""
    preset = presets.get("crun-fs")
    if scenario.skip_reason(preset, lab.runtimes):
        pytest.skip(scenario.skip_reason(preset, lab.runtimes))
    mine = lab.run(preset.name)
    assert mine.id == preset.container_id == "lab-crun-fs"
    try:
        result = scenario.run_scenario(lab.running, preset, lab.runtimes)
        assert result.passed, scenario.render([result])
        assert result.container_cgroup == "/scn-crun-fs"
        assert [c.id for c in containers.containers()].count("lab-crun-fs") == 1
        rt = lab.runtimes[preset.runtime]
        assert runtime.state_pid(lab.running, rt, mine.driver, mine.id) == mine.pid  # the same process
        assert lab.probe(mine) == {"null": "ok", "nvidiactl": "EPERM"}  # and untouched by the hook
        assert runtime.state_pid(lab.running, rt, preset.driver, "scn-crun-fs") is None
    finally:
        lab.delete(mine.id)
