"""Plan a grant or a revoke: from an ``Inspection`` and a request, the typed actions that do it.

Pure (no I/O): the plan is plain data, so ``--dry-run``, ``--json`` and an offline snapshot work on
it, and ``apply`` is the only place that changes anything.  What a plan does, and why:

- every device program on the path whose lifted policy denies (grant) or allows (revoke) some of
  the request is replaced by one whose policy is *exactly* the lifted policy plus (minus) the
  request; by default in the same generator's shape (a crun program stays crun-shaped, so the
  runtime and ``explain`` still recognise it), else — or with ``shape="cgdev"`` — cgdev's own.
  Every candidate is lifted back and compared with the wanted policy before it is used;
- systemd's own ``sd_devices`` is not swapped by cgdev: the owning unit's ``DeviceAllow`` is
  updated instead (one ``SetUnitProperties`` call, ``DeviceAllow`` before ``DevicePolicy``), and
  systemd itself attaches the rebuilt program and detaches its old one.  Swapping it under
  systemd would leave cgdev's copy attached forever, since systemd detaches by its own handle;
  updating the unit is also what makes the change survive ``daemon-reload``/``set-property``;
- a unit that manages devices with no ``sd_devices`` on its cgroup today (runc, crun with
  ``run.oci.systemd.subgroup=""``) gets the same ``DeviceAllow`` update, since a reload would
  attach one;
- a ``BPFProgram=device:`` pin holding a replaced program (crun >= 1.23 hands its program to
  systemd that way) is re-pinned to the new one, since a reload re-attaches what the pin holds;
  so is a pin whose program is not attached now (a hook swapped it out) but denies: the next
  reload attaches it beside the rest (``SwapMode.PIN_ONLY``);
- v1 (hybrid hosts): a ``devices.allow`` line when the v1 devices cgroup denies a grant;
- an opaque program on the path is refused: its policy is unknown, so "exactly plus the request"
  cannot be built (exit 2, nothing changed).

Over 400 lines because the request, the three action kinds and the per-generator rebuilding are
one decision read top to bottom; the actions' ``describe``/``to_json`` are what ``--dry-run`` shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

import msgspec

from cgdev.core.isa import Insn, decode, encode
from cgdev.core.model import (
    REQUEST_MASKS,
    Device,
    DevType,
    Request,
    access_to_str,
    parse_access,
)
from cgdev.core.policy import Policy, StepFn
from cgdev.errors import CgdevError, EnvError, InputError
from cgdev.ops.layers import (
    Inspection,
    LayerView,
    LiftCache,
    ProgramView,
    UnitRecord,
    analyse_layers,
    devices_list_policy,
    unit_pins,
)
from cgdev.ops.targets import Target

BPF_NAME_MAX: Final = 15
CGDEV_PROGRAM_NAME: Final = "cgdev_devices"
SHAPE_CHOICES: Final = ("auto", "cgdev")


class Change(StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"


class ActionKind(StrEnum):
    REPLACE_PROGRAM = "replace-program"
    SET_UNIT_DEVICE_ALLOW = "set-unit-device-allow"
    V1_DEVICES_WRITE = "v1-devices-write"


class SwapMode(StrEnum):
    """How a program is swapped: ``replace`` (BPF_F_REPLACE, the only program on its cgroup) or
    ``attach-detach`` (the new one attached beside, then the old one detached)."""

    REPLACE = "replace"
    ATTACH_DETACH = "attach-detach"
    PIN_ONLY = "pin-only"  # a pinned program not attached now (a hook replaced it): re-pin only


# -- the request -----------------------------------------------------------------------------------


def parse_access_bits(text: str) -> int:
    """``m``, ``r``, ``w``, ``rw``, ``rwm`` (any order): the access a grant gives; never empty
    (``core.model.parse_access``, the reader explain uses too)."""
    return int(parse_access(text, "access"))


class DeviceAccess(msgspec.Struct, frozen=True):
    """One device and the access bits granted or revoked on it (``c 195:255 rw``)."""

    type: DevType
    major: int
    minor: int
    access: int

    def __str__(self) -> str:
        return f"{self.type} {self.major}:{self.minor} {access_to_str(self.access)}"

    @property
    def link_path(self) -> str:
        """systemd's textual spelling (parsed by systemd >= 240 without a node on disk)."""
        return f"/dev/{'char' if self.type == 'c' else 'block'}/{self.major}:{self.minor}"

    def masks(self, change: Change) -> list[int]:
        """The request masks a change touches: a grant allows every mask within the access
        (``rw`` gives ``r``, ``w`` and ``rw``); a revoke denies every mask that asks for a revoked
        bit (revoking ``w`` denies ``w`` and ``rw``, keeps ``r``)."""
        if change is Change.GRANT:
            return [m for m in REQUEST_MASKS if m & self.access == m]
        return [m for m in REQUEST_MASKS if m & self.access]

    def requests(self, change: Change) -> list[Request]:
        return [Request(self.type, self.major, self.minor, m) for m in self.masks(change)]

    def box(self, change: Change) -> Policy:
        """The policy allowing exactly the requests the change touches, and nothing else."""
        none = StepFn.const(StepFn.const(0))
        maskset = sum(1 << m for m in self.masks(change))
        minors = StepFn.from_points(0, {self.minor: maskset})
        majors = StepFn.from_points(StepFn.const(0), {self.major: minors})
        return Policy(majors, none) if self.type == "b" else Policy(none, majors)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "major": self.major,
            "minor": self.minor,
            "access": access_to_str(self.access),
        }


