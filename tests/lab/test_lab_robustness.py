"""The lab's failure paths: bounded waits, cleanup after a failed start, locks, a `down` that finishes.

The first tests need neither the lab nor (except the lock) root; the others use the `lab` fixture,
and some of them stop and restart the lab on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgdev.errors import EnvError
from cgdev.lab import bundle, containers, control, instance, leftovers, lock, processes, runtime
from cgdev.lab.paths import LOCK_FILE, STATE_DIR
from fixtures_lab import LabHandle

CGDEV = [sys.executable, "-m", "cgdev", "lab"]


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


# -- no lab needed ------------------------------------------------------------------------------


@pytest.mark.parametrize("linux", ["", ', "linux": null'])
def test_a_config_without_linux_section_gets_an_empty_one(tmp_path: Path, linux: str) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"process": {"args": ["sleep", "1"]}, "root": {"path": "rootfs"}' + linux + "}")
    config = bundle.load_config(path, tmp_path / "rootfs")
    assert config["linux"] == {}


def test_a_failing_busybox_is_one_line(tmp_path: Path) -> None:
    busybox = _script(tmp_path / "busybox", "echo 'applet table broken' >&2; exit 4")
    with pytest.raises(EnvError, match=r"--list failed: applet table broken$") as raised:
        bundle.ensure_rootfs(tmp_path / "var", busybox)
    assert "\n" not in str(raised.value)


def test_a_hanging_busybox_is_bounded(tmp_path: Path) -> None:
    busybox = _script(tmp_path / "busybox", "exec sleep 30")
    started = time.monotonic()
    with pytest.raises(EnvError, match=r"did not finish within 0\.5s"):
        bundle.ensure_rootfs(tmp_path / "var", busybox, timeout=0.5)
    assert time.monotonic() - started < 5


def test_one_version_parser() -> None:
    assert runtime.parse_version("1.8.1") == (1, 8, 1)
    assert runtime.Runtime("crun", "/x", "1.21").version_tuple == (1, 21)


def test_kill_if_kills_only_what_the_check_accepts() -> None:
    with subprocess.Popen(["sleep", "30"]) as proc:
        try:
            processes.kill_if(proc.pid, lambda _pid: False)
            assert proc.poll() is None and not control._is_unshare(proc.pid)
            processes.kill_if(proc.pid, lambda _pid: True)
            assert proc.wait(timeout=5) == -9
        finally:
            proc.kill()


def test_kill_if_a_process_that_exits_during_the_check_is_harmless() -> None:
    proc = subprocess.Popen(["sleep", "30"])

    def gone_meanwhile(pid: int) -> bool:
        proc.kill()
        proc.wait(timeout=5)  # reaped: the pid is free for reuse, the pidfd still names the dead one
        return True

    processes.kill_if(proc.pid, gone_meanwhile)  # no ProcessLookupError, no stranger killed


@pytest.mark.skipif(os.geteuid() != 0, reason=f"{LOCK_FILE} is root's")
def test_lab_lock_is_reentrant_here_and_exclusive_elsewhere() -> None:
    other = [sys.executable, "-c", "from cgdev.lab.lock import lab_lock\nwith lab_lock(0.3): pass"]
    with lock.lab_lock(1), lock.lab_lock(1):  # down deletes containers under its own lock
        done = subprocess.run(other, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and "another cgdev lab command holds" in done.stderr
    assert subprocess.run(other, capture_output=True, timeout=30).returncode == 0


# -- the real lab -------------------------------------------------------------------------------


@pytest.mark.lab
def test_a_timeout_returns_although_a_process_elsewhere_holds_the_pipe(lab: LabHandle) -> None:
    """systemd-run --scope moves its command out of our exec leaf; it keeps our stdout open."""
    holder = "cgdev-test-holder.scope"
    script = f"systemd-run --scope -q --unit={holder} sleep 30 & sleep 31"
    started = time.monotonic()
    try:
        with pytest.raises(EnvError, match=r"did not finish within 2s"):
            lab.running.exec(["sh", "-c", script], timeout=2)
        elapsed = time.monotonic() - started
        assert lab.exec(["systemctl", "is-active", holder], check=False).stdout.strip() == "active"
    finally:
        lab.exec(["systemctl", "stop", holder], check=False)
    assert elapsed < 2 + instance.DRAIN_AFTER_KILL_S + 3, elapsed


@pytest.mark.lab
def test_run_config_with_null_linux_is_one_line(lab: LabHandle, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ociVersion": "1.0.2", "process": {"args": ["sleep", "9"], "cwd": "/"},
                                  "root": {"path": "rootfs"}, "linux": None}))  # fmt: skip
    done = subprocess.run([*CGDEV, "run", "--config", str(config), "--runtime", "crun",
                           "--cgroup-driver", "cgroupfs", "--name", "lab-nolinux"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 1, done.stderr
    assert done.returncode in (0, 3), done.stderr
    if done.returncode == 0:
        containers.delete_container(lab.running, "lab-nolinux")


@pytest.mark.lab
def test_container_changes_wait_for_the_lab_lock(lab: LabHandle) -> None:
    mine = lab.run("runc-fs", name="lab-locked-old")
    env = {**os.environ, "CGDEV_LAB_TIMEOUT": "1"}
    try:
        with lock.lab_lock(5):
            run = subprocess.run([*CGDEV, "run", "runc-fs", "--name", "lab-locked"],
                                 capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
            delete = subprocess.run([*CGDEV, "delete", mine.id], capture_output=True, text=True,
                                    timeout=60, env=env)  # fmt: skip
        for done in (run, delete):
            assert done.returncode == 3, done.stderr
            assert "another cgdev lab command holds" in done.stderr and len(done.stderr.splitlines()) == 1
        rt = lab.runtimes["runc"]
        assert runtime.state_pid(lab.running, rt, "cgroupfs", "lab-locked") is None
        assert runtime.state_pid(lab.running, rt, "cgroupfs", mine.id) == mine.pid
    finally:
        lab.delete(mine.id)


@pytest.mark.lab
def test_system_version_gives_up_on_a_hanging_bus(lab: LabHandle) -> None:
    """A frozen dbus-daemon: `lab status` (system_version(check=False)) answers within busctl's
    own 5 s instead of failing or hanging (the subprocess timeout would fail the test)."""
    lab.exec(["systemctl", "kill", "--signal=SIGSTOP", "dbus.service"])
    try:
        done = subprocess.run([*CGDEV, "status"], capture_output=True, text=True, timeout=30)
    finally:
        lab.exec(["systemctl", "kill", "--signal=SIGCONT", "dbus.service"])
    assert done.returncode == 0, done.stderr
    assert "? (its system bus does not answer)" in done.stdout
    assert instance.system_version(lab.running) is not None


@pytest.mark.lab
def test_down_finishes_when_deletes_fail_and_deletes_each_id_once(
    lab: LabHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unrecorded containers (a run that failed half-way) go with their own driver, once per state dir."""
    failing = {"lab-rec-fail", "lab-unrec-sd"}
    for preset, name in [("runc-fs", "lab-rec-fail"), ("runc-sd", "lab-unrec-sd"),
                         ("crun-sd", "lab-unrec-csd"), ("crun-fs", "lab-unrec-cfs")]:  # fmt: skip
        lab.run(preset, name=name)
    for name in ("lab-unrec-sd", "lab-unrec-csd", "lab-unrec-cfs"):
        (STATE_DIR / "containers" / f"{name}.json").unlink()
    crun, runc = lab.runtimes["crun"], lab.runtimes["runc"]
    assert runtime.state_driver(lab.running, runc, "lab-unrec-sd") == "systemd"
    assert runtime.state_driver(lab.running, crun, "lab-unrec-csd") == "systemd"
    assert runtime.state_driver(lab.running, crun, "lab-unrec-cfs") == "cgroupfs"
    calls: list[tuple[str, str]] = []
    real_delete = runtime.delete

    def delete(lab_, rt, driver, container_id, timeout=20):
        calls.append((container_id, driver))
        if container_id in failing:
            raise EnvError(f"lab exec: simulated: {container_id} did not finish within 20s")
        return real_delete(lab_, rt, driver, container_id, timeout)

    try:
        with monkeypatch.context() as patched:
            patched.setattr(runtime, "delete", delete)
            report = control.down()
        assert instance.find_lab() is None and report.leftovers == []
        assert sorted(e.split(":")[0] for e in report.errors) == sorted(failing), report.errors
        assert all("\n" not in e for e in report.errors)
        assert sorted(report.deleted) == ["lab-unrec-cfs", "lab-unrec-csd"]
        assert (
            calls.count(("lab-unrec-csd", "systemd")) == 1 and calls.count(("lab-unrec-cfs", "cgroupfs")) == 1
        )
        assert ("lab-unrec-sd", "systemd") in calls
    finally:
        lab.report = control.up()
        lab.runtimes = lab.report.runtimes
    assert instance.find_lab() is not None


@pytest.mark.lab
def test_a_failed_up_stops_what_it_started(lab: LabHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    control.down()
    try:
        with monkeypatch.context() as patched:
            patched.setattr(sys, "executable", "/bin/false")  # the launcher itself fails
            with pytest.raises(EnvError, match="launcher failed with exit status 1"):
                control.start_systemd(10)
        assert leftovers.leftovers() == []

        started: list[int] = []

        def not_ready(lab_: instance.Lab, timeout: float) -> None:  # systemd runs, then "never" gets ready
            started.append(lab_.pid1)
            raise EnvError("the lab's systemd is not ready after 1s (simulated)")

        with monkeypatch.context() as patched:
            patched.setattr(control, "wait_ready", not_ready)
            with pytest.raises(EnvError, match="simulated") as raised:
                control.up(timeout=10)
        assert "\n" not in str(raised.value)
        assert started and not processes.alive(started[0])
        assert instance.find_lab() is None and leftovers.leftovers() == []
    finally:
        lab.report = control.up()
        lab.runtimes = lab.report.runtimes
    assert instance.system_version(lab.running)
