"""The systemd D-Bus adapter against a real systemd 252 and a real dbus-daemon (the lab).

Nothing here fakes systemd: scopes are started through the adapter around a real ``sleep`` inside
the lab, read back, changed and reloaded, and the kernel's view (``bpftool cgroup show`` on the
host-side cgroup) is checked where systemd's device program matters.  The pure parts (address
parsing, property typing, the import cost) run without the lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cgdev.adapters.systemd_client import (
    JobRemoved,
    SystemdClient,
    bus_socket_path,
)
from cgdev.adapters.systemd_properties import cgroup_interface, typed_properties
from cgdev.adapters.systemd_watch import (
    PropertiesChanged,
    Reloading,
    SystemdEvent,
    SystemdWatcher,
    UnitNew,
    UnitRemoved,
)
from cgdev.core.semantics.systemd import reload_reapplies_devices
from cgdev.errors import BusUnreachable, InputError, NotFound, SystemdError


@pytest.fixture
def client(lab: Any) -> Iterator[SystemdClient]:
    with SystemdClient(lab.bus_address) as c:
        yield c


def _start_sleeper(lab: Any) -> int:
    """A process in systemd's own PID namespace (StartTransientUnit takes pids as systemd sees them)."""
    out = lab.exec(["sh", "-c", "sleep 600 >/dev/null 2>&1 </dev/null & echo $!"]).stdout
    return int(out.strip())


@pytest.fixture
def sleeper(lab: Any) -> Iterator[int]:
    pid = _start_sleeper(lab)
    yield pid
    lab.exec(["kill", str(pid)], check=False)


@pytest.fixture
def scope(client: SystemdClient) -> Iterator[str]:
    """A unique scope name, stopped at the end if the test left it running."""
    name = f"cgdev-test-{uuid.uuid4().hex[:8]}.scope"
    yield name
    with contextlib.suppress(NotFound, SystemdError):
        client.stop_unit(name, timeout=10)


def _device_programs(lab: Any, control_group: str) -> list[dict[str, Any]]:
    host_path = Path(lab.cgroup_root) / control_group.lstrip("/")
    out = subprocess.run(
        ["bpftool", "-j", "cgroup", "show", str(host_path)], capture_output=True, text=True, check=True
    ).stdout
    return [p for p in json.loads(out.strip() or "[]") if p.get("attach_type") == "cgroup_device"]


def _sd_devices_ids(lab: Any, control_group: str) -> list[int]:
    return [p["id"] for p in _device_programs(lab, control_group) if p.get("name") == "sd_devices"]


async def _collect(watcher: SystemdWatcher, until: Any, timeout: float = 10.0) -> list[SystemdEvent]:
    """Events up to and including the first one for which ``until`` is true."""
    events: list[SystemdEvent] = []
    async with asyncio.timeout(timeout):
        async for event in watcher:
            events.append(event)
            if until(event):
                return events
    return events


# --------------------------------------------------------------------------------------------------
# pure parts (no bus)


def test_sync_adapter_does_not_import_asyncio() -> None:
    code = "import sys, cgdev.adapters.systemd_client; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bus_address_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    assert bus_socket_path(None) == "/run/dbus/system_bus_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/tmp/x/bus")
    assert bus_socket_path(None) == "/tmp/x/bus"
    assert (
        bus_socket_path("/proc/7/root/run/dbus/system_bus_socket")
        == "/proc/7/root/run/dbus/system_bus_socket"
    )
    assert bus_socket_path("unix:path=/run/a%20b") == "/run/a b"
    with pytest.raises(InputError, match="bus address: 'tcp:host=x,port=1'"):
        bus_socket_path("tcp:host=x,port=1")