def parse_devices(
    text: str, access: int, *, inspection: Inspection, live: bool, cdi_dirs: Sequence[str] = ()
) -> list[DeviceAccess]:
    """DEVICE as every command reads it (``ops.explain.resolve_devices``): ``/dev/nvidiactl`` (the
    container's node, else the host's; offline, the snapshot's device list), ``c 195:255``,
    ``195:255`` (char), ``/dev/char/195:255``, or a CDI name (each device node it injects)."""
    if "=" not in text:  # the numeric spellings (no CDI name lacks its '='): what resolve_devices
        numeric = Device.parse_numeric(text, "device")  # does first, without importing explain
        if numeric is not None and not text.strip().startswith("/"):
            return [DeviceAccess(numeric.type, numeric.major, numeric.minor, access)]
    from cgdev.ops.explain import resolve_devices  # a path or CDI name: the container, the host

    found = resolve_devices(text, inspection, access, live=live, cdi_dirs=cdi_dirs)
    return [DeviceAccess(r.type, r.major, r.minor, access) for r, _source in found]


# -- actions ---------------------------------------------------------------------------------------


class ReplaceProgram(msgspec.Struct, frozen=True):
    """Swap program ``old_id`` on ``cgroup`` for ``insns`` (policy ``after``, was ``before``)."""

    cgroup: str
    old_id: int
    old_name: str
    old_generator: str
    name: str
    shape: str
    insns: bytes
    mode: SwapMode
    before: Policy
    after: Policy
    pins: tuple[str, ...] = ()  # BPFProgram=device: pins (systemd's paths) holding the old program
    kind: ActionKind = ActionKind.REPLACE_PROGRAM

    def describe(self) -> str:
        if self.mode is SwapMode.PIN_ONLY:
            return (
                f"re-pin {', '.join(self.pins)}: program #{self.old_id} ({self.old_generator}), not "
                f"attached to {self.cgroup} now, replaced by a {self.shape}-shaped program of "
                f"{len(self.insns) // 8} instructions (systemd attaches it on the next reload)"
            )
        how = "BPF_F_REPLACE" if self.mode is SwapMode.REPLACE else "attach the new, then detach the old"
        pinned = f"; re-pin {', '.join(self.pins)}" if self.pins else ""
        return (
            f"replace program #{self.old_id} {self.old_name or '(no name)'} ({self.old_generator}) on "
            f"{self.cgroup} with a {self.shape}-shaped program of {len(self.insns) // 8} instructions "
            f"({how}){pinned}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "cgroup": self.cgroup,
            "old_id": self.old_id,
            "old_name": self.old_name,
            "old_generator": self.old_generator,
            "name": self.name,
            "shape": self.shape,
            "instructions": len(self.insns) // 8,
            "mode": str(self.mode),
            "pins": list(self.pins),
        }


