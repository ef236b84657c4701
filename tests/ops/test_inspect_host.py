"""``HostView``: one flag instead of four to look into a nested systemd, derived from the real lab.

The derivation is checked against what the lab itself says (its PID 1, its cgroup, its bus), and
the one-flag command lines (``--lab``, ``--ns-pid``, ``--host-root``) against the four detailed
flags: the same JSON, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from cgdev.adapters import cgroupfs
from cgdev.errors import InputError, NotFound
from cgdev.ops.inspect import HostView, inspect, namespace_cgroup_root, systemd_warning
from cgdev.ops.layers import SystemdStatus
from fixtures_kernel import requires_root_bpf
from fixtures_lab import LabHandle


def stable(text: str) -> str:
    """The output with program ids masked: the lab is shared, and a reload by anyone else between
    two runs re-attaches systemd's program under a new id (its tag, the content, stays)."""
    return re.sub(r'"id": \d+', '"id": N', text)


def cgdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, timeout=60)


def test_local_is_this_machine() -> None:
    host = HostView.local()
    assert host.bus is None and not host.require_bus and host.systemd
    assert host.systemd_root == "/" and host.systemd_fs_root == "/"
    assert ("crun", "/run/crun") in host.runtime_roots and ("runc", "/run/runc") in host.runtime_roots


def test_a_plain_directory_is_a_chroot_with_its_own_systemd(tmp_path: object) -> None:
    root = str(tmp_path)
    host = HostView.for_root(root)
    assert host.systemd_fs_root == root and host.systemd_root == "/"
    assert host.bus == f"unix:path={root}/run/dbus/system_bus_socket" and not host.require_bus
    assert list(host.runtime_roots) == [
        ("crun", f"{root}/run/crun"),
        ("runc", f"{root}/run/runc"),
        ("youki", f"{root}/run/youki"),
        ("runc", f"{root}/run/containerd/runc/*"),  # containerd's shim: one root per namespace
    ]
    assert HostView.for_root(root, systemd_root="/machine.slice/node").systemd_root == "/machine.slice/node"


def test_bad_roots_and_pids_name_their_field(tmp_path: object) -> None:
    with pytest.raises(InputError) as err:
        HostView.for_root(os.path.join(str(tmp_path), "none"))
    assert err.value.field == "host_root" and "not a directory" in str(err.value)
    with pytest.raises(NotFound) as missing:
        HostView.for_ns_pid(2**22 + 1)  # above pid_max's ceiling: never a process
    assert missing.value.field == "ns_pid" and missing.value.value == 2**22 + 1


def test_the_warning_says_why_systemd_was_not_asked() -> None:
    assert systemd_warning(f"{SystemdStatus.UNREACHABLE}: no D-Bus system bus at /x") == (
        "systemd not asked: no D-Bus system bus at /x"
    )
    assert systemd_warning(SystemdStatus.OK) is None and systemd_warning(SystemdStatus.OFF) is None


@requires_root_bpf
def test_a_root_without_systemd_goes_on_with_a_warning(tmp_path: object) -> None:
    """The derived bus is tried, not required: nobody answers in an empty root, one warning line."""
    done = cgdev("explain", str(os.getpid()), "--host-root", str(tmp_path), "--device", "c 1:3", "--json")
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["systemd"].startswith("unreachable: ")
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("cgdev explain: warning: systemd not asked:") and str(tmp_path) in line
    # the one-line input error names the flag, not the field
    bad = cgdev("explain", "1", "--host-root", f"{tmp_path}/none", "--device", "c 1:3")
    assert bad.returncode == 2 and bad.stderr.startswith("cgdev explain: --host-root ")


# -- against the real lab ---------------------------------------------------------------------------


@pytest.mark.lab
def test_for_ns_pid_derives_the_four_settings_of_the_lab(lab: LabHandle) -> None:
    host = HostView.for_ns_pid(lab.pid1)
    fs_root = f"/proc/{lab.pid1}/root"
    # systemd's cgroup root: the lab's cgroup (what its systemd calls /), not PID 1's init.scope
    assert host.systemd_root == cgroupfs.relative(str(lab.cgroup_root), cgroupfs.cgroup2_mount())
    assert namespace_cgroup_root(lab.pid1) == host.systemd_root
    assert cgroupfs.process_cgroup(lab.pid1) == host.systemd_root + "/init.scope"
    assert host.bus == lab.bus_address and host.systemd_fs_root == fs_root
    roots = host.runtime_roots
    assert ("crun", f"{fs_root}/run/crun") in roots and ("runc", f"{fs_root}/run/runc") in roots
    assert ("runc", f"{fs_root}/run/containerd/runc/*") in roots
    assert HostView.for_root(fs_root) == host  # the same host, however it is named


@pytest.mark.lab
def test_one_flag_explains_a_lab_container_as_the_four_flags_do(lab: LabHandle) -> None:
    container = lab.run("crun-sd", name="ops-oneflag")
    try:
        fs_root = f"/proc/{lab.pid1}/root"
        systemd_root = cgroupfs.relative(str(lab.cgroup_root), cgroupfs.cgroup2_mount())
        four = ["--runtime-root", f"{fs_root}/run/crun", "--systemd-root", systemd_root,
                "--bus", lab.bus_address, "--systemd-fs-root", fs_root]  # fmt: skip
        ask = [container.id, "--device", "/dev/nvidiactl", "--json"]
        long_form = cgdev("explain", *ask, *four)
        assert long_form.returncode == 1, long_form.stderr  # the double filter denies
        assert json.loads(long_form.stdout)["systemd"] == "ok"
        for one in (["--lab"], ["--ns-pid", str(lab.pid1)], ["--host-root", fs_root]):
            short = cgdev("explain", *ask, *one)
            assert (short.returncode, stable(short.stdout), short.stderr) == (1, stable(long_form.stdout), "")
        shown = cgdev("show", container.id, "--lab", "--json").stdout
        assert stable(shown) == stable(cgdev("show", container.id, "--json", *four).stdout)
        # audit --lab looks at the lab's own subtree, and finds this container there
        audited = json.loads(cgdev("audit", "--lab", "--json").stdout)
        rows = {row["container_id"]: row for row in audited["containers"]}
        assert all(row["cgroup"].startswith(systemd_root + "/") for row in audited["containers"])
        assert rows[container.id]["programs"] == 2  # systemd's on the scope, crun's below it
        # and the operation the front ends call answers the same as the command line
        inspection = inspect(container.id, HostView.for_ns_pid(lab.pid1))
        assert inspection.systemd == SystemdStatus.OK
        assert inspection.target.cgroup == json.loads(long_form.stdout)["cgroup"]
    finally:
        lab.delete(container.id)


@pytest.mark.lab
def test_lab_status_prints_the_one_flag_form(lab: LabHandle) -> None:
    done = cgdev("lab", "status")
    assert done.returncode == 0, done.stderr
    assert "explain with: cgdev explain --lab TARGET --device DEV" in done.stdout