def test_property_signatures_are_explicit() -> None:
    typed = dict(
        typed_properties(
            {
                "PIDs": [12, 13],
                "Delegate": True,
                "DevicePolicy": "strict",
                "DeviceAllow": [("/dev/null", "rwm"), ["char-pts", "rw"]],
                "BPFProgram": [("device", "/sys/fs/bpf/x")],
                "Slice": "system.slice",
                "CPUWeight": 50,
                "MemoryMax": ("t", 1 << 30),
            }
        )
    )
    assert typed == {
        "PIDs": ("au", [12, 13]),
        "Delegate": ("b", True),
        "DevicePolicy": ("s", "strict"),
        "DeviceAllow": ("a(ss)", [("/dev/null", "rwm"), ("char-pts", "rw")]),
        "BPFProgram": ("a(ss)", [("device", "/sys/fs/bpf/x")]),
        "Slice": ("s", "system.slice"),
        "CPUWeight": ("t", 50),
        "MemoryMax": ("t", 1 << 30),
    }


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"PIDs": [0]}, "PIDs: 0 is not a process id"),
        ({"PIDs": ["12"]}, "PIDs: '12' is not a process id"),
        ({"Delegate": "yes"}, "Delegate: 'yes' is not a boolean"),
        ({"DevicePolicy": "open"}, "DevicePolicy: 'open' is not one of auto, closed, strict"),
        ({"DeviceAllow": [("/dev/null", "rwx")]}, "DeviceAllow: '/dev/null rwx' has access outside rwm"),
        ({"DeviceAllow": [("/tmp/null", "r")]}, "DeviceAllow: '/tmp/null' is not a device node"),
        ({"DeviceAllow": "/dev/null rw"}, "DeviceAllow: '/dev/null rw' is not a list of pairs"),
        ({"BPFProgram": [("device",)]}, "BPFProgram: .* is not a pair of strings"),
        ({"CPUWeight": -1}, "CPUWeight: -1 is not >= 0"),
        ({"MemoryMax": 5}, "property: 'MemoryMax' is unknown to cgdev"),
        ({"MemoryMax": ("t", "1G")}, "MemoryMax: '1G' does not fit D-Bus signature 't'"),
        ({"MemoryMax": ("q(", 1)}, "MemoryMax: 1 does not fit D-Bus signature 'q\\('"),
    ],
)
def test_bad_property_values_are_input_errors(props: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        typed_properties(props)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_cgroup_interface_by_unit_type() -> None:
    assert cgroup_interface("a.scope") == "org.freedesktop.systemd1.Scope"
    assert cgroup_interface("system.slice") == "org.freedesktop.systemd1.Slice"
    assert cgroup_interface("dbus.service") == "org.freedesktop.systemd1.Service"
    with pytest.raises(InputError, match=r"unit: 'basic\.target' has no cgroup"):
        cgroup_interface("basic.target")


def test_missing_socket_is_bus_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "no_bus"
    with pytest.raises(BusUnreachable) as err:
        SystemdClient(str(missing))
    assert err.value.exit_code == 3
    assert str(err.value) == f"no D-Bus system bus at {missing} (No such file or directory)"


def test_refused_socket_is_bus_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: connect() is refused
        with pytest.raises(
            BusUnreachable, match=r"no D-Bus system bus at .*bus \(Connection refused\)"
        ) as err:
            SystemdClient(f"unix:path={path}")
        assert err.value.exit_code == 3 and "\n" not in str(err.value)
        with pytest.raises(BusUnreachable, match="Connection refused"):
            asyncio.run(SystemdWatcher(str(path)).open())


@contextlib.contextmanager
def _misbehaving_bus(path: Path, answer: bytes) -> Iterator[None]:
    """Not systemd: a socket that answers the D-Bus AUTH line with ``answer`` and then says
    nothing more, to check that cgdev's own waits are bounded and its errors one line.  Its thread
    and the connections it holds open end with the block: a thread left behind would make every
    later fork() in this process (the probe's) warn on Python 3.12+."""
    import threading

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # held open, silent, until the block ends
            try:
                data = b""
                while b"\r\n" not in data.split(b"AUTH", 1)[-1]:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(answer)
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        for sock in (server, *held):  # shutdown wakes the thread's accept()/recv()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        thread.join(5)
        for sock in (server, *held):
            sock.close()


def test_a_bus_that_never_answers_hello_is_unreachable_not_a_hang(tmp_path: Path) -> None:
    import signal

    with _misbehaving_bus(tmp_path / "bus", b"OK 0123456789abcdef0123456789abcdef\r\n"):
        signal.signal(signal.SIGALRM, lambda *_: pytest.fail("SystemdClient hung past its connect timeout"))
        signal.alarm(20)
        try:
            with pytest.raises(BusUnreachable, match="no reply to Hello") as err:
                SystemdClient(str(tmp_path / "bus"))
            assert "\n" not in str(err.value)
        finally:
            signal.alarm(0)


def test_a_socket_that_rejects_authentication_is_unreachable_for_both_clients(tmp_path: Path) -> None:
    with _misbehaving_bus(tmp_path / "bus", b"REJECTED EXTERNAL\r\n"):
        with pytest.raises(BusUnreachable, match="Authentication failed"):
            SystemdClient(str(tmp_path / "bus"))
        with pytest.raises(BusUnreachable, match="Authentication failed"):
            asyncio.run(SystemdWatcher(str(tmp_path / "bus")).open())


def test_cli_reports_unreachable_bus_in_one_line(tmp_path: Path) -> None:
    """What a front end does with the error: one line on stderr, exit status 3."""
    code = (
        "import sys\n"
        "from cgdev.adapters.systemd_client import SystemdClient\n"
        "from cgdev.errors import CgdevError\n"
        "try:\n    SystemdClient(sys.argv[1])\n"
        "except CgdevError as e:\n    print(e, file=sys.stderr); sys.exit(e.exit_code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x")], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("no D-Bus system bus at ")


