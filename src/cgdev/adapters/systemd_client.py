"""systemd's Manager over D-Bus (jeepney, blocking): read and change the units that own cgroups.

systemd re-generates its ``sd_devices`` program from ``DevicePolicy=``/``DeviceAllow=`` (and
re-attaches ``BPFProgram=`` pins) on every reload and every property change, so a durable repair has
to read and write those properties, not only the kernel's programs (DESIGN.md §1).  This module is
the one place that talks to systemd's Manager (the properties' types and checks are in
``systemd_properties``): it is synchronous because the CLI and the OCI hook
need one answer and exit, and it imports only jeepney (no asyncio: see ``systemd_watch`` for that).

Every D-Bus failure becomes one typed ``CgdevError`` line carrying systemd's own message; an
unreachable bus is ``BusUnreachable`` (exit status 3).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageFlag, MessageType, new_method_call
from jeepney.bus import get_connectable_addresses
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, prep_socket

from cgdev.adapters.systemd_properties import (
    CGROUP_UNIT_INTERFACES,
    UnitDevices,
    Variant,
    cgroup_interface,
    check_field,
    checked_pids,
    typed_properties,
    typed_property,
    unit_devices_from_properties,
)
from cgdev.errors import BusUnreachable, CgdevError, InputError, NotFound, SystemdError

SYSTEMD_BUS_NAME: Final = "org.freedesktop.systemd1"
MANAGER_PATH: Final = "/org/freedesktop/systemd1"
MANAGER_INTERFACE: Final = "org.freedesktop.systemd1.Manager"
PROPERTIES_INTERFACE: Final = "org.freedesktop.DBus.Properties"
DEFAULT_SYSTEM_BUS: Final = "/run/dbus/system_bus_socket"
# D-Bus's own default method-call timeout; every wait in this module is bounded by a timeout.
DBUS_CALL_TIMEOUT_S: Final = 25.0
CONNECT_TIMEOUT_S: Final = 5.0

MANAGER: Final = DBusAddress(MANAGER_PATH, SYSTEMD_BUS_NAME, MANAGER_INTERFACE)
BUS_DRIVER: Final = DBusAddress(message_bus.object_path, message_bus.bus_name, message_bus.interface)

JOB_FAILURE_HINTS: Final[dict[str, str]] = {
    "canceled": "the job was canceled",
    "timeout": "the job timed out",
    "failed": "the unit failed to start",
    "dependency": "a required unit failed",
    "skipped": "the job was skipped",
    "invalid": "the job is not applicable to the unit",
    "assert": "an assertion of the unit failed",
    "unsupported": "the unit type is not supported",
    "collected": "the job was garbage-collected",
    "once": "the unit can only be started once",
}

# Errors that mean "no such unit" (for a name or a pid): NotFound, exit status 2.
UNIT_NOT_FOUND_ERRORS: Final = (
    "org.freedesktop.systemd1.NoSuchUnit",
    "org.freedesktop.systemd1.NoUnitForPID",
)


class JobRemoved(msgspec.Struct, frozen=True):
    """systemd's JobRemoved signal: the end of one job, with its result (``done`` = success)."""

    id: int
    job: str
    unit: str
    result: str


def bus_socket_path(address: str | None) -> str:
    """Turn ``None`` (the system bus), a D-Bus address or a plain socket path into a socket path.

    A plain path is accepted because the lab's bus is reached from the host as
    ``/proc/<pid1>/root/run/dbus/system_bus_socket``, which is not a D-Bus address.
    """
    if address is None:
        address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS
    if address.startswith("/"):
        return address
    try:
        return next(get_connectable_addresses(address))
    except (RuntimeError, ValueError, StopIteration) as e:
        raise InputError(f"bus address: {address!r} is not a unix D-Bus address or socket path") from e


def error_from_reply(reply: Message, unit: str | None = None) -> CgdevError:
    """A D-Bus error reply as the matching cgdev error, keeping systemd's own message."""
    name = reply.header.fields.get(HeaderFields.error_name, "unknown error")
    text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
    if name in UNIT_NOT_FOUND_ERRORS:
        return NotFound(f"no systemd unit {unit}" if unit else f"systemd: {text}")
    return SystemdError(f"systemd: {name}: {text}".replace("\n", " ") if text else f"systemd: {name}")


