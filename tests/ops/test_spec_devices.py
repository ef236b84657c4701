"""ops.spec_devices: a device the spec lists is never "to be put in the spec"; causes by runtime.

Pure parts only (the spec is a real config.json in a temporary bundle); the runc/systemd case
against the real lab is tests/lab/test_lab_spec_devices.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from cgdev.adapters.runtime_state import bundle_seen_from_here
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.ops.findings import SPEC_OR_CDI, Finding, FindingCode, Fix, request_findings
from cgdev.ops.layers import Inspection
from cgdev.ops.spec_devices import in_spec, revise, skip_cause, spec_rules
from cgdev.ops.targets import Target, TargetKind

GPU = Request("c", 195, 255, ACC_R | ACC_W)


def _target(tmp_path: Path, devices: list[dict[str, object]], runtime: str = "runc") -> Target:
    (tmp_path / "config.json").write_text(json.dumps({"linux": {"resources": {"devices": devices}}}))
    return Target(
        "ctr", TargetKind.CONTAINER, "/x", runtime=runtime, container_id="ctr", bundle=str(tmp_path)
    )


def test_bundle_of_a_runtime_in_another_mount_namespace_is_read_under_its_root() -> None:
    assert bundle_seen_from_here("/b/c", "/proc/42/root/run/runc/c/state.json") == "/proc/42/root/b/c"
    assert bundle_seen_from_here("/b/c", "/run/runc/c/state.json") == "/b/c"
    assert bundle_seen_from_here(None, "/run/runc/c/state.json") is None


def test_in_spec_needs_the_exact_device_and_enough_access(tmp_path: Path) -> None:
    deny_all: dict[str, object] = {"allow": False, "access": "rwm"}
    rules = spec_rules(_target(tmp_path, [deny_all, {"allow": True, "type": "c", "major": 195, "minor": 255,
                                                      "access": "rw"}]))  # fmt: skip
    assert rules is not None
    assert in_spec(rules, GPU)
    assert not in_spec(rules, Request("c", 195, 255, 7))  # m was not asked for in the spec
    assert not in_spec(rules, Request("c", 195, 254, ACC_R))


def test_a_device_in_the_spec_never_gets_put_it_in_the_spec_advice(tmp_path: Path) -> None:
    target = _target(tmp_path, [{"allow": True, "type": "c", "major": 195, "minor": 255, "access": "rwm"}])
    other = Fix("another fix", "its tradeoff")
    findings = [Finding(FindingCode.DOUBLE_FILTER, "m", (SPEC_OR_CDI, other), "/x")]
    revised = revise(findings, GPU, Inspection(target, ()), ())
    assert [f.fix for f in revised] == [(other,)]
    # a device not in the spec keeps the advice
    assert revise(findings, Request("c", 1, 3, ACC_R), Inspection(target, ()), ()) == findings


def test_skip_cause_names_the_runtime_that_is_there(tmp_path: Path) -> None:
    runc = skip_cause(_target(tmp_path, [], "runc"), GPU, str(tmp_path))
    assert "runc 1.1.3-1.1.6" in runc and "/dev/char/195:255" in runc and "neither exists" in runc
    (tmp_path / "dev" / "char").mkdir(parents=True)
    (tmp_path / "dev" / "char" / "195:255").symlink_to("../nvidiactl")
    assert "exists now" in skip_cause(_target(tmp_path, [], "runc"), GPU, str(tmp_path))
    assert "crun converts" in skip_cause(_target(tmp_path, [], "crun"), GPU, str(tmp_path))


def test_double_filter_finding_names_runc_for_a_runc_container() -> None:
    from cgdev.ops import findings

    assert "runc" in findings._double_filter_cause("runc") and "crun" not in findings._double_filter_cause(
        "runc"
    )
    assert "crun 1.18-1.22" in findings._double_filter_cause("crun")  # >= 1.23 pins its program
    assert request_findings(GPU, [], [], True, True, None, "daemon-reload", "runc") == []