# --------------------------------------------------------------------------------------------------
# the real systemd (lab)


@pytest.mark.lab
def test_start_scope_with_device_properties_reads_back(
    lab: Any, client: SystemdClient, sleeper: int, scope: str
) -> None:
    removed = client.start_transient_scope(
        scope,
        [sleeper],
        delegate=True,
        device_policy="strict",
        device_allow=[("/dev/null", "rwm"), ("/dev/zero", "r"), ("/dev/null", "r")],
    )
    assert removed.unit == scope and removed.result == "done"
    assert removed.job.startswith("/org/freedesktop/systemd1/job/")

    devices = client.unit_properties(scope)
    assert devices.unit == scope
    assert devices.control_group == f"/system.slice/{scope}"
    assert devices.delegate is True
    assert devices.device_policy == "strict"
    # systemd keeps one entry per node: the last one given for /dev/null wins.
    assert sorted(devices.device_allow) == [("/dev/null", "r"), ("/dev/zero", "r")]
    assert devices.bpf_program == []
    assert devices.need_daemon_reload is False

    # systemd turned the properties into its own device program on the scope's cgroup.
    assert len(_sd_devices_ids(lab, devices.control_group)) == 1


@pytest.mark.lab
def test_unit_lookup_by_pid_and_cgroup(client: SystemdClient, sleeper: int, scope: str) -> None:
    client.start_transient_scope(scope, [sleeper], device_policy="closed")
    path = client.get_unit(scope)
    assert path.startswith("/org/freedesktop/systemd1/unit/")
    assert client.get_unit_by_pid(sleeper) == path
    assert client.unit_name_for_pid(sleeper) == scope

    control_group = client.control_group(scope)
    assert client.unit_for_cgroup(control_group) == scope
    assert client.unit_for_cgroup(f"{control_group}/container") == scope  # crun's sub-cgroup
    assert client.unit_for_cgroup("/system.slice") == "system.slice"
    assert client.unit_for_cgroup("/system.slice/not-a-unit.scope/x") == "system.slice"
    assert client.unit_for_cgroup("/") == "-.slice"
    with pytest.raises(InputError, match=r"cgroup: 'system\.slice' is not an absolute cgroup path"):
        client.unit_for_cgroup("system.slice")