class SetUnitDeviceAllow(msgspec.Struct, frozen=True):
    """``SetUnitProperties(unit, runtime, [DeviceAllow=[] , DeviceAllow=new, DevicePolicy=...])``.

    systemd rebuilds its ``sd_devices`` from it at once (``replaces``: the ids it swaps out)."""

    unit: str
    cgroup: str
    device_policy: str
    old_allow: tuple[tuple[str, str], ...]
    new_allow: tuple[tuple[str, str], ...]
    runtime: bool
    replaces: tuple[int, ...] = ()
    kind: ActionKind = ActionKind.SET_UNIT_DEVICE_ALLOW

    def describe(self) -> str:
        added = [f"{p} {a}" for p, a in self.new_allow if (p, a) not in self.old_allow]
        removed = [f"{p} {a}" for p, a in self.old_allow if (p, a) not in self.new_allow]
        parts = ([f"add {', '.join(added)}"] if added else []) + (
            [f"drop {', '.join(removed)}"] if removed else []
        )
        scope = "runtime" if self.runtime else "persistent"
        swap = (
            f"; systemd swaps its sd_devices #{', #'.join(map(str, self.replaces))}" if self.replaces else ""
        )
        return f"{self.unit}: DeviceAllow {'; '.join(parts) or 'unchanged'} ({scope}){swap}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "unit": self.unit,
            "cgroup": self.cgroup,
            "DevicePolicy": self.device_policy,
            "old_DeviceAllow": [list(p) for p in self.old_allow],
            "new_DeviceAllow": [list(p) for p in self.new_allow],
            "runtime": self.runtime,
            "replaces": list(self.replaces),
        }


class V1DevicesWrite(msgspec.Struct, frozen=True):
    """One line into the process's v1 devices cgroup (``devices.allow`` or ``devices.deny``);
    undone by the same line into the other file."""

    pid: int
    file: str
    line: str
    kind: ActionKind = ActionKind.V1_DEVICES_WRITE

    def describe(self) -> str:
        return f"v1: write '{self.line}' to devices.{self.file} of pid {self.pid}'s devices cgroup"

    def to_json(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "pid": self.pid, "file": self.file, "line": self.line}


Action = ReplaceProgram | SetUnitDeviceAllow | V1DevicesWrite


class Plan(msgspec.Struct, frozen=True):
    change: Change
    target: Target
    devices: tuple[DeviceAccess, ...]
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()

    @property
    def box(self) -> Policy:
        result = Policy.deny_all()
        for device in self.devices:
            result = result | device.box(self.change)
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "change": str(self.change),
            "target": msgspec.to_builtins(self.target),
            "devices": [d.to_json() for d in self.devices],
            "actions": [a.to_json() for a in self.actions],
            "notes": list(self.notes),
        }


# -- planning --------------------------------------------------------------------------------------


def changed_policy(policy: Policy, box: Policy, change: Change) -> Policy:
    """Exactly ``policy`` plus (grant) or minus (revoke) the request."""
    return policy | box if change is Change.GRANT else policy.minus(box)


def _needs_change(policy: Policy, box: Policy, change: Change) -> bool:
    return changed_policy(policy, box, change) != policy


