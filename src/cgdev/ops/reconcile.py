"""The watcher's decisions, sans I/O: events in, reports and actions out (issue 10).

Why a separate pure module: what ``cgdev watch`` decides -- which containers to look at again after
a reload, when a device counts as lost, whether to repair it, when a container keeps losing access --
must be testable without a bus, a kernel or a clock.  Like h11, the reconciler only consumes events
(``Seen``, ``Gone``, ``Changed``, ``Observed``, ``Repaired``) and returns a ``Step`` (reports to
print and count, actions for the driver to carry out); the daemon front end owns every socket,
thread and timer, and passes the time in.

Two rules keep a repair safe: only a device some entitlement names (``Wanted``) is ever repaired,
and repairs are rate-limited per container -- past the limit the container is reported as
``flapping`` (something else keeps rewriting its filters) and left alone until the window passes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from cgdev.core.model import Request, access_to_str
from cgdev.core.policy import Policy

DeviceKey = tuple[str, int, int]  # type, major, minor
GAINED_EXAMPLES: Final = 8


class WantedSource(StrEnum):
    """Why a device is wanted: cgdev's entitlements file, the container's spec, a device its
    runtime always allows (``/dev/null`` and the like, not in the spec but there from the start),
    or a trusted entitlement the node policy accepted (the OCI hook's ``entitled_devices``)."""

    ENTITLEMENT = "entitlement"
    SPEC = "spec"
    RUNTIME_DEFAULT = "runtime-default"
    POLICY = "policy"


@dataclass(frozen=True, slots=True)
class Wanted:
    """One device a container is entitled to, with the access it is entitled to."""

    key: DeviceKey
    access: int
    source: WantedSource

    def requests(self) -> list[Request]:
        """What the kernel is asked: an open (``r``, ``w``, ``rw`` at once) and mknod apart."""
        t, major, minor = self.key
        opens = self.access & 6
        return [Request(t, major, minor, a) for a in (opens, self.access & 1) if a]


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The kernel's path as lifted: allowed (None: unknown), and when denied which layer and
    program deny and why (the cause a person can act on)."""

    allowed: bool | None
    layer: str | None = None
    program: str | None = None
    cause: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at one container: its wanted devices' states and the effective policy."""

    container: str  # the key: the container's cgroup
    label: str  # how reports name it: "crun 0123456789ab", or the cgroup
    wanted: tuple[Wanted, ...]
    devices: dict[DeviceKey, DeviceState]
    effective: Policy | None = None
    codes: tuple[str, ...] = ()  # finding codes (explain's) of what was found


# -- events in -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    container: str
    at: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class Gone:
    container: str
    at: float


@dataclass(frozen=True, slots=True)
class Changed:
    """Something may have changed these containers' filters (None: every container): a reload,
    a unit's properties, program ids that differ from the last poll, a reconnect."""

    containers: frozenset[str] | None
    cause: str
    at: float


@dataclass(frozen=True, slots=True)
class Observed:
    observation: Observation
    at: float


@dataclass(frozen=True, slots=True)
class Repaired:
    container: str
    devices: tuple[Wanted, ...]
    error: str | None
    at: float


Event = Seen | Gone | Changed | Observed | Repaired


# -- reports and actions out -----------------------------------------------------------------------


class ReportKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    LOST = "lost"
    UNKNOWN = "unknown"
    RESTORED = "restored"
    GAINED = "gained"
    REPAIRING = "repairing"
    REPAIR_FAILED = "repair-failed"
    FLAPPING = "flapping"


@dataclass(frozen=True, slots=True)
class Report:
    """One line of the watcher's log (one JSON object with ``--json``)."""

    kind: ReportKind
    container: str
    label: str = ""
    device: str | None = None
    source: str | None = None
    layer: str | None = None
    program: str | None = None
    cause: str = ""
    reaction_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": str(self.kind), "container": self.label or self.container,
                               "cgroup": self.container}  # fmt: skip
        for name in ("device", "source", "layer", "program", "reaction_s"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.cause:
            out["cause"] = self.cause
        return out


@dataclass(frozen=True, slots=True)
class Rescan:
    containers: frozenset[str] | None  # None: all
    cause: str


@dataclass(frozen=True, slots=True)
class Repair:
    container: str
    devices: tuple[Wanted, ...]


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop what cgdev keeps about a container that is gone (its entitlements)."""

    container: str


Action = Rescan | Repair | Forget


@dataclass(frozen=True, slots=True)
class Step:
    reports: tuple[Report, ...] = ()
    actions: tuple[Action, ...] = ()


# -- the reconciler --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepairLimit:
    """At most ``count`` repairs of one container per ``window`` seconds."""

    count: int = 10
    window: float = 60.0


def device_text(key: DeviceKey, access: int | None = None) -> str:
    base = f"{key[0]} {key[1]}:{key[2]}"
    return base if access is None else f"{base} {access_to_str(access)}"


@dataclass
class _Container:
    label: str = ""
    last: Observation | None = None
    since: float | None = None  # the earliest change not yet observed
    lost_at: dict[DeviceKey, float] = field(default_factory=dict)
    repairs: deque[float] = field(default_factory=deque)
    flapping_reported: float | None = None


class Reconciler:
    """What the watcher knows about each container, and what it decides from each event."""

    def __init__(self, *, repair: bool, limit: RepairLimit | None = None) -> None:
        self.repair = repair
        self.limit = limit or RepairLimit()
        self._containers: dict[str, _Container] = {}

    @property
    def containers(self) -> list[str]:
        return sorted(self._containers)

    def observation(self, container: str) -> Observation | None:
        state = self._containers.get(container)
        return None if state is None else state.last

    def codes(self) -> dict[str, int]:
        """How many containers have each finding code (for the metrics)."""
        counts: dict[str, int] = {}
        for state in self._containers.values():
            if state.last is not None:
                for code in set(state.last.codes):
                    counts[code] = counts.get(code, 0) + 1
        return counts

    def handle(self, event: Event) -> Step:
        if isinstance(event, Seen):
            return self._seen(event)
        if isinstance(event, Gone):
            return self._gone(event)
        if isinstance(event, Changed):
            return self._changed(event)
        if isinstance(event, Observed):
            return self._observed(event.observation, event.at)
        return self._repaired(event)

    def _seen(self, event: Seen) -> Step:
        if event.container in self._containers:
            return Step()
        self._containers[event.container] = _Container(label=event.label, since=event.at)
        return Step((Report(ReportKind.ADDED, event.container, event.label),),
                    (Rescan(frozenset({event.container}), "container appeared"),))  # fmt: skip

    def _gone(self, event: Gone) -> Step:
        state = self._containers.pop(event.container, None)
        if state is None:
            return Step()
        return Step((Report(ReportKind.REMOVED, event.container, state.label),), (Forget(event.container),))

    def _changed(self, event: Changed) -> Step:
        names = self._containers.keys() if event.containers is None else event.containers
        hit = [n for n in names if n in self._containers]
        for name in hit:
            state = self._containers[name]
            state.since = event.at if state.since is None else min(state.since, event.at)
        if not hit:
            return Step()
        return Step(actions=(Rescan(frozenset(hit), event.cause),))

    def _observed(self, obs: Observation, at: float) -> Step:
        state = self._containers.get(obs.container)
        if state is None:  # gone meanwhile (or never seen): nothing to decide
            return Step()
        state.label = obs.label
        since = state.since if state.since is not None else at
        state.since = None
        previous = state.last
        state.last = obs
        reports: list[Report] = []
        denied: list[Wanted] = []
        for wanted in obs.wanted:
            now = obs.devices.get(wanted.key, DeviceState(None))
            before = None if previous is None else previous.devices.get(wanted.key)
            text = device_text(wanted.key, wanted.access)
            if now.allowed is False:
                denied.append(wanted)
                if wanted.key not in state.lost_at:
                    state.lost_at[wanted.key] = since
                    reports.append(Report(ReportKind.LOST, obs.container, obs.label, text, wanted.source,
                                          now.layer, now.program, now.cause))  # fmt: skip
            elif now.allowed is None:
                if before is None or before.allowed is not None:
                    reports.append(Report(ReportKind.UNKNOWN, obs.container, obs.label, text,
                                          wanted.source, now.layer, now.program, now.cause))  # fmt: skip
            else:
                lost = state.lost_at.pop(wanted.key, None)
                if lost is not None:
                    reports.append(Report(ReportKind.RESTORED, obs.container, obs.label, text,
                                          wanted.source, reaction_s=max(0.0, at - lost)))  # fmt: skip
        for key in [k for k in state.lost_at if k not in {w.key for w in obs.wanted}]:
            del state.lost_at[key]  # no longer wanted (a revoke): no longer lost either
        reports += self._gained(obs, previous)
        actions: list[Action] = []
        if denied and self.repair:
            if self._may_repair(state, at):
                state.repairs.append(at)
                actions.append(Repair(obs.container, tuple(denied)))
                reports += [Report(ReportKind.REPAIRING, obs.container, obs.label,
                                   device_text(w.key, w.access), w.source) for w in denied]  # fmt: skip
            elif state.flapping_reported is None or at - state.flapping_reported >= self.limit.window:
                state.flapping_reported = at
                reports.append(Report(ReportKind.FLAPPING, obs.container, obs.label, cause=(
                    f"lost access {len(state.repairs)} times in {self.limit.window:g} s: something "
                    "keeps rewriting its device filters; not repaired until the rate falls")))  # fmt: skip
        return Step(tuple(reports), tuple(actions))

    def _may_repair(self, state: _Container, at: float) -> bool:
        while state.repairs and at - state.repairs[0] >= self.limit.window:
            state.repairs.popleft()
        return len(state.repairs) < self.limit.count

    @staticmethod
    def _gained(obs: Observation, previous: Observation | None) -> list[Report]:
        """Devices the container may open now and could not before, not explained by a wanted
        device coming back (a runtime widening its filter, an allow-all program)."""
        if previous is None or previous.effective is None or obs.effective is None:
            return []
        gain = obs.effective.minus(previous.effective)
        if gain == Policy.deny_all():
            return []
        wanted = {w.key for w in obs.wanted}
        gained: dict[DeviceKey, int] = {}  # one report per device, its accesses together
        for m in Policy.deny_all().diff(gain, limit=4 * GAINED_EXAMPLES):
            key = (str(m.request.type), m.request.major, m.request.minor)
            if key not in wanted and (key in gained or len(gained) < GAINED_EXAMPLES):
                gained[key] = gained.get(key, 0) | int(m.request.access)
        why = "allowed now, denied at the last look; no entitlement names it"
        return [Report(ReportKind.GAINED, obs.container, obs.label, device_text(k, a), cause=why)
                for k, a in gained.items()]  # fmt: skip

    def _repaired(self, event: Repaired) -> Step:
        state = self._containers.get(event.container)
        if state is None or event.error is None:
            return Step()
        return Step(tuple(Report(ReportKind.REPAIR_FAILED, event.container, state.label,
                                 device_text(w.key, w.access), w.source, cause=event.error)
                          for w in event.devices))  # fmt: skip


def wanted_union(groups: Iterable[Sequence[Wanted]]) -> tuple[Wanted, ...]:
    """One ``Wanted`` per device: the union of the access every source wants, the first source
    named (entitlements before the spec before the policy, as ``groups`` are given)."""
    merged: dict[DeviceKey, Wanted] = {}
    for group in groups:
        for w in group:
            have = merged.get(w.key)
            merged[w.key] = w if have is None else Wanted(w.key, have.access | w.access, have.source)
    return tuple(merged[k] for k in sorted(merged))