@pytest.mark.lab
def test_runtime_property_change_regenerates_sd_devices(
    lab: Any, client: SystemdClient, sleeper: int, scope: str
) -> None:
    client.start_transient_scope(scope, [sleeper], device_policy="strict", device_allow=[("/dev/null", "rw")])
    control_group = client.control_group(scope)
    before = _sd_devices_ids(lab, control_group)

    client.set_unit_properties(scope, {"DeviceAllow": [("/dev/full", "rw")]}, runtime=True)

    devices = client.unit_properties(scope)
    assert sorted(devices.device_allow) == [("/dev/full", "rw"), ("/dev/null", "rw")]
    after = _sd_devices_ids(lab, control_group)
    assert len(after) == 1 and after != before  # a fresh program replaced systemd's previous one


@pytest.mark.lab
def test_reload_applies_edited_unit_file_and_clears_need_daemon_reload(
    lab: Any, client: SystemdClient, sleeper: int, scope: str
) -> None:
    client.start_transient_scope(scope, [sleeper], device_policy="strict", device_allow=[("/dev/null", "rw")])
    control_group = client.control_group(scope)
    before = _sd_devices_ids(lab, control_group)
    # An out-of-band edit of the scope's unit file (the transient fragment systemd wrote): systemd
    # notices the newer mtime (NeedDaemonReload) and applies the line only on reload.
    fragment = f"/run/systemd/transient/{scope}"
    lab.exec(
        [
            "sh",
            "-c",
            f"grep -q '^DeviceAllow=/dev/null rw' {fragment} && echo 'DeviceAllow=/dev/zero r' >> {fragment}",
        ]
    )
    assert client.unit_properties(scope).need_daemon_reload is True

    async def reload_and_watch() -> list[SystemdEvent]:
        async with SystemdWatcher(lab.bus_address, properties=False) as watcher:
            client.reload()  # returns once systemd has finished reloading
            return await _collect(watcher, lambda e: e == Reloading(False))

    events = asyncio.run(reload_and_watch())
    assert [e for e in events if isinstance(e, Reloading)] == [Reloading(True), Reloading(False)]

    devices = client.unit_properties(scope)
    assert devices.need_daemon_reload is False
    assert sorted(devices.device_allow) == [("/dev/null", "rw"), ("/dev/zero", "r")]
    after = _sd_devices_ids(lab, control_group)
    if not reload_reapplies_devices(lab.report.systemd_version):
        # systemd 257 loads the edited file but rebuilds no program until the unit's next change
        assert after == before
        client.set_unit_properties(scope, {"CPUWeight": 50})
        after = _sd_devices_ids(lab, control_group)
    assert len(after) == 1 and after != before  # a fresh sd_devices from the edited properties


@pytest.mark.lab
def test_reload_without_waiting_still_reloads(lab: Any, client: SystemdClient) -> None:
    async def reload_and_watch() -> list[SystemdEvent]:
        async with SystemdWatcher(lab.bus_address, properties=False) as watcher:
            client.reload(wait=False)
            return await _collect(watcher, lambda e: e == Reloading(False))

    assert Reloading(False) in asyncio.run(reload_and_watch())
    assert client.get_unit("init.scope")  # the connection is still usable


@pytest.mark.lab
def test_watcher_sees_unit_and_job_lifecycle(
    lab: Any, client: SystemdClient, sleeper: int, scope: str
) -> None:
    async def lifecycle() -> list[SystemdEvent]:
        async with SystemdWatcher(lab.bus_address) as watcher:
            started = client.start_transient_scope(scope, [sleeper], device_policy="closed")
            client.set_unit_properties(scope, {"CPUWeight": 50})
            stopped = client.stop_unit(scope)
            events = await _collect(watcher, lambda e: isinstance(e, UnitRemoved) and e.unit == scope)
            assert started in events and stopped in events
            return events

    events = asyncio.run(lifecycle())
    mine = [e for e in events if getattr(e, "unit", None) == scope]
    assert isinstance(mine[0], UnitNew) and isinstance(mine[-1], UnitRemoved)
    assert [e.result for e in mine if isinstance(e, JobRemoved)] == ["done", "done"]
    unit_path = mine[0].path
    changes = [e for e in events if isinstance(e, PropertiesChanged) and e.path == unit_path]
    assert any(e.changed.get("ActiveState") == "active" for e in changes)


