"""systemd's signals as typed asyncio events: the watcher's view of reloads, jobs and units.

A device filter is at risk exactly when systemd re-applies a unit's properties (daemon-reload, a
property change, a new scope), so ``cgdev watch`` follows Reloading, JobRemoved, UnitNew,
UnitRemoved and PropertiesChanged.  This is a separate module from ``systemd`` so the CLI and hook
paths never import asyncio.

The watcher owns one connection and reads it in the caller's task (no background task): closing it
is closing a socket, and a lost bus surfaces as ``BusUnreachable`` from the iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from jeepney import HeaderFields, MatchRule, Message, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import DBusConnection, open_dbus_connection

from cgdev.adapters.systemd_client import (
    CONNECT_TIMEOUT_S,
    DBUS_CALL_TIMEOUT_S,
    MANAGER,
    MANAGER_INTERFACE,
    MANAGER_PATH,
    PROPERTIES_INTERFACE,
    SYSTEMD_BUS_NAME,
    JobRemoved,
    bus_socket_path,
    error_from_reply,
)
from cgdev.errors import BusUnreachable, SystemdError

UNIT_PATH_PREFIX: Final = "/org/freedesktop/systemd1/unit"


@dataclass(frozen=True, slots=True)
class Reloading:
    """Sent twice per daemon-reload: ``active`` True before, False once the reload is done."""

    active: bool


@dataclass(frozen=True, slots=True)
class UnitNew:
    unit: str
    path: str


@dataclass(frozen=True, slots=True)
class UnitRemoved:
    unit: str
    path: str


@dataclass(frozen=True, slots=True)
class PropertiesChanged:
    """systemd mostly *invalidates* unit properties (names only); read them again to see values."""

    path: str
    interface: str
    changed: dict[str, Any]
    invalidated: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SystemdOwner:
    """systemd's bus name changed hands (the bus's NameOwnerChanged): ``owner`` "" when systemd
    left the bus (``daemon-reexec``, a restart), its new unique name when it is back.  The
    connection to the bus survives that, but what happened meanwhile was not announced."""

    owner: str


SystemdEvent = Reloading | JobRemoved | UnitNew | UnitRemoved | PropertiesChanged | SystemdOwner
BUS_DRIVER: Final = "org.freedesktop.DBus"


def event_from_signal(message: Message) -> SystemdEvent | None:
    """The typed event of one signal, or None for anything this watcher does not report."""
    if message.header.message_type is not MessageType.signal:
        return None
    interface = message.header.fields.get(HeaderFields.interface)
    member = message.header.fields.get(HeaderFields.member)
    body = message.body
    if interface == MANAGER_INTERFACE:
        if member == "Reloading":
            return Reloading(bool(body[0]))
        if member == "JobRemoved":
            return JobRemoved(*body)
        if member == "UnitNew":
            return UnitNew(*body)
        if member == "UnitRemoved":
            return UnitRemoved(*body)
    elif interface == BUS_DRIVER and member == "NameOwnerChanged":
        return SystemdOwner(body[2]) if body[0] == SYSTEMD_BUS_NAME else None
    elif interface == PROPERTIES_INTERFACE and member == "PropertiesChanged":
        changed = {name: variant[1] for name, variant in body[1].items()}
        return PropertiesChanged(message.header.fields[HeaderFields.path], body[0], changed, tuple(body[2]))
    return None


def _match_rules(properties: bool) -> list[MatchRule]:
    owner = MatchRule(type="signal", sender=BUS_DRIVER, interface=BUS_DRIVER, member="NameOwnerChanged",
                      path="/org/freedesktop/DBus")  # fmt: skip
    owner.add_arg_condition(0, SYSTEMD_BUS_NAME)
    rules = [
        MatchRule(type="signal", sender=SYSTEMD_BUS_NAME, interface=MANAGER_INTERFACE, path=MANAGER_PATH),
        owner,
    ]
    if properties:
        rules.append(
            MatchRule(
                type="signal",
                sender=SYSTEMD_BUS_NAME,
                interface=PROPERTIES_INTERFACE,
                member="PropertiesChanged",
                path_namespace=UNIT_PATH_PREFIX,
            )
        )
    return rules


class SystemdWatcher:
    """``async with SystemdWatcher(address) as events: async for event in events: ...``

    ``properties=False`` leaves out PropertiesChanged, the noisiest signal.  Subscribe is called so
    that systemd emits its signals at all (it sends them to the bus only while someone subscribes);
    the subscription ends with the connection.
    """

    def __init__(self, address: str | None = None, *, properties: bool = True) -> None:
        self.address = bus_socket_path(address)
        self.properties = properties
        self._conn: DBusConnection | None = None
        # Signals read while waiting for a method reply during setup, kept in order.
        self._pending: deque[Message] = deque()

    async def open(self) -> None:
        """Connect and subscribe; on any failure the connection is closed and the error is one
        line (a server that is not a D-Bus bus fails authentication: BusUnreachable too)."""
        try:
            self._conn = await asyncio.wait_for(
                open_dbus_connection(f"unix:path={self.address}"), CONNECT_TIMEOUT_S
            )
        except (OSError, EOFError, TimeoutError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise BusUnreachable(f"no D-Bus system bus at {self.address} ({reason})") from e
        except Exception as e:  # jeepney's AuthenticationError and friends: not a D-Bus server
            raise BusUnreachable(f"no D-Bus system bus at {self.address} ({e})") from e
        try:
            for rule in _match_rules(self.properties):
                await self._call(message_bus.AddMatch(rule))
            await self._call(new_method_call(MANAGER, "Subscribe"))
        except BaseException:
            await self.close()
            raise

    async def resubscribe(self) -> None:
        """Subscribe again (after ``SystemdOwner``: a re-executed systemd may have forgotten us);
        "already subscribed" is fine."""
        try:
            await self._call(new_method_call(MANAGER, "Subscribe"))
        except SystemdError as err:
            if "lready" not in str(err):
                raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # If the bus went away first, the socket is closed either way.
            with contextlib.suppress(OSError):
                await conn.close()

    async def __aenter__(self) -> SystemdWatcher:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> SystemdWatcher:
        return self

    async def __anext__(self) -> SystemdEvent:
        while True:
            message = self._pending.popleft() if self._pending else await self._receive()
            event = event_from_signal(message)
            if event is not None:
                return event

    async def next_event(self, timeout: float) -> SystemdEvent:
        """The next event, or TimeoutError after ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def _receive(self) -> Message:
        if self._conn is None:
            raise BusUnreachable(f"no D-Bus system bus at {self.address} (watcher is closed)")
        try:
            return await self._conn.receive()
        except (OSError, EOFError) as e:
            raise BusUnreachable(f"no D-Bus system bus at {self.address} (connection lost)") from e

    async def _call(self, message: Message) -> tuple[Any, ...]:
        """One method call during setup; signals read meanwhile are queued for the iterator."""
        assert self._conn is not None
        serial = next(self._conn.outgoing_serial)
        try:
            await self._conn.send(message, serial=serial)
            async with asyncio.timeout(DBUS_CALL_TIMEOUT_S):
                while True:
                    reply = await self._receive()
                    if reply.header.fields.get(HeaderFields.reply_serial) == serial:
                        break
                    self._pending.append(reply)
        except TimeoutError as e:
            member = message.header.fields.get(HeaderFields.member)
            raise SystemdError(f"systemd: no reply to {member} within {DBUS_CALL_TIMEOUT_S:g} s") from e
        except OSError as e:
            raise BusUnreachable(f"no D-Bus system bus at {self.address} (connection lost)") from e
        if reply.header.message_type is MessageType.error:
            raise error_from_reply(reply)
        return reply.body


__all__ = [
    "JobRemoved",
    "PropertiesChanged",
    "Reloading",
    "SystemdEvent",
    "SystemdOwner",
    "SystemdWatcher",
    "UnitNew",
    "UnitRemoved",
    "event_from_signal",
]
