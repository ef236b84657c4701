"""Issue 10's watcher acceptance in the lab: restore after reload, report without repair, survive.

The case: runc + systemd, and crun with ``run.oci.systemd.subgroup=""``, after the hook simulation
(libnvidia-container's leaf-only grant) recorded as an entitlement -- what the OCI hook will do.
The lab's real systemd 252 re-applies its filter on ``daemon-reload`` and ``set-property``, which
denies /dev/nvidiactl again; ``cgdev watch`` (a real process, its JSON events read line by line)
must notice, and with ``--repair`` restore it durably.  Every verdict is the kernel's.  The
watcher is limited to the test's container (``--only``) so it never touches other containers of
the shared lab.  Timeouts bound the waits; nothing asserts on wall-clock time (bench_watch.py
measures the windows).
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from test_lab_repair import Lab, container_from, nvidiactl_opens

from cgdev.adapters.kernel_probe import kernel_verdicts as probe
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.ops import entitlements
from fixtures_lab import LabHandle
from watch_process import WatchProcess

pytestmark = pytest.mark.lab

NVIDIACTL = Request("c", 195, 255, ACC_R | ACC_W)
DEVICE = "c 195:255 rw"
CASES = ["runc-sd", "crun-sd-nosub"]


@pytest.fixture(scope="module")
def lab_view(lab: LabHandle) -> Lab:
    return Lab(lab)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path / "state"))
    return str(tmp_path / "state")


def cgroup_of(view: Lab, container: Any) -> str:
    return view.systemd_root.rstrip("/") + container.cgroup


def record_hook_grant(view: Lab, container: Any) -> None:
    """The hook's leaf-only grant of /dev/nvidiactl, recorded as an entitlement (issue 7 does so)."""

    def add(entries: dict[Any, entitlements.Entitlement]) -> None:
        e = entitlements.Entitlement(
            cgroup=cgroup_of(view, container), container_id=container.id, target=container.id, type="c",
            major=195, minor=255, granted="rw", revoked="", change="grant", status="done",
            when=entitlements.now(), why="OCI hook (leaf only)",
        )  # fmt: skip
        entries[e.key] = e

    entitlements.update(add)


@pytest.fixture
def watchers() -> Iterator[list[WatchProcess]]:
    started: list[WatchProcess] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def start(watchers: list[WatchProcess], view: Lab, *args: str) -> WatchProcess:
    w = WatchProcess("--interval", "0.5", *args, *view.options)
    watchers.append(w)
    w.event("full-scan")  # the first look at every container is done
    return w