def plan(
    inspection: Inspection,
    change: Change,
    devices: tuple[DeviceAccess, ...],
    *,
    shape: str = "auto",
    persistent: bool = False,
    cache: LiftCache | None = None,
    offline: bool = False,
) -> Plan:
    """The actions that grant (revoke) ``devices`` on every layer of the inspected target.
    ``offline``: a plan read from a snapshot, never applied, so a missing systemd is a note, not
    a refusal (the snapshot may have been taken without it)."""
    if shape not in SHAPE_CHOICES:
        raise InputError(f"is not one of {', '.join(SHAPE_CHOICES)}", field="shape", value=shape)
    if not devices:
        raise InputError("missing (give at least one device)", field="device")
    box = Policy.deny_all()
    for device in devices:
        box = box | device.box(change)
    lifts = cache if cache is not None else LiftCache()
    views = analyse_layers(inspection, lifts)
    for view in views:
        for program in (*view.programs, *_unattached_pinned(view, inspection, lifts)):
            if program.policy is None:
                raise InputError(
                    f"program #{program.record.id} {program.record.name or '(no name)'} on {view.cgroup} "
                    f"is opaque ({program.opaque}): its policy cannot be changed exactly; nothing changed",
                    field="target",
                    value=inspection.target.spec,
                )
    systemd_ok = inspection.systemd == "ok"
    actions: list[Action] = []
    notes: list[str] = []
    for view in views:
        unit_action = (
            _unit_action(view, inspection, box, change, devices, persistent)
            if systemd_ok and view.unit is not None
            else None
        )
        for program in view.programs:
            policy = program.policy
            assert policy is not None
            if not _needs_change(policy, box, change):
                continue
            if unit_action is not None and program.owned_by_systemd:
                continue  # systemd swaps its own program when the unit changes
            pins = _pins_holding(view, inspection, program.record.id)
            actions.append(_replace(view, program, box, change, shape, pins))
        for program in _unattached_pinned(view, inspection, lifts):
            assert program.policy is not None and program.pin is not None
            if _needs_change(program.policy, box, change):  # else the next reload brings it back
                pins = _pins_holding(view, inspection, program.record.id)
                actions.append(_replace(view, program, box, change, shape, pins, SwapMode.PIN_ONLY))
        if unit_action is not None:
            actions.append(unit_action)
    if not systemd_ok:
        if not offline:
            _refuse_without_systemd(inspection, views, change, actions)
        notes.append(
            f"systemd not asked ({inspection.systemd}): unit properties are not updated, not durable"
        )
    v1 = devices_list_policy(inspection.v1_devices)
    if (
        v1 is not None
        and change is Change.GRANT
        and inspection.target.pid is not None
        and _needs_change(v1, box, change)
    ):
        for device in devices:
            actions.append(V1DevicesWrite(inspection.target.pid, "allow", str(device)))
    return Plan(change, inspection.target, devices, tuple(actions), tuple(notes))


def _refuse_without_systemd(
    inspection: Inspection, views: Sequence[LayerView], change: Change, actions: Sequence[Action]
) -> None:
    """A change on a path systemd manages (the target's unit, or systemd's own program on a layer)
    needs systemd's DeviceAllow too: made on the programs alone, the next reload or set-property
    would undo it (the verification then rolled everything back, exit 1, after the fact).  So
    without systemd it is refused before anything is applied, an environment problem (exit 3)."""
    if not actions:
        return
    systemd_layers = inspection.target.unit is not None or any(
        view.unit is not None or any(p.owned_by_systemd for p in view.programs) for view in views
    )
    if not systemd_layers:
        return  # a cgroupfs container: no unit re-applies anything
    if inspection.systemd == "off":  # a snapshot taken without systemd, --no-systemd
        why = "systemd was not asked"
    else:
        why = f"systemd is not reachable ({inspection.systemd.removeprefix('unreachable: ')})"
    raise EnvError(
        f"{why}, and {inspection.target.spec}'s cgroups belong to systemd units: the {change} could "
        "not be made durable (the next reload would undo it); nothing changed. Reach its systemd "
        "with --bus ADDRESS, --lab or --ns-pid PID"
    )


def _unattached_pinned(view: LayerView, inspection: Inspection, cache: LiftCache) -> list[ProgramView]:
    """The programs the unit's pins hold that are not attached to its cgroup now (a hook replaced
    crun's pinned program there): the next reload attaches them beside what is there, so a grant
    rewrites them too, or it would not last."""
    attached = {p.record.id for p in view.programs}
    out: dict[int, ProgramView] = {}
    for pin in unit_pins(view.unit):
        record = inspection.pins.get(pin)
        if record is not None and record.id not in attached and record.id not in out:
            out[record.id] = msgspec.structs.replace(cache.view(record), pin=pin)
    return list(out.values())


def _pins_holding(view: LayerView, inspection: Inspection, prog_id: int) -> tuple[str, ...]:
    """The unit's ``BPFProgram=device:`` pins that hold this very program: a reload re-attaches
    what a pin holds (crun >= 1.23 hands its program to systemd this way), so they are rewritten."""
    if view.unit is None:
        return ()
    return tuple(
        pin
        for kind, pin in view.unit.bpf_program
        if kind == "device" and pin in inspection.pins and inspection.pins[pin].id == prog_id
    )