def _connect(path: str) -> DBusConnection:
    """Connect, authenticate and say Hello, within CONNECT_TIMEOUT_S; any failure is one line."""
    try:
        sock = prep_socket(path, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise BusUnreachable(f"no D-Bus system bus at {path} ({reason})") from e
    except Exception as e:  # jeepney's AuthenticationError and friends: not a D-Bus server
        raise BusUnreachable(f"no D-Bus system bus at {path} ({e})") from e
    return _say_hello(sock, path)


def _say_hello(sock: socket.socket, path: str) -> DBusConnection:
    """``DBusConnection(sock)`` sends Hello and waits for the reply with no timeout at all, so a
    bus that authenticates and then stalls would hang us: it runs in a thread, and shutting the
    socket down after CONNECT_TIMEOUT_S makes its read fail."""
    import threading

    outcome: dict[str, Any] = {}

    def hello() -> None:
        try:
            outcome["conn"] = DBusConnection(sock)
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=hello, name="cgdev-dbus-hello", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        thread.join(1)
        sock.close()
        raise BusUnreachable(f"no D-Bus system bus at {path} (no reply to Hello in {CONNECT_TIMEOUT_S:g} s)")
    if "error" in outcome:
        sock.close()
        raise BusUnreachable(f"no D-Bus system bus at {path} (no reply to Hello)") from outcome["error"]
    return outcome["conn"]


class SystemdClient:
    """A blocking connection to systemd's Manager on one bus.

    Use as a context manager; the connection closes on exit.  Each method is one or two round
    trips and waits at most ``timeout`` seconds.
    """

    def __init__(self, address: str | None = None, *, timeout: float = DBUS_CALL_TIMEOUT_S) -> None:
        self.address = bus_socket_path(address)
        self.timeout = timeout
        self._conn = _connect(self.address)
        self._job_rule = MatchRule(
            type="signal", interface=MANAGER_INTERFACE, member="JobRemoved", path=MANAGER_PATH
        )
        self._job_match_added = False

    # -- connection -----------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SystemdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send_and_reply(self, message: Message, what: str, timeout: float | None) -> Message:
        try:
            return self._conn.send_and_get_reply(message, timeout=timeout or self.timeout)
        except TimeoutError as e:
            raise SystemdError(f"systemd: no reply to {what} within {timeout or self.timeout:g} s") from e
        except OSError as e:
            raise BusUnreachable(f"no D-Bus system bus at {self.address} (connection lost: {e})") from e

    def _call(
        self,
        address: DBusAddress,
        method: str,
        signature: str | None = None,
        body: tuple[Any, ...] = (),
        *,
        unit: str | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, ...]:
        reply = self._send_and_reply(new_method_call(address, method, signature, body), method, timeout)
        if reply.header.message_type is MessageType.error:
            raise error_from_reply(reply, unit)
        return reply.body

    def _properties(self, path: str) -> DBusAddress:
        return DBusAddress(path, SYSTEMD_BUS_NAME, PROPERTIES_INTERFACE)

    # -- reading --------------------------------------------------------------------------------

    def get_unit(self, name: str) -> str:
        """The object path of a *loaded* unit.

        GetUnit, not LoadUnit or a computed path: touching a unit's path would make systemd load
        (and keep) a not-found unit, a change to the system a read must not make.
        """
        return self._call(MANAGER, "GetUnit", "s", (name,), unit=name)[0]

    def get_unit_by_pid(self, pid: int) -> str:
        """The object path of the unit owning ``pid`` (a pid in systemd's own PID namespace)."""
        checked_pids([pid])
        return self._call(MANAGER, "GetUnitByPID", "u", (pid,), unit=f"for pid {pid}")[0]

    def unit_name(self, path: str) -> str:
        return self._call(self._properties(path), "Get", "ss", ("org.freedesktop.systemd1.Unit", "Id"))[0][1]

    def unit_name_for_pid(self, pid: int) -> str:
        return self.unit_name(self.get_unit_by_pid(pid))

    def control_group(self, name: str) -> str:
        path = self.get_unit(name)
        return self._call(self._properties(path), "Get", "ss", (cgroup_interface(name), "ControlGroup"))[0][1]

    def unit_for_cgroup(self, cgroup_path: str) -> str:
        """The unit whose ``ControlGroup`` is ``cgroup_path`` or its nearest ancestor.

        ``cgroup_path`` is as systemd sees it (relative to its cgroup root).  A container's own
        sub-cgroup (``…scope/container``) is not a unit, so the walk goes up until a component is a
        loaded cgroup unit whose ControlGroup really is that prefix (a delegated subtree may reuse
        unit-like names).  A cgroup no unit claims belongs to the root slice, ``-.slice``.
        """
        check_field(cgroup_path.startswith("/"), "cgroup", cgroup_path, "is not an absolute cgroup path")
        parts = [p for p in cgroup_path.split("/") if p]
        for depth in range(len(parts), 0, -1):
            name = parts[depth - 1]
            if not name.endswith(tuple(CGROUP_UNIT_INTERFACES)):
                continue
            try:
                if self.control_group(name) == "/" + "/".join(parts[:depth]):
                    return name
            except NotFound:
                continue
        return "-.slice"

    def version(self) -> str:
        """The manager's ``Version`` (``257.13-1~deb13u1``): what a reload re-applies depends on it."""
        return str(
            self._call(self._properties(MANAGER_PATH), "Get", "ss", (MANAGER_INTERFACE, "Version"))[0][1]
        )

    def unit_properties(self, name: str) -> UnitDevices:
        """The unit's device-related properties, in one GetAll round trip after GetUnit.

        GetAll with an empty interface returns every interface's properties, so NeedDaemonReload
        (Unit) and the cgroup ones (Scope/Service/Slice) come together.
        """
        cgroup_interface(name)
        path = self.get_unit(name)
        props = self._call(self._properties(path), "GetAll", "s", ("",), unit=name)[0]
        return unit_devices_from_properties(name, props)

    # -- changing -------------------------------------------------------------------------------

    def start_transient_scope(
        self,
        name: str,
        pids: Iterable[int],
        *,
        delegate: bool | None = None,
        device_policy: str | None = None,
        device_allow: Iterable[tuple[str, str]] | None = None,
        bpf_program: Iterable[tuple[str, str]] | None = None,
        slice: str | None = None,
        extra: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> JobRemoved:
        """Create a scope around ``pids`` and wait until its start job has finished.

        Raises SystemdError with the job result when the job does not end in ``done``.
        """
        check_field(name.endswith(".scope"), "scope", name, "does not end in .scope")
        props: dict[str, object] = {"PIDs": list(pids)}
        optional = {
            "Delegate": delegate,
            "DevicePolicy": device_policy,
            "DeviceAllow": device_allow,
            "BPFProgram": bpf_program,
            "Slice": slice,
        }
        props.update({k: v for k, v in optional.items() if v is not None})
        props.update(extra or {})
        aux: list[tuple[str, list[tuple[str, Variant]]]] = []  # no auxiliary units
        body = (name, "fail", typed_properties(props), aux)
        return self._run_job("StartTransientUnit", "ssa(sv)a(sa(sv))", body, name, timeout)

    def stop_unit(self, name: str, *, timeout: float | None = None) -> JobRemoved:
        return self._run_job("StopUnit", "ss", (name, "replace"), name, timeout)

    def set_unit_properties(self, name: str, props: Mapping[str, object], *, runtime: bool = True) -> None:
        """SetUnitProperties; with ``runtime`` the change is lost at reboot (``systemctl --runtime``).

        systemd re-generates the unit's device program on any property change (DESIGN.md §1).
        """
        typed = typed_properties(props)
        self._call(MANAGER, "SetUnitProperties", "sba(sv)", (name, runtime, typed), unit=name)

    def set_unit_property_list(
        self, name: str, props: Sequence[tuple[str, object]], *, runtime: bool = True
    ) -> None:
        """SetUnitProperties with properties in this order, a name possibly repeated.

        ``DeviceAllow=[]`` then ``DeviceAllow=[...]`` replaces the list in one call, so systemd
        rebuilds its device program once, from the final list (two calls would attach a program
        from the empty list in between: deny-all for a strict unit).
        """
        typed = [typed_property(key, value) for key, value in props]
        self._call(MANAGER, "SetUnitProperties", "sba(sv)", (name, runtime, typed), unit=name)

    def reload(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """daemon-reload.  systemd answers Reload only once the reload is complete, so waiting for
        the reply is the whole wait; ``wait=False`` sends it without asking for a reply."""
        message = new_method_call(MANAGER, "Reload")
        if not wait:
            message.header.flags |= MessageFlag.no_reply_expected
            try:
                self._conn.send(message)
            except OSError as e:
                raise BusUnreachable(f"no D-Bus system bus at {self.address} (connection lost: {e})") from e
            return
        reply = self._send_and_reply(message, "Reload", timeout)
        if reply.header.message_type is MessageType.error:
            raise error_from_reply(reply)

    # -- jobs -----------------------------------------------------------------------------------

    def _ensure_job_match(self) -> None:
        """Ask the bus for JobRemoved signals once per connection.

        systemd sends JobRemoved of a job to the bus even without Subscribe (it tracks the client
        that queued the job), but the bus only routes it to connections with a matching rule.
        """
        if not self._job_match_added:
            rule = MatchRule(
                type="signal",
                sender=SYSTEMD_BUS_NAME,
                interface=MANAGER_INTERFACE,
                member="JobRemoved",
                path=MANAGER_PATH,
            )
            self._call(BUS_DRIVER, "AddMatch", "s", (rule.serialise(),))
            self._job_match_added = True

    def _run_job(
        self, method: str, signature: str, body: tuple[Any, ...], unit: str, timeout: float | None
    ) -> JobRemoved:
        """Call a method that queues a job and wait for that job's JobRemoved.

        The filter is in place before the call: the signal may arrive before the method's reply.
        """
        self._ensure_job_match()
        limit = timeout or self.timeout
        queue: deque[Message] = deque()
        with self._conn.filter(self._job_rule, queue=queue):
            job = self._call(MANAGER, method, signature, body, unit=unit, timeout=limit)[0]
            removed = self._wait_job_removed(queue, job, unit, limit)
        if removed.result != "done":
            hint = JOB_FAILURE_HINTS.get(removed.result, "")
            raise SystemdError(
                f"systemd: {method} {unit}: job {removed.result}" + (f" ({hint})" if hint else "")
            )
        return removed

    def _wait_job_removed(self, queue: deque[Message], job: str, unit: str, timeout: float) -> JobRemoved:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                message = self._conn.recv_until_filtered(queue, timeout=remaining)
            except TimeoutError as e:
                raise SystemdError(
                    f"systemd: job {job} for {unit} did not finish within {timeout:g} s"
                ) from e
            except OSError as e:
                raise BusUnreachable(f"no D-Bus system bus at {self.address} (connection lost: {e})") from e
            removed = JobRemoved(*message.body)
            if removed.job == job:
                return removed