@pytest.mark.lab
def test_watcher_close_is_clean(lab: Any) -> None:
    async def open_close() -> None:
        watcher = SystemdWatcher(lab.bus_address)
        await watcher.open()
        await watcher.close()
        await watcher.close()  # idempotent
        with pytest.raises(BusUnreachable, match="watcher is closed"):
            await watcher.next_event(1.0)

    asyncio.run(open_close())


# --------------------------------------------------------------------------------------------------
# typed errors from the real systemd


@pytest.mark.lab
def test_unknown_unit_is_not_found(client: SystemdClient) -> None:
    with pytest.raises(NotFound) as err:
        client.unit_properties("cgdev-no-such-unit.scope")
    assert str(err.value) == "no systemd unit cgdev-no-such-unit.scope" and err.value.exit_code == 2
    with pytest.raises(NotFound, match=r"no systemd unit cgdev-no-such-unit\.service"):
        client.get_unit("cgdev-no-such-unit.service")


@pytest.mark.lab
def test_pid_outside_any_unit_is_not_found(client: SystemdClient) -> None:
    with pytest.raises(NotFound, match="no systemd unit for pid 4000000"):
        client.get_unit_by_pid(4_000_000)


@pytest.mark.lab
def test_scope_with_missing_pid_is_a_systemd_error(client: SystemdClient, scope: str) -> None:
    with pytest.raises(SystemdError) as err:
        client.start_transient_scope(scope, [4_000_000], device_policy="strict")
    # systemd 252 names the pid; 257 reports the failed property instead, with the same error name
    assert str(err.value) in (
        "systemd: org.freedesktop.DBus.Error.UnixProcessIdUnknown: Process with ID 4000000 does not exist.",
        "systemd: org.freedesktop.DBus.Error.UnixProcessIdUnknown: Failed to set unit properties: "
        "No such process",
    )
    assert err.value.exit_code == 3
    with pytest.raises(NotFound):
        client.get_unit(scope)


@pytest.mark.lab
def test_failed_job_raises_with_its_result(client: SystemdClient, sleeper: int, scope: str) -> None:
    asserts = [("AssertPathExists", False, False, "/cgdev-does-not-exist")]
    with pytest.raises(SystemdError) as err:
        client.start_transient_scope(scope, [sleeper], extra={"Asserts": asserts})
    assert str(err.value) == (
        f"systemd: StartTransientUnit {scope}: job assert (an assertion of the unit failed)"
    )


@pytest.mark.lab
def test_values_systemd_rejects_keep_its_message(client: SystemdClient, sleeper: int, scope: str) -> None:
    with pytest.raises(SystemdError, match="InvalidArgs: Invalid unit name 'not-a-slice'"):
        client.start_transient_scope(scope, [sleeper], slice="not-a-slice")
    client.start_transient_scope(scope, [sleeper])
    # systemd 252 takes BPFProgram= only when the unit is created (DESIGN.md: a pin, not a property).
    with pytest.raises(SystemdError, match="PropertyReadOnly: Cannot set property BPFProgram"):
        client.set_unit_properties(scope, {"BPFProgram": [("device", "/sys/fs/bpf/cgdev-x")]})


