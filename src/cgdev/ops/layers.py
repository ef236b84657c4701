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

import base64
from dataclasses import dataclass, field
from typing import Any

from cgdev.core.isa import decode
from cgdev.core.lift import Decision, LiftResult, lift
from cgdev.core.model import Request
from cgdev.core.policy import Policy
from cgdev.errors import CgdevError, InputError
from cgdev.ops.targets import Target

SYSTEMD_PROGRAM_NAME = "sd_devices"


@dataclass(frozen=True, slots=True)
class ProgramRecord:
    """One attached device program as the kernel reported it (``xlated`` empty if withheld)."""

    id: int
    name: str
    tag: str
    attach_flags: int
    xlated: bytes
    blinded: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tag": self.tag,
            "attach_flags": self.attach_flags,
            "xlated_b64": base64.b64encode(self.xlated).decode(),
            "blinded": self.blinded,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> ProgramRecord:
        try:
            raw = base64.b64decode(data.get("xlated_b64", ""), validate=True)
        except ValueError:
            raise InputError(f"snapshot: program {data.get('id')!r} xlated_b64 is not base64") from None
        return ProgramRecord(
            id=int(data["id"]),
            name=str(data.get("name", "")),
            tag=str(data.get("tag", "")),
            attach_flags=int(data.get("attach_flags", 0)),
            xlated=raw,
            blinded=bool(data.get("blinded", False)),
        )


def device_from_json(value: Any, field: str) -> tuple[str, int, int]:
    """``[type, major, minor]`` from a snapshot, held to what the live path accepts (b or c,
    numbers within 32 bits): a hand-edited file must not produce verdicts the kernel never could."""
    dev_type, major, minor = value
    if dev_type not in ("b", "c"):
        raise InputError(f"snapshot: {field}: type {dev_type!r} is not b or c")
    for name, number in (("major", major), ("minor", minor)):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 0xFFFF_FFFF:
            raise InputError(f"snapshot: {field}: {name} {number!r} is not a number from 0 to 2^32-1")
    return dev_type, major, minor


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """The systemd unit whose own cgroup a layer is, with what systemd re-applies on reload.

    ``device_nodes`` are the stat() results of the DeviceAllow paths systemd would stat (plain
    ``/dev/...`` paths), taken when the snapshot was collected, so the prediction is offline.
    """

    unit: str
    control_group: str
    delegate: bool
    device_policy: str
    device_allow: tuple[tuple[str, str], ...]
    bpf_program: tuple[tuple[str, str], ...]
    need_daemon_reload: bool
    device_nodes: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    @property
    def manages_devices(self) -> bool:
        """Whether systemd attaches (and re-attaches on reload) anything to this cgroup."""
        return (
            self.device_policy != "auto"
            or bool(self.device_allow)
            or any(kind == "device" for kind, _ in self.bpf_program)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "ControlGroup": self.control_group,
            "Delegate": self.delegate,
            "DevicePolicy": self.device_policy,
            "DeviceAllow": [list(p) for p in self.device_allow],
            "BPFProgram": [list(p) for p in self.bpf_program],
            "NeedDaemonReload": self.need_daemon_reload,
            "device_nodes": {k: list(v) for k, v in self.device_nodes.items()},
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> UnitRecord:
        return UnitRecord(
            unit=str(data["unit"]),
            control_group=str(data.get("ControlGroup", "")),
            delegate=bool(data.get("Delegate", False)),
            device_policy=str(data.get("DevicePolicy", "auto")),
            device_allow=tuple((str(a), str(b)) for a, b in data.get("DeviceAllow", [])),
            bpf_program=tuple((str(a), str(b)) for a, b in data.get("BPFProgram", [])),
            need_daemon_reload=bool(data.get("NeedDaemonReload", False)),
            device_nodes={
                str(k): device_from_json(v, f"device_nodes.{k}")
                for k, v in data.get("device_nodes", {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class Layer:
    """One cgroup on the path from the root to the target, outermost first."""

    cgroup: str
    programs: tuple[ProgramRecord, ...]
    unit: UnitRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cgroup": self.cgroup,
            "programs": [p.to_json() for p in self.programs],
            "unit": None if self.unit is None else self.unit.to_json(),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Layer:
        unit = data.get("unit")
        return Layer(
            cgroup=str(data["cgroup"]),
            programs=tuple(ProgramRecord.from_json(p) for p in data.get("programs", [])),
            unit=None if unit is None else UnitRecord.from_json(unit),
        )


@dataclass(frozen=True, slots=True)
class Inspection:
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
    pins: dict[str, ProgramRecord] = field(default_factory=dict)
    devices: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    systemd: str = "off"
    systemd_version: str = ""


# -- analysis ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
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


@dataclass(frozen=True, slots=True)
class ProgramView:
    """A program with what lifting it says: the exact policy, or opaque with the reason."""

    record: ProgramRecord
    lifted: LiftResult | None
    error: str | None = None

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
            hit = self._lift(record.xlated, record.blinded)
            self._results[record.xlated] = hit
        return ProgramView(record, hit[0], hit[1])

    def _lift(self, raw: bytes, blinded: bool) -> tuple[LiftResult | None, str | None]:
        self.lifted += 1
        try:
            return lift(decode(raw), blinded=blinded), None
        except CgdevError as err:
            return None, f"not a loadable device program: {err}"


@dataclass(frozen=True, slots=True)
class LayerView:
    layer: Layer
    programs: tuple[ProgramView, ...]

    @property
    def cgroup(self) -> str:
        return self.layer.cgroup

    @property
    def unit(self) -> UnitRecord | None:
        return self.layer.unit


def analyse_layers(inspection: Inspection, cache: LiftCache | None = None) -> list[LayerView]:
    lifts = cache if cache is not None else LiftCache()
    return [LayerView(layer, tuple(lifts.view(p) for p in layer.programs)) for layer in inspection.layers]


def v1_policy(lines: tuple[str, ...] | None) -> Policy | None:
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
