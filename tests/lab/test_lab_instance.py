"""The running lab (instance, control) for real: systemd as PID 1, its D-Bus bus, exec into it, errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgdev.errors import EnvError
from cgdev.lab import control, instance
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab
CGDEV = [sys.executable, "-m", "cgdev", "lab"]


def test_up_again_is_idempotent(lab: LabHandle) -> None:
    """Its speed is bench/bench_lab.py's business."""
    report = control.up()
    assert not report.started
    assert report.lab.pid1 == lab.pid1


def test_systemd_is_pid1_on_a_pure_cgroup2_view(lab: LabHandle) -> None:
    out = lab.exec(
        ["sh", "-c", "cat /proc/1/comm; stat -f -c %T /sys/fs/cgroup; grep '^0::' /proc/self/cgroup"]
    )
    comm, fs_type, cgroup = out.stdout.split()
    assert (comm, fs_type) == ("systemd", "cgroup2fs")
    assert cgroup.startswith("0::/cgdev-admin/exec-")
    assert Path(f"/proc/{lab.pid1}/comm").read_text().strip() == "systemd"
    assert (lab.cgroup_root / "init.scope").is_dir()


def test_system_bus_answers_from_the_host(lab: LabHandle) -> None:
    from jeepney import DBusAddress, Properties
    from jeepney.io.blocking import open_dbus_connection

    manager = DBusAddress(
        "/org/freedesktop/systemd1", "org.freedesktop.systemd1", "org.freedesktop.systemd1.Manager"
    )
    with open_dbus_connection(bus=lab.bus_address) as conn:
        reply = conn.send_and_get_reply(Properties(manager).get("Version"), timeout=10)
    version = reply.body[0][1]
    assert version == instance.system_version(instance.require_lab())
    assert version.split(".")[0].isdigit()


def test_systemd_filters_a_transient_scope_with_device_policy(lab: LabHandle) -> None:
    """The smoke test of the real thing: DevicePolicy=closed makes systemd attach its own program."""
    script = (
        "for d in null nvidiactl; do "
        "(exec 3<>/run/cgdev-dev/$d) 2>/dev/null && echo $d=ok || echo $d=no; done"
    )
    policy = ["-p", "DevicePolicy=closed", "-p", "DeviceAllow=/dev/null rw"]
    scoped = lab.exec(["systemd-run", "--scope", "-q", *policy, "sh", "-c", script])
    assert scoped.stdout.split() == ["null=ok", "nvidiactl=no"]
    unscoped = lab.exec(["sh", "-c", "(exec 3<>/run/cgdev-dev/nvidiactl) 2>&1 || true"])
    assert "No such device or address" in unscoped.stdout  # no filter outside the scope: ENXIO


def test_exec_exit_status_and_bounds(lab: LabHandle) -> None:
    assert lab.exec(["sh", "-c", "exit 7"], check=False).returncode == 7
    with pytest.raises(EnvError, match="failed: boom"):
        lab.exec(["sh", "-c", "echo boom >&2; exit 1"])
    started = time.monotonic()
    with pytest.raises(EnvError, match=r"did not finish within 0\.5s"):
        lab.exec(["sh", "-c", "sleep 30 & sleep 31"], timeout=0.5)
    assert time.monotonic() - started < 15  # bounded, not a speed check: without the bound it hangs 30 s
    left = lab.exec(["sh", "-c", "ps -eo args | grep -c '^sleep 3[01]' || true"]).stdout.strip()
    assert left == "0"  # killed inside the lab too, the backgrounded one included


def test_systemd_job_failure_is_one_line(lab: LabHandle) -> None:
    with pytest.raises(EnvError) as caught:
        lab.exec(["systemctl", "start", "cgdev-no-such.service"])
    assert "cgdev-no-such.service" in str(caught.value) and "\n" not in str(caught.value)


def test_cli_exec_passes_the_exit_status(lab: LabHandle) -> None:
    done = subprocess.run([*CGDEV, "exec", "--", "sh", "-c", "hostname >/dev/null; exit 5"], timeout=30)
    assert done.returncode == 5


def test_unreachable_bus_is_one_line_exit_3(lab: LabHandle) -> None:
    """crun's systemd driver needs the bus; with dbus-daemon stopped, `run` says so, then the bus returns."""
    lab.exec(["systemctl", "stop", "dbus.socket", "dbus.service"])
    try:
        done = subprocess.run([*CGDEV, "run", "crun-sd"], capture_output=True, text=True, timeout=60)
    finally:
        lab.exec(["systemctl", "start", "dbus.socket", "dbus.service"])
        control.wait_ready(instance.require_lab(), 30)
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "system bus does not answer" in done.stderr
    assert instance.system_version(instance.require_lab()) is not None
