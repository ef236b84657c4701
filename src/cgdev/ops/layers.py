"""The layers of a target: every cgroup from the root down, with its device programs and its unit.

This is the offline-first data model of explain/show/audit/snapshot.  An ``Inspection`` holds
everything a verdict depends on (raw programs, unit properties, the v1 devices.list, /proc/devices,
the container's device nodes) and nothing that needs the live system to interpret, so a snapshot
file is simply an ``Inspection`` written out, and the live path only *collects* one first
(``cgdev.ops.collect``).  Analysis (lifting, the effective policy) runs on this model alone.

Lifting is by far the dominant cost, and a node runs thousands of identical programs: programs are
lifted once per distinct instruction bytes (``LiftCache``), whatever their id or cgroup.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import msgspec

from cgdev.adapters.unit_files import UnitFileDevices
from cgdev.core.isa import decode
from cgdev.core.lift import Decision, LiftResult, lift
from cgdev.core.model import Request
from cgdev.core.policy import Policy
from cgdev.errors import CgdevError
from cgdev.ops.targets import Target

SYSTEMD_PROGRAM_NAME = "sd_devices"


class SystemdStatus(StrEnum):
    """Whether systemd was asked; an unreachable one is recorded as ``"unreachable: <why>"``."""

    OK = "ok"
    OFF = "off"
    UNREACHABLE = "unreachable"


class ProgramRecord(msgspec.Struct, frozen=True, rename={"xlated": "xlated_b64"}):
    """One attached device program as the kernel reported it (``xlated`` empty if withheld).

    In a snapshot ``xlated`` is ``xlated_b64``, base64 (msgspec's encoding of bytes).
    ``helpers`` names the helper calls of ``xlated`` (``(translated call offset, kernel
    symbol)`` pairs), resolved where the program was read, since only that kernel's symbols can.
    """

    id: int
    name: str = ""
    tag: str = ""
    attach_flags: int = 0
    xlated: bytes = b""
    blinded: bool = False
    helpers: tuple[tuple[int, str], ...] = ()


# A device node as a snapshot records it, held to what the live path accepts (b or c, numbers
# within 32 bits): a hand-edited file must not produce verdicts the kernel never could.
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF_FFFF)]
DeviceNode = tuple[Literal["b", "c"], U32, U32]

_UNIT_FIELDS: Final = {
    "control_group": "ControlGroup",
    "delegate": "Delegate",
    "device_policy": "DevicePolicy",
    "device_allow": "DeviceAllow",
    "bpf_program": "BPFProgram",
    "need_daemon_reload": "NeedDaemonReload",
}


class UnitRecord(msgspec.Struct, frozen=True, rename=_UNIT_FIELDS):
    """The systemd unit whose own cgroup a layer is, with what systemd re-applies on reload.

    ``device_nodes`` are the stat() results of the DeviceAllow paths systemd would stat (plain
    ``/dev/...`` paths), taken when the snapshot was collected, so the prediction is offline.
    Its JSON spells the properties as systemd does (``DevicePolicy``...).
    """

    unit: str
    control_group: str = ""
    delegate: bool = False
    device_policy: str = "auto"
    device_allow: tuple[tuple[str, str], ...] = ()
    bpf_program: tuple[tuple[str, str], ...] = ()
    need_daemon_reload: bool = False
    device_nodes: dict[str, DeviceNode] = {}
    # With NeedDaemonReload=yes: the device settings the unit's files on disk give (what a
    # daemon-reload loads); None when not needed or not readable.
    on_disk: UnitFileDevices | None = None

    @property
    def reload_keeps_devices(self) -> bool:
        """Whether a daemon-reload loads the device settings systemd has loaded now (so
        NeedDaemonReload=yes changes nothing for devices)."""
        if not self.need_daemon_reload:
            return True
        if self.on_disk is None:
            return False
        from cgdev.adapters.unit_files import normal_access

        loaded = tuple((p, normal_access(a)) for p, a in self.device_allow)
        return self.on_disk.device_policy == self.device_policy and self.on_disk.device_allow == loaded

    @property
    def manages_devices(self) -> bool:
        """Whether systemd attaches (and re-attaches on reload) anything to this cgroup."""
        return (
            self.device_policy != "auto"
            or bool(self.device_allow)
            or any(kind == "device" for kind, _ in self.bpf_program)
        )


class Layer(msgspec.Struct, frozen=True):
    """One cgroup on the path from the root to the target, outermost first."""

    cgroup: str
    programs: tuple[ProgramRecord, ...] = ()
    unit: UnitRecord | None = None


class Inspection(msgspec.Struct, frozen=True):
    """Everything explain/show need about one target, live or from a snapshot.

    ``systemd`` says whether systemd was asked: ``"ok"``, ``"unreachable: <why>"`` or ``"off"``;
    ``systemd_version`` is its ``Version`` ("" when not known), which decides what a reload re-applies.
    ``pins`` holds, per ``BPFProgram=device:PATH`` of any layer's unit, the program that pin holds
    now (what a reload would attach).  ``devices`` maps device paths as the container sees them
    to ``(type, major, minor)``.
    """

    target: Target
    layers: tuple[Layer, ...]
    proc_devices: str = ""
    v1_devices: tuple[str, ...] | None = None
    pins: dict[str, ProgramRecord] = msgspec.field(default_factory=dict)
    devices: dict[str, DeviceNode] = msgspec.field(default_factory=dict)
    systemd: str = "off"
    systemd_version: str = ""


def all_allow(verdicts: Iterable[bool | None]) -> bool | None:
    """The AND of verdicts where None is unknown: any deny denies, else any unknown is unknown
    (unknown never reads as allowed)."""
    seen = list(verdicts)
    if any(v is False for v in seen):
        return False
    if any(v is None for v in seen):
        return None
    return True


# -- analysis ------------------------------------------------------------------------------------


class Verdict(msgspec.Struct, frozen=True):
    """One program's answer to one request: ``allowed`` None when it cannot be computed (a
    program whose instructions the kernel withheld), with the rule and instructions that decided."""

    allowed: bool | None
    rule: str | None
    insn_range: tuple[int, int] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "rule": self.rule,
            "insn_range": None if self.insn_range is None else list(self.insn_range),
        }


class ProgramView(msgspec.Struct, frozen=True):
    """A program with what lifting it says: the exact policy, or opaque with the reason."""

    record: ProgramRecord
    lifted: LiftResult | None
    error: str | None = None
    # The layer unit's ``BPFProgram=device:`` pin (systemd's path) that holds this very program:
    # crun >= 1.23 pins its program there and systemd attaches it (``analyse_layers`` sets it).
    pin: str | None = None

    @property
    def policy(self) -> Policy | None:
        return None if self.lifted is None else self.lifted.policy

    @property
    def opaque(self) -> str | None:
        if self.error is not None:
            return self.error
        return None if self.lifted is None else self.lifted.opaque

    @property
    def generator(self) -> str:
        return "unknown" if self.lifted is None else self.lifted.generator

    @property
    def owned_by_systemd(self) -> bool:
        """systemd's own ``sd_devices`` (the one it replaces on reload), known by the name systemd
        gives it: a systemd-*shaped* program someone else attached (``cgdev compile --shape
        systemd`` in a hook) stays after a reload, so the shape alone must not decide."""
        return self.record.name == SYSTEMD_PROGRAM_NAME

    @property
    def owner(self) -> str | None:
        """Who made the program: ``systemd`` for its own, the pin's writer for a pinned one
        (crun pins under ``<bpffs>/crun/``; else the program's generator); None: not known
        (a runtime's or a hook's program attached directly says nothing about who attached it)."""
        if self.owned_by_systemd:
            return "systemd"
        if self.pin is None:
            return None
        return pin_owner(self.pin) or self.generator

    @property
    def attached_by(self) -> str | None:
        """``systemd`` when systemd attached it (its own, or a ``BPFProgram=`` pin); None: unknown."""
        return "systemd" if self.owned_by_systemd or self.pin is not None else None

    def decide(self, request: Request) -> Decision | None:
        """The deciding block for one request; None when the program cannot be run at all."""
        if self.lifted is None:
            return None
        return self.lifted.decide(request)

    def verdict(self, request: Request) -> Verdict:
        decision = self.decide(request)
        if decision is None:
            return Verdict(None, None, None)
        rule = None if decision.rule is None else str(decision.rule)
        return Verdict(decision.allowed, rule, decision.insn_range)


# Where runtimes pin the programs they hand to systemd (``BPFProgram=device:PATH``).
_PIN_OWNERS: Final = {"crun": "crun"}


def pin_owner(path: str) -> str | None:
    """The runtime a pin path belongs to (``/sys/fs/bpf/crun/crun-x_scope`` -> ``crun``), None if
    the path is nobody's known place."""
    parts = [p for p in path.split("/") if p]
    for index, part in enumerate(parts[:-1]):
        if part in _PIN_OWNERS and index > 0 and parts[index - 1] == "bpf":
            return _PIN_OWNERS[part]
    return None


def unit_pins(unit: UnitRecord | None) -> tuple[str, ...]:
    """The unit's ``BPFProgram=device:`` pins (systemd's paths)."""
    return () if unit is None else tuple(path for kind, path in unit.bpf_program if kind == "device")


class LiftCache:
    """Lift each distinct program once per run (keyed by its exact instruction bytes)."""

    def __init__(self) -> None:
        self._results: dict[bytes, tuple[LiftResult | None, str | None]] = {}
        self.lifted = 0

    def view(self, record: ProgramRecord) -> ProgramView:
        if not record.xlated:
            reason = "the kernel withheld the instructions (restricted or blinded dump)"
            return ProgramView(record, None, reason)
        hit = self._results.get(record.xlated)
        if hit is None:
            hit = self._lift(record.xlated, record.blinded, record.helpers)
            self._results[record.xlated] = hit
        return ProgramView(record, hit[0], hit[1])

    def _lift(
        self, raw: bytes, blinded: bool, helpers: tuple[tuple[int, str], ...]
    ) -> tuple[LiftResult | None, str | None]:
        self.lifted += 1
        try:
            return lift(decode(raw), blinded=blinded, calls=dict(helpers)), None
        except CgdevError as err:
            return None, f"not a loadable device program: {err}"


class LayerView(msgspec.Struct, frozen=True):
    layer: Layer
    programs: tuple[ProgramView, ...]

    @property
    def cgroup(self) -> str:
        return self.layer.cgroup

    @property
    def unit(self) -> UnitRecord | None:
        return self.layer.unit


def analyse_layers(inspection: Inspection, cache: LiftCache | None = None) -> list[LayerView]:
    """Each layer with its programs lifted; a program a ``BPFProgram=device:`` pin of the layer's
    unit holds is marked with that pin (systemd attaches it, the runtime made it)."""
    lifts = cache if cache is not None else LiftCache()
    out = []
    for layer in inspection.layers:
        pinned = {inspection.pins[pin].id: pin for pin in unit_pins(layer.unit) if pin in inspection.pins}
        views = []
        for record in layer.programs:
            view = lifts.view(record)
            if record.id in pinned:
                view = msgspec.structs.replace(view, pin=pinned[record.id])
            views.append(view)
        out.append(LayerView(layer, tuple(views)))
    return out


def devices_list_policy(lines: tuple[str, ...] | None) -> Policy | None:
    """The v1 devices.list of the process as a policy (None: no v1 devices controller).

    The kernel lists a deny-all cgroup's exceptions, and a request passes only when one of them
    covers all of it (``c 1:* r`` + ``c 1:3 w`` deny ``c 1:3 rw``), hence the exceptions reading.
    An allow-all cgroup prints only ``a *:* rwm``: its deny exceptions, if any, are not visible
    in devices.list at all (device_cgroup.c), so there this layer can only say allow-all.
    """
    if lines is None:
        return None
    from cgdev.core.rules import parse_v1_line
    from cgdev.core.semantics.runc import exceptions_policy

    rules = [parse_v1_line(line, f"devices.list line {i + 1}") for i, line in enumerate(lines)]
    return exceptions_policy(False, [r for r in rules if r.allow])


def effective_policy(views: list[LayerView], v1: Policy | None = None) -> Policy | None:
    """The AND of every program on the path (and v1); None if any program is opaque."""
    result = Policy.allow_all() if v1 is None else v1
    for view in views:
        for program in view.programs:
            if program.policy is None:
                return None
            result = result & program.policy
    return result
