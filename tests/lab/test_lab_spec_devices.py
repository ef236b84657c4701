"""Issue 8 item 4 in the lab: a device in the spec that runc left out of systemd's DeviceAllow.

runc 1.1.5 + systemd, the GPU (c 195:255) in ``linux.resources.devices``, no ``/dev/char/195:255``
on the host: runc skips the entry, so the device works until the next daemon-reload.  explain
must say so before the reload (and never advise putting the device in the spec, where it is),
the reload must prove the prediction, and the grant explain proposes must survive the next one.
Every verdict is the kernel's (a probe in the container's cgroup); the reload is the lab's systemd.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
from test_lab_repair import Lab

from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.lab import containers, presets, scenario
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

GPU = Request("c", 195, 255, ACC_R | ACC_W)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path / "state"))
    return str(tmp_path / "state")


@contextlib.contextmanager
def runc_with_gpu_in_spec(lab: LabHandle, name: str) -> Iterator[Any]:
    preset = dataclasses.replace(presets.get("runc-sd"), static_devices=((195, 255),))
    reason = scenario.skip_reason(preset, lab.runtimes)
    if reason:
        pytest.skip(reason)
    rt = containers.runtime_named(preset.runtime, lab.runtimes)
    if not rt.version.startswith("1.1.") or not 3 <= int(rt.version.split(".")[2].split("-")[0]) <= 6:
        pytest.skip(f"runc {rt.version}: the /dev/char skip is runc 1.1.3-1.1.6's")
    container = containers.start_container(
        lab.running, name, rt, preset.driver, scenario.preset_config(preset), preset=preset.name
    ).container
    try:
        yield container
    finally:
        lab.delete(container.id)


def _allowed(view: Lab, container: Any) -> bool:
    return kernel_verdicts(view.host_cgroup(container), [GPU])[0]


def test_runc_skipped_entry_is_named_and_the_proposed_grant_survives_reload(lab: LabHandle) -> None:
    view = Lab(lab)
    if os.path.lexists(f"/proc/{lab.pid1}/root/dev/char/195:255") or os.path.exists("/sys/dev/char/195:255"):
        pytest.skip("the host has a /dev/char/195:255 link: runc keeps the entry")
    with runc_with_gpu_in_spec(lab, "r2-spec-t") as container:
        assert _allowed(view, container)  # runc's own program allows what the spec lists
        done = view.cgdev("explain", container.id, "--device", "c 195:255", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["allowed"] is True and report["after_reload"]["allowed"] is False
        codes = {f["code"]: f for f in report["findings"]}
        skipped = codes["spec-device-skipped"]
        assert "runc 1.1.3-1.1.6" in skipped["message"] and "/dev/char/195:255" in skipped["message"]
        assert "reload-drops-grant" not in codes  # the cause is named, not guessed
        fixes = [fix["action"] for f in report["findings"] for fix in f["fix"]]
        assert not any("put the device in the container spec" in a for a in fixes), fixes
        grant = re.search(r"`cgdev (grant [^`]*)`", skipped["fix"][0]["action"])
        assert grant is not None, skipped["fix"]

        done = view.cgdev("audit", "--json")
        assert done.returncode in (0, 1), done.stderr
        row = next(r for r in json.loads(done.stdout)["containers"] if r["container_id"] == container.id)
        audit_codes = [f["code"] for f in row["findings"]]
        assert "spec-device-skipped" in audit_codes and "reload-drops-grant" not in audit_codes, audit_codes

        scenario.apply_step(lab.running, "daemon-reload", container)
        assert not _allowed(view, container)  # the prediction came true: the reload lost it
        done = view.cgdev("explain", container.id, "--device", "c 195:255", "--json")
        double = [f for f in json.loads(done.stdout)["findings"] if f["code"] == "double-filter"]
        assert double and "runc" in double[0]["message"] and "crun" not in double[0]["message"], double

        done = view.cgdev(*shlex.split(grant.group(1)))
        assert done.returncode == 0, done.stderr
        assert _allowed(view, container)
        scenario.apply_step(lab.running, "daemon-reload", container)
        assert _allowed(view, container)  # the grant explain proposed survives the reload
        scenario.apply_step(lab.running, "set-property", container)
        assert _allowed(view, container)