def _replace(
    view: LayerView,
    program: ProgramView,
    box: Policy,
    change: Change,
    shape: str,
    pins: tuple[str, ...] = (),
    mode: SwapMode | None = None,
) -> ReplaceProgram:
    assert program.policy is not None and program.lifted is not None
    wanted = changed_policy(program.policy, box, change)
    insns, shape_used = shaped_program(wanted, program, shape, box, change)
    old_name = program.record.name
    name = CGDEV_PROGRAM_NAME if program.owned_by_systemd or not old_name else old_name[:BPF_NAME_MAX]
    if mode is None:
        mode = SwapMode.REPLACE if len(view.programs) == 1 else SwapMode.ATTACH_DETACH
    return ReplaceProgram(
        cgroup=view.cgroup,
        old_id=program.record.id,
        old_name=old_name,
        old_generator=program.generator,
        name=name,
        shape=shape_used,
        insns=encode(insns),
        mode=mode,
        before=program.policy,
        after=wanted,
        pins=pins,
    )


def shaped_program(
    wanted: Policy, old: ProgramView, shape: str, box: Policy, change: Change
) -> tuple[tuple[Insn, ...], str]:
    """A program meaning exactly ``wanted``: the old program's generator shape when it can say it
    exactly (checked by lifting the candidate), else cgdev's compiler."""
    from cgdev.core.lift import lift

    if shape == "auto":
        old_insns = decode(old.record.xlated)
        for candidate in _candidates(wanted, old.generator, old_insns, box, change):
            if lift(candidate).policy == wanted:
                return candidate, old.generator
    from cgdev.core.compile import compile_policy

    return compile_policy(wanted), "cgdev"


_HOOK: Final = "libnvidia-container + "


def _candidates(
    wanted: Policy, generator: str, old_insns: tuple[Insn, ...], box: Policy, change: Change
) -> list[tuple[Insn, ...]]:
    """Programs in ``generator``'s shape that should mean ``wanted`` (the caller checks).

    Behind libnvidia-container's prefix, the prefix is kept as it is and only the old program
    behind it is rebuilt (in its own generator's shape), when that gives ``wanted`` exactly: the
    prefix only ever allows, so this works for every grant and for a revoke the prefix does not
    itself allow."""
    if not generator.startswith(_HOOK):
        return _generator_candidates(wanted, generator, old_insns)
    from cgdev.core.isa import alu64, exit_
    from cgdev.core.lift import lift
    from cgdev.core.lift.generators import hook_prefix_length

    split = hook_prefix_length(old_insns)
    if split is None:
        return []
    prefix, inner = old_insns[:split], old_insns[split:]
    prefix_policy = lift((*prefix, alu64("mov", 0, imm=0), exit_())).policy
    inner_policy = lift(inner).policy
    if prefix_policy is None or inner_policy is None:
        return []
    inner_wanted = changed_policy(inner_policy, box, change)
    if prefix_policy | inner_wanted != wanted:
        return []
    return [(*prefix, *c) for c in _generator_candidates(inner_wanted, generator[len(_HOOK) :], inner)]


def _generator_candidates(
    wanted: Policy, generator: str, old_insns: tuple[Insn, ...]
) -> list[tuple[Insn, ...]]:
    from cgdev.core import shapes
    from cgdev.core.render import to_rules, to_systemd, to_v1_lines

    out: list[tuple[Insn, ...]] = []
    try:
        if generator == "crun":
            from cgdev.core.semantics.crun import crun_emits_terminal
            from cgdev.core.semantics.defaults import CRUN_SENTINEL

            rules = list(reversed(to_rules(wanted).rules))
            sentinel = shapes.crun_program([CRUN_SENTINEL], False)
            chain = [CRUN_SENTINEL, *rules] if old_insns[: len(sentinel)] == sentinel else rules
            out.append(shapes.crun_program(chain, crun_emits_terminal(chain)))
        elif generator == "runc":
            from cgdev.core.semantics.runc import runc_program_rules

            default_allow, runc_rules = runc_program_rules(list(to_v1_lines(wanted).rules))
            out.append(shapes.runc_program(default_allow, runc_rules))
        elif generator == "systemd":
            rendered = to_systemd(wanted)
            program = shapes.systemd_properties_program(rendered.device_policy, list(rendered.device_allow))
            if program:
                out.append(program)
    except CgdevError:
        pass
    return out


