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
import subprocess
import sys
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


def test_audit_names_the_missing_link_and_with_links_runc_keeps_the_device(lab: LabHandle) -> None:
    """Issue 9 items 4 and links acceptance: audit reports the /dev/char link runc 1.1.5 would need
    for a device in a running container's spec; after `cgdev links --create` a container created
    with the same spec keeps the device in DeviceAllow, and the kernel allows it after a reload.

    The lab shares the host's /dev, so the node and link are made and removed by this test."""
    view = Lab(lab)
    dev = f"/proc/{lab.pid1}/root/dev"
    if os.path.lexists(f"{dev}/char/195:255") or os.path.exists("/sys/dev/char/195:255"):
        pytest.skip("the host already has a /dev/char/195:255 link (or sysfs entry): nothing to create")
    with runc_with_gpu_in_spec(lab, "r2-links-a") as first:
        done = view.cgdev("audit", "--json")
        assert done.returncode == 1, done.stderr  # a certain missing link is a finding
        (missing,) = [m for m in json.loads(done.stdout)["missing_links"] if m["device"] == "c 195:255"]
        assert missing["link"] == "/dev/char/195:255" and missing["certain"] is True
        assert first.id in missing["containers"] and "1.1.5" in missing["runc"]
        quiet = view.cgdev("audit", "-q")
        assert "missing /dev/char links" in quiet.stdout, quiet.stdout

    node = f"{dev}/cgdev-test-nvidiactl"
    made_char_dir = not os.path.isdir(f"{dev}/char")
    os.mknod(node, 0o600 | 0o020000, os.makedev(195, 255))
    try:
        argv = [sys.executable, "-m", "cgdev", "links", "--create", "--no-cdi", "--dev", dev, "--json"]
        created = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        assert os.readlink(f"{dev}/char/195:255") == "../cgdev-test-nvidiactl"
        with runc_with_gpu_in_spec(lab, "r2-links-b") as second:
            done = view.cgdev("audit", "--json")
            report = json.loads(done.stdout)
            assert not [m for m in report["missing_links"] if m["device"] == "c 195:255"]
            row = next(r for r in report["containers"] if r["container_id"] == second.id)
            assert "spec-device-skipped" not in [f["code"] for f in row["findings"]]
            scenario.apply_step(lab.running, "daemon-reload", second)
            assert _allowed(view, second)  # runc kept the entry: the reload keeps the device
    finally:
        for path in (f"{dev}/char/195:255", node):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if made_char_dir:
            with contextlib.suppress(OSError):
                os.rmdir(f"{dev}/char")
