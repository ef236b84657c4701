"""``cgdev lab demo`` as a user runs it: the story, cgdev's own explanation, a checked prediction.

The demo's claims are cross-checked here against what they rest on: the program explain names
as the denier is the one the kernel oracle named, the printed ``cgdev explain`` command works
when run by hand, the container it leaves is the one ``cgdev lab status`` lists, and the
prediction check the demo reports is one that does fail when the kernel differs.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from cgdev.lab import demo, presets, scenario
from cgdev.ops.inspect import HostView
from cgdev.ops.layers import LiftCache
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab
CONTAINER = presets.get("crun-sd").container_id
TREE_GUIDES = re.compile(r"[│├└─]")


def cgdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, timeout=60)


def section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def flat(text: str) -> str:
    """The text with rich's tree guides and line wraps removed, to match across wrapped lines."""
    return " ".join(TREE_GUIDES.sub(" ", text).split())


def printed_command(text: str) -> list[str]:
    """The ``cgdev explain ...`` command the demo prints, continuation lines joined."""
    lines = text[text.index("  cgdev explain ") :].splitlines()
    command = []
    for line in lines:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(command))


@pytest.fixture(scope="module")
def demo_run(lab: LabHandle) -> subprocess.CompletedProcess[str]:
    reason = scenario.skip_reason(presets.get("crun-sd"), lab.runtimes)
    if reason:
        pytest.skip(reason)
    done = cgdev("lab", "demo")
    assert done.returncode == 0, done.stderr
    return done


def test_demo_reads_as_a_story(demo_run: subprocess.CompletedProcess[str]) -> None:
    text = demo_run.stdout
    assert "Still denied, by sd_devices" in text
    assert text.count("/dev/nvidiactl DENIED (EPERM)") == 3
    assert "c 195:255 rw on its own: allowed" in text  # the hook's program, judged alone by the kernel
    # steps 5 and 6: cgdev grant fixes every layer, and the reload after it keeps the device
    repaired = text[text.index("\n5. cgdev grant") :]
    assert "verified: every layer's policy differs by exactly c 195:255 rw" in repaired
    assert repaired.count("/dev/nvidiactl allowed (ENXIO") == 2  # after the grant, after the reload
    assert "Allowed, and still allowed after the reload." in repaired
    assert max(len(line) for line in text.splitlines()) <= demo.COLUMNS[1]


def test_explain_names_the_scopes_sd_devices_as_the_kernel_does(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    text = demo_run.stdout
    oracle = re.search(r"Still denied, by sd_devices #(\d+) on (\S+):", text)
    assert oracle is not None
    explained = flat(section(text, "3. Ask cgdev", "4. systemctl "))
    denials = re.findall(r"DENY #(\d+) (\S+) \((\w+)\): (.+?) insns (\d+)-(\d+)", explained)
    assert len(denials) == 1, explained  # one program denies now, and its range is shown
    prog_id, name, generator, rule, first, last = denials[0]
    assert (prog_id, name, generator) == (oracle.group(1), "sd_devices", "systemd")
    assert rule.startswith("deny a *:* rwm") and int(first) <= int(last)
    scope = oracle.group(2)  # the lab's name; explain, from the host, shows it under the lab's root
    assert re.search(rf"/cgdev-lab{re.escape(scope)} {re.escape(scope.rsplit('/', 1)[-1])}: "
                     r"DevicePolicy=strict", explained)  # fmt: skip
    assert "verdict now: DENY" in explained and "verdict after reload: DENY" in explained
    assert "DENY (new) sd_devices (systemd) [systemd]: no DeviceAllow entry allows c 195:255 rw" in explained
    assert "double-filter:" in explained and "- grant on every layer durably" in explained


def test_the_reload_is_reported_as_predicted(demo_run: subprocess.CompletedProcess[str]) -> None:
    text = flat(demo_run.stdout)
    assert "did NOT match" not in text
    matched = re.search(r"The prediction explain made before the reload matched: /dev/nvidiactl is "
                        r"denied \(EPERM\) as predicted, .* sd_devices #(\d+) included", text)  # fmt: skip
    denier = re.search(r"Denied by: sd_devices #(\d+) on", text)
    assert matched is not None and denier is not None
    assert matched.group(1) == denier.group(1)  # the fresh program systemd attached on the reload


def test_the_printed_command_runs_and_the_container_is_left_for_it(
    lab: LabHandle, demo_run: subprocess.CompletedProcess[str]
) -> None:
    command = printed_command(demo_run.stdout)
    assert command[:3] == ["cgdev", "explain", CONTAINER]
    assert "--lab" in command and "--bus" not in command  # the one-flag form, not the four flags
    try:
        listed = json.loads(cgdev("lab", "status", "--json").stdout)["containers"]
        assert CONTAINER in [c["id"] for c in listed]
        done = cgdev(*command[1:], "--json")
        assert done.returncode == 0, done.stderr  # the demo's last step granted it, durably
        answer = json.loads(done.stdout)
        assert answer["denied_by"] == [] and answer["systemd"] == "ok"
        assert answer["after_reload"]["allowed"] is True
        assert cgdev("revoke", "--lab", CONTAINER, "/dev/nvidiactl").returncode == 0  # the line it prints
        done = cgdev(*command[1:], "--json")
        assert done.returncode == 1, done.stderr  # denied again, on every layer (the hook's included)
        answer = json.loads(done.stdout)
        assert [(d["cgroup"].rsplit("/", 1)[-1], d["name"]) for d in answer["denied_by"]] == [
            (f"crun-{CONTAINER}.scope", "sd_devices"),
            ("container", "lab_hooksim"),
        ]
        assert answer["after_reload"]["allowed"] is False
    finally:
        assert cgdev("lab", "delete", CONTAINER).returncode == 0
    listed = json.loads(cgdev("lab", "status", "--json").stdout)["containers"]
    assert CONTAINER not in [c["id"] for c in listed]


def test_prediction_check_reports_a_kernel_that_differs(lab: LabHandle) -> None:
    """Not a reload but hook-sim after the prediction: the leaf's program is not the predicted one."""
    preset = presets.get("crun-sd")
    reason = scenario.skip_reason(preset, lab.runtimes)
    if reason:
        pytest.skip(reason)
    container = lab.run(preset.name, name="lab-demo-mismatch")
    try:
        host = HostView.for_ns_pid(lab.pid1)
        lifts = LiftCache()
        before, predicted = demo.explain_with_prediction(host, container, lifts)
        # nothing changed yet: systemd's program is what its properties give, so the check agrees
        assert demo.prediction_mismatches(predicted, before, lifts) == []
        scenario.apply_step(lab.running, "hook", container)
        after, _ = demo.explain_with_prediction(host, container, lifts)
        wrong = demo.prediction_mismatches(predicted, after, lifts)
        assert len(wrong) == 1 and wrong[0].startswith(after.layers[-1].cgroup + ":"), wrong
        assert "lab_hooksim" in wrong[0]
        scenario.apply_step(lab.running, "daemon-reload", container)
        reloaded, _ = demo.explain_with_prediction(host, container, lifts)
        assert len(demo.prediction_mismatches(predicted, reloaded, lifts)) == 1  # the hook's stays
    finally:
        lab.delete(container.id)