@pytest.mark.lab
def test_bad_input_changes_nothing(client: SystemdClient, sleeper: int, scope: str) -> None:
    with pytest.raises(InputError, match="DeviceAllow: '/dev/null rx' has access outside rwm"):
        client.start_transient_scope(scope, [sleeper], device_allow=[("/dev/null", "rx")])
    with pytest.raises(InputError, match=r"scope: 'cgdev-x\.service' does not end in \.scope"):
        client.start_transient_scope("cgdev-x.service", [sleeper])
    with pytest.raises(NotFound):
        client.get_unit(scope)  # nothing was created


@pytest.mark.lab
def test_closed_connection_is_bus_unreachable(client: SystemdClient) -> None:
    client.close()
    with pytest.raises(BusUnreachable, match="connection lost"):
        client.get_unit("init.scope")


# -- systemd semantics end to end: predict the program systemd attaches --------------------------

PREDICTION_CASES: list[tuple[str, list[tuple[str, str]]]] = [
    ("closed", []),
    ("strict", []),
    ("auto", []),
    ("auto", [("/dev/null", "r")]),
    ("strict", [("/dev/null", "r")]),
    ("strict", [("char-pts", "rw")]),
    ("strict", [("block-loop", "rw")]),
    ("strict", [("char-*", "m")]),
    ("strict", [("/dev/char/195:255", "rw")]),
    ("strict", [("char-no-such-group-*", "rw")]),
    ("closed", [("char-no-such-group", "rw"), ("/dev/zero", "w")]),
    ("strict", [("block-*", "r"), ("char-mem", "rw")]),
    ("closed", [("char-pts", "rwm"), ("/dev/char/10:200", "rw")]),
    ("strict", [("/dev/block/7:0", "rw"), ("char-136", "w"), ("/dev/full", "")]),
]


@pytest.mark.lab
@pytest.mark.parametrize(("device_policy", "device_allow"), PREDICTION_CASES)
def test_sd_devices_program_is_the_predicted_policy(
    lab: Any, client: SystemdClient, sleeper: int, scope: str, device_policy: str, device_allow: list[Any]
) -> None:
    """Start a scope through cgdev's client; lift what systemd attached; compare with the policy
    predicted from the unit's properties, and both with the kernel's verdicts."""
    from cgdev.adapters import bpf
    from cgdev.adapters.scratch_cgroup import ScratchCgroup
    from cgdev.core import isa
    from cgdev.core.lift import lift
    from cgdev.core.policy import Policy
    from cgdev.core.semantics import systemd_policy

    client.start_transient_scope(scope, [sleeper], device_policy=device_policy, device_allow=device_allow)
    unit = client.unit_properties(scope)
    root = f"/proc/{lab.pid1}/root"

    def stat_in_lab(path: str) -> tuple[str, int, int] | None:
        import os
        import stat

        try:
            st = os.stat(root + path)
        except OSError:
            return None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            return None
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        return kind, os.major(st.st_rdev), os.minor(st.st_rdev)

    with open(f"{root}/proc/devices") as f:
        proc_devices = f.read()
    predicted = systemd_policy(unit.device_policy, unit.device_allow, proc_devices, stat_in_lab)

    programs = _device_programs(lab, unit.control_group)
    host_path = str(Path(lab.cgroup_root) / unit.control_group.lstrip("/"))
    if not programs:
        assert predicted == Policy.allow_all(), "systemd attached nothing, cgdev predicted a filter"
    else:
        assert [p.get("name") for p in programs] == ["sd_devices"]
        with bpf.prog_fd_by_id(programs[0]["id"]) as fd:
            lifted = lift(isa.decode(bpf.prog_info(fd).xlated))
        assert lifted.opaque is None
        assert lifted.generator == "systemd"
        assert lifted.policy == predicted, lifted.policy.diff(predicted, limit=5)

    from kernel_requests import requests_around

    requests = requests_around(predicted)
    with ScratchCgroup(parent=host_path) as probe_cgroup:
        verdicts = probe_cgroup.kernel_verdicts(requests)
    wrong = [(str(r), v) for r, v in zip(requests, verdicts, strict=True) if v != predicted.allows(r)]
    assert len(requests) >= 40
    assert not wrong, wrong[:5]
