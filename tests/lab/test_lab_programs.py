"""Programs dumped from the real runtimes and systemd in the lab: lifted exactly, named right,
equal to what the kernel does with each of them alone, to what cgdev's semantics predict from the
container's config, and instruction for instruction equal to cgdev's reproduced shapes (crun 1.21
and runc from the config, systemd from the scope's unit properties)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cgdev.adapters import cgroupfs
from cgdev.adapters.scratch_cgroup import ScratchCgroup
from cgdev.core import isa
from cgdev.core.lift import lift
from cgdev.core.policy import Policy
from cgdev.core.rules import parse_oci_config
from cgdev.core.semantics import policy_of
from cgdev.core.shapes import shape_program, systemd_properties_program
from cgdev.lab import presets, scenario
from cgdev.ops.collect import program_records
from kernel_requests import requests_around

pytestmark = pytest.mark.lab

GENERATOR_OF_RUNTIME = {"crun": "crun", "crun-1.8.1": "crun", "runc": "runc"}
# reproduced instruction for instruction
SHAPE_OF_RUNTIME = {"crun": "crun", "crun-1.8.1": "crun-1.8", "runc": "runc"}


def _unit(lab: Any, scope: str) -> Any:
    from cgdev.adapters.systemd_client import SystemdClient

    with SystemdClient(lab.bus_address) as client:
        return client.unit_properties(scope)


def _proc_devices(lab: Any) -> str:
    return Path(f"/proc/{lab.pid1}/root/proc/devices").read_text()


def _expected_runtime_policy(preset: presets.Preset, config: dict[str, Any]) -> Policy:
    rules = parse_oci_config(config)
    return policy_of(rules, SHAPE_OF_RUNTIME[preset.runtime])


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_real_programs_lift_to_what_the_kernel_and_the_semantics_say(lab: Any, name: str) -> None:
    preset = presets.get(name)
    skip = scenario.skip_reason(preset, lab.runtimes)
    if skip:
        pytest.skip(skip)
    config = scenario.preset_config(preset)
    container = lab.run(name)
    try:
        leaf = Path(lab.cgroup_root) / container.cgroup.lstrip("/")
        seen = 0
        for level in cgroupfs.ancestors(str(leaf), mount=str(lab.cgroup_root)):
            for record in program_records(level):
                seen += 1
                lifted = lift(isa.decode(record.xlated))
                assert lifted.opaque is None, (level, record.name, lifted.opaque)
                if record.name == "sd_devices":
                    assert lifted.generator == "systemd"
                    unit = _unit(lab, container.scope)
                    assert isa.decode(record.xlated) == systemd_properties_program(
                        unit.device_policy, unit.device_allow, _proc_devices(lab), None
                    ), "cgdev's systemd shape differs from what systemd attached"
                else:
                    if preset.runtime in SHAPE_OF_RUNTIME:
                        shape = shape_program(parse_oci_config(config), SHAPE_OF_RUNTIME[preset.runtime])
                        assert isa.decode(record.xlated) == shape, f"cgdev's {preset.runtime} shape differs"
                    assert lifted.generator == GENERATOR_OF_RUNTIME[preset.runtime], (level, lifted.generator)
                    assert lifted.policy == _expected_runtime_policy(preset, config), lifted.policy.diff(
                        _expected_runtime_policy(preset, config), limit=5
                    )
                requests = requests_around(lifted.policy)
                with ScratchCgroup() as alone:
                    alone.attach(record.xlated, name="lab_copy")
                    verdicts = alone.kernel_verdicts(requests)
                wrong = [
                    str(r) for r, v in zip(requests, verdicts, strict=True) if v != lifted.policy.allows(r)
                ]
                assert len(requests) >= 100
                assert not wrong, (level, record.name, wrong[:5])
                # The printed rules, first match deciding, say what the kernel does.
                assert lifted.reads_as_rules, [str(rule) for rule in lifted.rules]
                misread = [
                    str(r)
                    for r, v in zip(requests, verdicts, strict=True)
                    if lifted.first_match(r).allow != v
                ]
                assert not misread, (level, record.name, misread[:5])
        assert seen == preset.filtered_levels
    finally:
        lab.delete(container.id)
