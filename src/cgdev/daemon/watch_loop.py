"""``cgdev watch``'s asyncio loop: systemd's signals, a low-rate program-id poll, one worker.

Three tasks feed one reconciler (``ops.reconcile``, pure) and carry out what it decides through
``ops.watch`` (blocking: run in a worker thread, one at a time, so the loop keeps reading the bus):

- the bus task subscribes to systemd (``adapters.systemd_watch``); a lost bus (a bus restart) is
  said once, retried with backoff, and a reconnect rescans every container (nothing that happened
  meanwhile is missed); so does systemd coming back on the bus (``daemon-reexec``), which it
  follows through the bus's NameOwnerChanged.  No signal says "programs re-attached": systemd
  re-attaches them during a reload (between ``Reloading(true)`` and ``Reloading(false)``) or just
  after a property change, so each signal starts a burst of program-id polls (dense for the first
  100 ms, thinning out over 2 s) and the containers whose ids changed are looked at; the first
  signal's arrival starts the reaction time.  A reload also sends UnitRemoved/UnitNew for every
  unit: they only schedule one discovery, 50 ms later;
- the poll task, every ``interval`` seconds: containers appearing and disappearing (runtime state,
  the entitlements file), the entitlements file changing, and program ids (the safety net for what
  systemd does not announce: a hook or ``runtime update`` replacing a program);
- the worker looks at dirty containers, reports, repairs (rate-limited by the reconciler) and looks
  again to confirm.

SIGHUP: a full scan now.  SIGTERM/SIGINT: the worker finishes the container in hand (a repair is
a transaction and the entitlements file is written atomically), the tasks stop, exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cgdev.errors import CgdevError, EnvError, NotFound
from cgdev.ops.inspect import HostView
from cgdev.ops.reconcile import (
    Changed,
    Forget,
    Gone,
    Observed,
    Reconciler,
    Repair,
    Repaired,
    RepairLimit,
    Report,
    ReportKind,
    Rescan,
    Seen,
    Step,
)
from cgdev.ops.targets import Target
from cgdev.ops.watch import IdsOfPath, Trusted, Watch, label
from cgdev.present.watch_view import print_line, print_report

# id polls after a signal, as delays between them (s): dense while systemd is likely re-attaching
# (it does so after the signal that announces it, by tens to hundreds of ms), then thinning out; 2 s
BURST: Final = (
    0.0,
    0.005,
    0.005,
    0.01,
    0.01,
    0.02,
    0.025,
    0.025,
    0.05,
    0.05,
    0.1,
    0.1,
    0.1,
    0.25,
    0.25,
    0.5,
    0.5,
)
BACKOFF_MAX_S: Final = 5.0
DEFAULT_LIMIT: Final = RepairLimit()
UNIT_INTERFACES: Final = ("org.freedesktop.systemd1.Scope", "org.freedesktop.systemd1.Service",
                          "org.freedesktop.systemd1.Slice", "org.freedesktop.systemd1.Unit")  # fmt: skip


@dataclass(frozen=True, slots=True)
class WatchOptions:
    repair: bool = False
    as_json: bool = False
    interval: float = 2.0
    full_scan_interval: float = 300.0
    limit: RepairLimit = DEFAULT_LIMIT
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    only: tuple[str, ...] = ()  # container ids, id prefixes or cgroups; empty: every container


class Daemon:
    def __init__(self, host: HostView, options: WatchOptions, *, trusted: Trusted | None = None) -> None:
        self.host = host
        self.options = options
        self.watch = Watch(host, trusted=trusted)
        self.reconciler = Reconciler(repair=options.repair, limit=options.limit)
        self.targets: dict[str, Target] = {}
        self.wanted: dict[str, Any] = {}
        self.ids: dict[str, IdsOfPath | None] = {}
        self.dirty: dict[str, str] = {}
        self.retry: dict[str, str] = {}
        self.forgetting: set[str] = set()
        self._unmatched_said: set[str] = set()  # --only names already said to match nothing
        self._entitlements_read: object = None
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.metrics: Any = None
        self.server: Any = None
        self.heartbeat: Any = None
        self.full_scan_due = True
        self.bus_up = False
        self._burst_task: asyncio.Task[None] | None = None
        self._discovery: asyncio.Task[None] | None = None
        self._burst_at: float | None = None
        self._burst_cause = ""
        self._burst_next = 0

    # -- output -------------------------------------------------------------------------------------

    def say(self, event: str, **fields: Any) -> None:
        print_line(event, fields, as_json=self.options.as_json)

    def report(self, report: Report) -> None:
        print_report(report, as_json=self.options.as_json)
        m = self.metrics
        if m is None:
            return
        if report.kind is ReportKind.LOST:
            m.lost.inc()
        elif report.kind is ReportKind.RESTORED:
            m.restored.inc()
            if report.reaction_s is not None:
                m.reaction.observe(report.reaction_s)
        elif report.kind is ReportKind.GAINED:
            m.gained.inc()
        elif report.kind is ReportKind.REPAIR_FAILED:
            m.repair_failures.inc()
        elif report.kind is ReportKind.FLAPPING:
            m.flapping.inc()

    def apply(self, step: Step) -> list[Repair]:
        """Print the step's reports; queue its rescans and forgets; return its repairs."""
        for report in step.reports:
            self.report(report)
        repairs = []
        for action in step.actions:
            if isinstance(action, Rescan):
                for name in self.targets if action.containers is None else action.containers:
                    self.dirty.setdefault(name, action.cause)
                self.wake.set()
            elif isinstance(action, Forget):
                self.forgetting.add(action.container)
                self.forget_gone()
            else:
                repairs.append(action)
        return repairs

    # -- discovery and polling ------------------------------------------------------------------------

    def discover(self) -> None:
        now = time.monotonic()
        found = self.watch.discover()
        self.forgetting.update(self.watch.vanished)
        if self.options.only:
            found = {n: t for n, t in found.items() if _chosen(t, self.options.only)}
            self._say_unmatched(found)
        for name in [n for n in self.targets if n not in found]:
            del self.targets[name]
            self.watch.gone(name)
            self.ids.pop(name, None)
            self.wanted.pop(name, None)
            self.apply(self.reconciler.handle(Gone(name, now)))
        changed_wanted = []
        # discover() has just re-read the entitlements file if it changed
        fresh = self._entitlements_read != self.watch.entitlements_stamp
        self._entitlements_read = self.watch.entitlements_stamp
        for name, target in found.items():
            known = name in self.targets
            self.targets[name] = target
            if known and not fresh:
                continue  # what it wants changes only with the entitlements file (its spec: never)
            wanted = self.watch.wanted(target)
            if name in self.wanted and self.wanted[name] != wanted:
                changed_wanted.append(name)
            self.wanted[name] = wanted
            if not known:
                self.apply(self.reconciler.handle(Seen(name, now, label(target))))
        if changed_wanted:
            self.apply(
                self.reconciler.handle(Changed(frozenset(changed_wanted), "entitlements changed", now))
            )
        if self.metrics is not None:
            self.metrics.containers.set(len(self.targets))

    def _say_unmatched(self, found: dict[str, Target]) -> None:
        """An ``--only`` that matches nothing watched 0 containers in silence (a typo looks like a
        quiet node): say so once per name on stderr; it is still watched for, it may start later."""
        import sys

        for spec in self.options.only:
            if spec in self._unmatched_said or any(_chosen(t, (spec,)) for t in found.values()):
                continue
            self._unmatched_said.add(spec)
            print(f"cgdev watch: --only {spec!r} matches no container (watching for one to appear)",
                  file=sys.stderr, flush=True)  # fmt: skip

    def forget_gone(self) -> None:
        """Drop the entitlements of containers that went away, once their cgroups are gone too."""
        for name in list(self.forgetting):
            if name in self.targets:  # back again
                self.forgetting.discard(name)
                continue
            with contextlib.suppress(CgdevError):
                if self.watch.forget(name):
                    self.forgetting.discard(name)

    def discover_soon(self, delay: float = 0.05) -> None:
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.create_task(self._discover_after(delay))

    async def _discover_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            self.discover()
        except CgdevError as err:
            self.say("poll-failed", message=str(err))

    def poll_ids(self, cause: str, at: float) -> bool:
        ids = self.watch.program_ids(list(self.targets.values()))
        changed = [n for n, v in ids.items() if n in self.ids and self.ids[n] != v]
        self.ids.update(ids)
        if changed:
            self.apply(self.reconciler.handle(Changed(frozenset(changed), cause, at)))
        return bool(changed)

    def nudge(self, cause: str, at: float) -> None:
        """A signal said something may change soon: (re)start the burst of id polls; the
        earliest signal not yet matched by a change is when the reaction time starts."""
        if self._burst_at is None:
            self._burst_at, self._burst_cause = at, cause
        self._burst_next = 0
        if self._burst_task is None or self._burst_task.done():
            self._burst_task = asyncio.create_task(self._burst())

    async def _burst(self) -> None:
        while self._burst_next < len(BURST):
            await asyncio.sleep(BURST[self._burst_next])
            self._burst_next += 1
            at = self._burst_at if self._burst_at is not None else time.monotonic()
            if self.poll_ids(self._burst_cause, at):
                self._burst_at = None
        self._burst_at = None  # a signal that changed nothing starts no reaction time

    async def poll_task(self) -> None:
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.options.interval)
            if self.heartbeat is not None:
                self.heartbeat.beat()
            now = time.monotonic()
            if self.retry:
                retry, self.retry = self.retry, {}
                self.dirty.update({n: c for n, c in retry.items() if n in self.targets})
                self.wake.set()
            try:
                self.discover()
                self.forget_gone()
                self.poll_ids("program ids changed", now)
            except CgdevError as err:
                self.say("poll-failed", message=str(err))
            if now - last_full >= self.options.full_scan_interval:
                last_full = now
                self.full_scan()

    def full_scan(self) -> None:
        if not self.targets:  # nothing to look at: done at once
            self.say("full-scan", containers=0, seconds=0.0, complete=True)
            if self.metrics is not None:
                self.metrics.last_full_scan.set_to_current_time()
            return
        self.full_scan_due = True
        self.apply(self.reconciler.handle(Changed(None, "full scan", time.monotonic())))

    # -- systemd ------------------------------------------------------------------------------------

    async def bus_task(self) -> None:
        from cgdev.adapters.systemd_client import JobRemoved, SystemdClient
        from cgdev.adapters.systemd_watch import (
            PropertiesChanged,
            Reloading,
            SystemdOwner,
            SystemdWatcher,
            UnitNew,
            UnitRemoved,
        )

        delay = 0.1
        was_up = False
        while True:
            watcher = SystemdWatcher(self.host.bus)
            try:
                await watcher.open()
                client = await asyncio.to_thread(SystemdClient, self.host.bus)
            except EnvError as err:
                await watcher.close()
                if was_up or delay == 0.1:
                    self.say("bus-unreachable", message=str(err), retry_s=delay)
                was_up = False
                self.bus_up = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            old, self.watch.client = self.watch.client, client
            if old is not None:
                with contextlib.suppress(Exception):
                    old.close()
            self.say("bus-connected", address=self.host.bus or "system")
            if self.metrics is not None and old is not None:
                self.metrics.reconnects.inc()
            delay = 0.1
            was_up = self.bus_up = True
            # what happened while we were away: look at everything again
            self.discover()
            self.full_scan()
            try:
                async for event in watcher:
                    at = time.monotonic()
                    if isinstance(event, Reloading):
                        # systemd re-attaches its programs *during* the reload (between the two
                        # signals): poll from the first, and time the reaction from it
                        self.nudge("daemon-reload", at)
                    elif isinstance(event, PropertiesChanged):
                        if event.interface in UNIT_INTERFACES:
                            self.nudge("unit properties changed", at)
                    elif isinstance(event, (UnitNew, UnitRemoved)):
                        self.discover_soon()  # a reload sends one per unit: coalesced
                    elif isinstance(event, SystemdOwner):
                        if not event.owner:
                            self.say("systemd-left-bus")
                            continue
                        self.say("systemd-back", owner=event.owner)
                        await watcher.resubscribe()
                        if self.metrics is not None:
                            self.metrics.reconnects.inc()
                        self.discover()
                        self.full_scan()  # what it re-attached meanwhile was not announced
                    elif isinstance(event, JobRemoved):
                        self.nudge(f"job {event.job} done", at)
            except EnvError as err:
                self.say("bus-lost", message=str(err))
                self.bus_up = False
                stale, self.watch.client = self.watch.client, None  # look on without systemd meanwhile
                if stale is not None:
                    with contextlib.suppress(Exception):
                        stale.close()
            finally:
                await watcher.close()

    # -- the worker ---------------------------------------------------------------------------------

    async def worker(self) -> None:
        while not self.stopping.is_set():
            if not self.dirty:
                self.wake.clear()
                await self.wake.wait()
                continue
            full = self.full_scan_due and set(self.dirty) >= set(self.targets)
            self.full_scan_due = False
            batch, self.dirty = self.dirty, {}
            ok = True
            started = time.monotonic()
            for name in sorted(batch):
                if self.stopping.is_set():
                    return
                if not await self.look(name):
                    ok = False
                    self.retry[name] = batch[name]  # looked at again at the next poll
            if full:
                self.say("full-scan", containers=len(batch), seconds=round(time.monotonic() - started, 4),
                         complete=ok)  # fmt: skip
                if ok and self.metrics is not None:
                    self.metrics.last_full_scan.set_to_current_time()
            if self.metrics is not None:
                self.metrics.set_codes(self.reconciler.codes())

    async def look(self, name: str) -> bool:
        target = self.targets.get(name)
        if target is None:
            return True
        wanted = self.wanted.get(name) or ()
        try:
            obs = await asyncio.to_thread(self.watch.observe, target, wanted)
        except NotFound:  # the container went away while we looked: the next poll says so
            return True
        except CgdevError as err:
            if not isinstance(err, EnvError) or self.bus_up:
                self.say("look-failed", container=target.cgroup, message=str(err))
            return False
        repairs = self.apply(self.reconciler.handle(Observed(obs, time.monotonic())))
        for action in repairs:
            error = await asyncio.to_thread(self.watch.repair, target, action.devices)
            self.apply(self.reconciler.handle(Repaired(name, action.devices, error, time.monotonic())))
            if error is not None:  # rolled back: looking again would only try again at once
                continue
            try:  # look again: the restored report (and the reaction time) come from the kernel
                obs = await asyncio.to_thread(self.watch.observe, target, wanted)
            except CgdevError:
                return False
            self.apply(self.reconciler.handle(Observed(obs, time.monotonic())))
        return True

    # -- running --------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.full_scan)  # as daemons do: look at everything now
        if self.options.metrics_port is not None:
            from cgdev.daemon.metrics import Heartbeat, Metrics, Server

            try:
                self.metrics = Metrics()
            except ImportError:
                raise EnvError("--metrics-port needs prometheus-client (cgdev's daemon extra)") from None
            self.heartbeat = Heartbeat(stale_after=max(30.0, 5 * self.options.interval))
            try:
                self.server = Server(self.metrics, self.options.metrics_address, self.options.metrics_port,
                                     self.heartbeat.alive)  # fmt: skip
            except OSError as err:
                raise EnvError(f"cannot listen on {self.options.metrics_address}:"
                               f"{self.options.metrics_port}: {err.strerror}") from None  # fmt: skip
            self.server.start()
            self.say("metrics", address=self.options.metrics_address, port=self.server.port)
        self.discover()
        self.poll_ids("start", time.monotonic())
        self.full_scan()
        self.say("watching", containers=len(self.targets), repair=self.options.repair,
                 systemd=self.host.systemd)  # fmt: skip
        tasks = [asyncio.create_task(self.poll_task())]
        if self.host.systemd:
            tasks.append(asyncio.create_task(self.bus_task()))
        worker = asyncio.create_task(self.worker())
        stop: asyncio.Task[Any] = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait([*tasks, worker, stop], return_when=asyncio.FIRST_COMPLETED)
        self.stopping.set()
        self.wake.set()
        for task in [*tasks, self._burst_task, self._discovery]:
            if task is not None:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await worker  # finishes the container in hand
        for task in done:  # a task that died: its error is the exit status
            if task is not stop and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self.server is not None:
            self.server.close()
        if self.watch.client is not None:
            self.watch.client.close()
        self.say("stopped")
        return 0


def _chosen(target: Target, only: tuple[str, ...]) -> bool:
    return any(
        spec in (target.cgroup, target.container_id) or (target.container_id or "").startswith(spec)
        for spec in only
    )


def run(host: HostView, options: WatchOptions, *, trusted: Trusted | None = None,
        ready: Callable[[Daemon], None] | None = None) -> int:  # fmt: skip
    """Run the watcher until SIGTERM/SIGINT."""
    daemon = Daemon(host, options, trusted=trusted)
    if ready is not None:
        ready(daemon)
    return asyncio.run(daemon.run())