def _sd_policy(unit: UnitRecord, device_policy: str, allow: tuple[tuple[str, str], ...], proc: str) -> Policy:
    from cgdev.core.semantics.systemd import standard_stat, systemd_program

    def stat(path: str) -> tuple[str, int, int] | None:
        return unit.device_nodes.get(path) or standard_stat(path)

    return systemd_program(device_policy, allow, proc, stat).policy()


def _unit_action(
    view: LayerView,
    inspection: Inspection,
    box: Policy,
    change: Change,
    devices: tuple[DeviceAccess, ...],
    persistent: bool,
) -> SetUnitDeviceAllow | None:
    """The DeviceAllow edit that makes what systemd re-applies carry the change, if one is needed."""
    unit = view.unit
    assert unit is not None
    if not unit.manages_devices or (unit.device_policy == "auto" and not unit.device_allow):
        return None
    proc = inspection.proc_devices
    old = unit.device_allow
    if not _needs_change(_sd_policy(unit, unit.device_policy, old, proc), box, change):
        return None
    new = list(old)
    for device in devices:
        new = _edit_allow(new, device, change, unit, proc)
    result = _sd_policy(unit, unit.device_policy, tuple(new), proc)
    if _needs_change(result, box, change):
        wider = _covering_entries(unit, tuple(new), box, proc) or tuple(new)
        raise InputError(
            f"{unit.unit}'s DeviceAllow grants the device through a wider entry "
            f"({', '.join(f'{p} {a}' for p, a in wider)}): a revoke would not survive a reload; "
            "nothing changed",
            field="device",
            value=", ".join(str(d) for d in devices),
        )
    replaces = tuple(p.record.id for p in view.programs if p.owned_by_systemd)
    return SetUnitDeviceAllow(
        unit.unit, view.cgroup, unit.device_policy, old, tuple(new), not persistent, replaces
    )


def _covering_entries(
    unit: UnitRecord, allow: tuple[tuple[str, str], ...], box: Policy, proc: str
) -> tuple[tuple[str, str], ...]:
    """The DeviceAllow entries that grant some of ``box`` on their own: the ones a refusal names
    (the whole list would bury them)."""
    base = _sd_policy(unit, unit.device_policy, (), proc) & box
    return tuple(e for e in allow if (_sd_policy(unit, unit.device_policy, (e,), proc) & box) != base)


def _entry_device(unit: UnitRecord, path: str, access: str, proc: str) -> tuple[str, int, int, int] | None:
    """``(type, major, minor, bits)`` when a DeviceAllow entry names exactly one device."""
    from cgdev.core.rules import parse_device_allow
    from cgdev.core.semantics.systemd import standard_stat

    def lookup(p: str) -> tuple[str, int, int] | None:
        return unit.device_nodes.get(p) or standard_stat(p)

    try:
        rules = parse_device_allow(path, access, "DeviceAllow", lookup, proc)
    except CgdevError:
        return None
    if len(rules) != 1 or rules[0].major is None or rules[0].minor is None or rules[0].type == "a":
        return None
    return rules[0].type, rules[0].major, rules[0].minor, rules[0].access


def _edit_allow(
    allow: list[tuple[str, str]], device: DeviceAccess, change: Change, unit: UnitRecord, proc: str
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    merged = device.access
    for path, access in allow:
        named = _entry_device(unit, path, access, proc)
        if named is None or named[:3] != (device.type, device.major, device.minor):
            out.append((path, access))
            continue
        if change is Change.GRANT:
            merged |= named[3]  # systemd keeps one entry per node: the new one carries both
        else:
            left = named[3] & ~device.access
            if left:
                out.append((path, access_to_str(left)))
    if change is Change.GRANT:
        out.append((device.link_path, access_to_str(merged)))
    return out