@pytest.mark.parametrize("trigger", ["daemon-reload", "set-property"])
@pytest.mark.parametrize("preset_name", CASES)
def test_watch_repair_restores_the_entitled_device(
    lab: LabHandle, lab_view: Lab, watchers: list[WatchProcess], preset_name: str, trigger: str
) -> None:
    with container_from(lab, preset_name, f"wat-{preset_name}-{trigger[:3]}") as container:
        record_hook_grant(lab_view, container)
        w = start(watchers, lab_view, "--repair", "--only", container.id, "--metrics-port", "0")
        lab_view.step(container, trigger)
        lost = w.had("lost", device=DEVICE)
        assert lost["container"] == f"{container.runtime} {container.id}" and lost["source"] == "entitlement"
        restored = w.had("restored", device=DEVICE)
        assert restored["reaction_s"] >= 0
        assert probe(lab_view.host_cgroup(container), [NVIDIACTL]) == [True]
        assert nvidiactl_opens(lab, container)
        # durable: the next reload keeps it without another repair
        lab_view.step(container, "daemon-reload")
        assert probe(lab_view.host_cgroup(container), [NVIDIACTL]) == [True]
        port = next(e["port"] for e in w.seen if e["event"] == "metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert "cgdev_watch_devices_restored_total 1.0" in text
        assert "cgdev_watch_containers 1.0" in text
        assert w.stop() == 0
        assert w.seen[-1]["event"] == "stopped"
        kept = entitlements.read()  # SIGTERM left the state file whole
        assert [(e.cgroup, e.major, e.minor, e.granted) for e in kept] == [
            (cgroup_of(lab_view, container), 195, 255, "rw")
        ]
        assert not [e for e in w.seen if e["event"] in ("repair-failed", "flapping", "gained")], w.seen


def test_watch_without_repair_names_container_device_layer_and_cause(
    lab: LabHandle, lab_view: Lab, watchers: list[WatchProcess]
) -> None:
    with container_from(lab, "runc-sd", "wat-report") as container:
        record_hook_grant(lab_view, container)
        w = start(watchers, lab_view, "--only", container.id)
        lab_view.step(container, "daemon-reload")
        lost = w.had("lost", device=DEVICE)
        assert lost["container"] == f"runc {container.id}"
        assert lost["layer"] == cgroup_of(lab_view, container)  # the scope: runc's and systemd's
        assert lost["program"].startswith("sd_devices ")
        assert "systemd re-applied" in lost["cause"] and container.scope in lost["cause"]
        assert probe(lab_view.host_cgroup(container), [NVIDIACTL]) == [False], "reported, not repaired"
        assert w.stop() == 0
        assert not [e for e in w.seen if e["event"] in ("repairing", "restored")]


def test_watch_survives_daemon_reexec_and_rescans(
    lab: LabHandle, lab_view: Lab, watchers: list[WatchProcess]
) -> None:
    """A re-executed systemd leaves the bus and comes back: the watcher says so, subscribes again,
    rescans (what the re-exec re-attached was not announced), and the next reload's loss is still
    repaired."""
    with container_from(lab, "runc-sd", "wat-reexec") as container:
        record_hook_grant(lab_view, container)
        w = start(watchers, lab_view, "--repair", "--only", container.id)
        lab.exec(["systemctl", "daemon-reexec"], timeout=60)
        w.event("systemd-back")  # (its leaving is not always announced apart: the name may pass directly)
        w.event("full-scan")
        if probe(lab_view.host_cgroup(container), [NVIDIACTL]) != [True]:
            # the re-exec took it: the rescan found the loss, and its repair follows the scan's line
            w.had("restored", device=DEVICE)
        assert probe(lab_view.host_cgroup(container), [NVIDIACTL]) == [True]
        lab_view.step(container, "daemon-reload")
        w.had("restored", device=DEVICE)
        assert probe(lab_view.host_cgroup(container), [NVIDIACTL]) == [True]
        assert w.stop() == 0


def test_watch_survives_a_bus_restart_and_misses_nothing(
    lab: LabHandle, lab_view: Lab, watchers: list[WatchProcess]
) -> None:
    """The system bus itself restarts (dbus.service): the watcher's connection drops, it says so,
    reconnects with backoff, rescans, and a reload that happened while it was away is repaired."""
    with container_from(lab, "runc-sd", "wat-busrestart") as container:
        record_hook_grant(lab_view, container)
        w = start(watchers, lab_view, "--repair", "--only", container.id)
        lab.exec(["systemctl", "restart", "dbus.service"], timeout=60)
        w.event("bus-lost")
        lab_view.step(container, "daemon-reload")  # while the watcher may still be away
        w.event("bus-connected")
        w.had("restored", device=DEVICE)
        assert probe(lab_view.host_cgroup(container), [NVIDIACTL]) == [True]
        assert w.stop() == 0


def test_watch_follows_containers_coming_and_going(
    lab: LabHandle, lab_view: Lab, watchers: list[WatchProcess], state_dir: str
) -> None:
    """Containers started and deleted while it runs are added and removed; a removed one's
    entitlements are dropped from the state file."""
    w = start(watchers, lab_view, "--only", "wat-churn")
    for i in range(4):
        with container_from(lab, "crun-sd-nosub", f"wat-churn-{i}", hook=False) as container:
            record_hook_grant(lab_view, container)
            w.event("added", cgroup=cgroup_of(lab_view, container))
        w.event("removed", cgroup=cgroup_of(lab_view, container))
    # dropped at a poll once systemd has removed the cgroups too (bounded wait, not a timing claim)
    deadline = time.monotonic() + 30
    while True:
        with open(os.path.join(state_dir, entitlements.STATE_FILE)) as fh:
            left = "wat-churn" in fh.read()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, "the entitlements of deleted containers are still in the state file"
    assert w.stop() == 0


def test_watch_restores_a_runtime_default_device_it_lost(
    lab: LabHandle, lab_view: Lab, watchers: list[WatchProcess]
) -> None:
    """/dev/null is in no spec (runc allows it whatever the spec says) and in no entitlement, yet a
    `set-property DeviceAllow=` denied it and the watcher said nothing (review); it is wanted as
    a runtime default now: reported, and with --repair restored."""
    null = Request("c", 1, 3, ACC_R | ACC_W)
    with container_from(lab, "runc-sd", "wat-default", hook=False) as container:
        w = start(watchers, lab_view, "--repair", "--no-policy", "--only", container.id)
        lab.exec(["systemctl", "set-property", "--runtime", container.scope, "DeviceAllow="])
        lost = w.had("lost", device="c 1:3 rwm")
        assert lost["source"] == "runtime-default"
        w.had("restored", device="c 1:3 rwm")
        assert probe(lab_view.host_cgroup(container), [null]) == [True]
        assert w.stop() == 0
