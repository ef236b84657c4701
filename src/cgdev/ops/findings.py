"""Findings: the known ways device access goes wrong across layers, each with its fix options.

A verdict alone does not tell a user what to do; the failure modes are few and well known
(DESIGN.md §1, anchors.md §0): crun 1.18-1.22's double filter, grants a reload will drop,
systemd's filter coming back beside a runtime's after a reload, privileged containers, programs
cgdev cannot read, units whose files changed on disk, and crun >= 1.23's program that systemd
attaches from a ``BPFProgram=`` pin (one filter, where a hook cannot grant and ``crun update``
refuses).  Each finding names the fix options with their trade-offs, because the right one
depends on who owns the container.

Two entry points: ``structural_findings`` (no request: audit and show) and ``request_findings``
(one request: explain), which is sharper (it names the exact layer that denies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from cgdev.core.model import ACC_M, ACC_R, ACC_W, Request, access_to_str
from cgdev.core.policy import Policy
from cgdev.ops.layers import LayerView, UnitRecord, Verdict
from cgdev.ops.reload import PredictedLayer, ProgramOrigin

EXAMPLES: Final = 3


@dataclass(frozen=True, slots=True)
class Fix:
    action: str
    tradeoff: str

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "tradeoff": self.tradeoff}


class FindingCode(StrEnum):
    """The known failure modes (docs/json-schema.md lists them for scripts)."""

    OPAQUE_PROGRAM = "opaque-program"
    NEED_DAEMON_RELOAD = "need-daemon-reload"
    RELOAD_ADDS_FILTER = "reload-adds-filter"
    ALLOW_ALL = "allow-all"
    DOUBLE_FILTER = "double-filter"
    RELOAD_DROPS_GRANT = "reload-drops-grant"
    SPEC_DEVICE_SKIPPED = "spec-device-skipped"  # ops.spec_devices: in the spec, not in DeviceAllow
    PINNED_PROGRAM = "pinned-program"  # a runtime's program systemd attaches from a BPFProgram= pin


@dataclass(frozen=True, slots=True)
class Finding:
    code: FindingCode
    message: str
    fix: tuple[Fix, ...]
    layer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "layer": self.layer,
            "fix": [f.to_json() for f in self.fix],
        }


def grant_durable(trigger: str, unit: str | None = None, request: Request | None = None) -> Fix:
    """The durable grant, with the unit and device filled in when they are known."""
    device = "/dev/char/MAJ:MIN rw"
    grant = _grant_command(unit, request)
    if request is not None:
        kind = "char" if request.type == "c" else "block"
        device = f"/dev/{kind}/{request.major}:{request.minor} {access_to_str(request.access)}"
    return Fix(
        f"grant on every layer durably: `{grant}` replaces each denying program with one that "
        "allows exactly the device too and adds it to the unit's DeviceAllow, verified and rolled "
        f"back on failure; by hand, `systemctl set-property --runtime {unit or 'UNIT'} "
        f"DeviceAllow='{device}'` fixes systemd's layer (it regenerates its program) and the other "
        "denying programs must be replaced",
        f"works now and survives the next {trigger}; a runtime `update` that rebuilds its own "
        "program from the spec can still drop it",
    )


def _grant_command(unit: str | None, request: Request | None) -> str:
    if request is None:
        return "cgdev grant TARGET DEVICE"
    number = f"'{request.type} {request.major}:{request.minor}'"
    return f"cgdev grant {unit or 'TARGET'} {number} --access {access_to_str(request.access)}"


def grant_pinned(trigger: str, unit: str | None, pins: Sequence[str], request: Request | None = None) -> Fix:
    """The durable grant where the runtime hands its program to systemd as a ``BPFProgram=``
    pin (crun >= 1.23): the pin is what every reload re-attaches, so it is what must change;
    ``DeviceAllow`` must not (with ``DevicePolicy=auto`` it would make systemd attach an
    allowlist of its own beside the runtime's, a double filter), and ``crun update`` refuses."""
    where = ", ".join(pins) or "the unit's BPFProgram= pin"
    return Fix(
        f"grant it in the pinned program: `{_grant_command(unit, request)}` replaces the program "
        f"{where} holds (and any attached program that denies) with one that allows exactly the "
        "device too and re-pins it (systemd re-attaches what the pin holds), verified and rolled "
        "back on failure; do not add DeviceAllow by hand: with DevicePolicy=auto systemd would "
        "attach its own allowlist beside the runtime's program",
        f"works now and survives the next {trigger}; `crun update` refuses device changes in this "
        "mode, and a recreated container gets the runtime's program from its spec again",
    )


SPEC_OR_CDI: Final = Fix(
    "put the device in the container spec (linux.resources.devices, --device, a device plugin "
    "with --pass-device-specs) or use CDI",
    "the only grant every layer and every reload agree on; the container must be recreated",
)


def subgroup(trigger: str) -> Fix:
    return Fix(
        'start the container with the crun annotation run.oci.systemd.subgroup="" (one filter, on the scope)',
        f"fixes start only: the next {trigger} re-attaches systemd's filter beside crun's and the "
        "device is denied again",
    )


ALLOW_ALL_FIX: Final = Fix(
    "allow every device (--privileged, or an allow-all rule)",
    "unsafe: the container can then open every device of the host (disks, /dev/mem, ...)",
)
RESTRICT: Final = Fix(
    "drop --privileged or the allow-all rule and list the devices the container needs",
    "safe; the container loses every device not listed",
)
RELOAD_NOW: Final = Fix(
    "review what the reload changes (`cgdev show` on this target), then run `systemctl daemon-reload`",
    "applies the changed unit files now, at a time you choose, instead of at the next reload",
)
INSPECT_OPAQUE: Final = Fix(
    "inspect it (`cgdev disasm`, bpftool prog dump xlated) and find which tool attached it",
    "cgdev answers concrete requests for it exactly, except where a request reaches a helper call "
    "(then its verdict is unknown), but cannot predict it as a rule list",
)


def _examples(policy_gap: Policy) -> str:
    shown = [str(m.request) for m in Policy.deny_all().diff(policy_gap, limit=EXAMPLES)]
    return ", ".join(shown)


# The accesses a person asks for, most telling first: opening a node matters more than mknod.
_SHOWN_ACCESS: Final = (ACC_R | ACC_W, ACC_R, ACC_W, ACC_M)


def _node_examples(
    gap: Policy, devices: Mapping[str, tuple[str, int, int]], request: Request | None = None
) -> list[str]:
    """Examples of ``gap`` a user recognises: ``request`` first (when in the gap), then the
    container's own device nodes in the gap, opened before mknod-only, as ``c 10:200 rw
    (/dev/net/tun)``; at most EXAMPLES."""
    shown: list[tuple[int, str]] = []
    seen: set[tuple[str, int, int]] = set()
    if request is not None:
        seen.add((request.type, request.major, request.minor))
        if gap.allows(request):
            shown.append((-1, str(request)))
    for path, (dev_type, major, minor) in sorted(devices.items()):
        if (dev_type, major, minor) in seen:
            continue
        for rank, access in enumerate(_SHOWN_ACCESS):
            if gap.verdict(dev_type, major, minor, access):
                seen.add((dev_type, major, minor))
                shown.append((rank, f"{Request(dev_type, major, minor, access)} ({path})"))
                break
    shown.sort(key=lambda item: item[0])  # stable: paths stay sorted within one access
    return [text for _, text in shown[:EXAMPLES]]


def _device_examples(gap: Policy, devices: Mapping[str, tuple[str, int, int]]) -> str:
    """The container's nodes in ``gap``; the policy's own first boxes (``b 0:0 m``...) only when
    none of its nodes is in it (an audit, a snapshot without nodes)."""
    return ", ".join(_node_examples(gap, devices)) or _examples(gap)


def _unit_name(unit: UnitRecord | None) -> str | None:
    return None if unit is None else unit.unit


def _reloading_unit(predicted: Sequence[PredictedLayer]) -> str | None:
    """The unit whose regenerated program a reload adds (the one to grant the device in)."""
    for layer in predicted:
        if any(p.source == ProgramOrigin.SYSTEMD for p in layer.added) and layer.unit is not None:
            return layer.unit.unit
    return None


def _reattached_pins(predicted: Sequence[PredictedLayer]) -> tuple[str | None, tuple[str, ...]]:
    """The unit and pins whose programs a reload re-attaches (crun >= 1.23's BPFProgram mode)."""
    for layer in predicted:
        pins = tuple(
            p.view.pin for p in layer.added if p.source == ProgramOrigin.PIN and p.view and p.view.pin
        )
        if pins:
            return _unit_name(layer.unit), pins
    return None, ()


def _reload_grant(trigger: str, predicted: Sequence[PredictedLayer], request: Request | None = None) -> Fix:
    """The durable grant for what a reload takes away: in the pin when a pin brings it back."""
    unit, pins = _reattached_pins(predicted)
    if pins and _reloading_unit(predicted) is None:
        return grant_pinned(trigger, unit, pins, request)
    return grant_durable(trigger, _reloading_unit(predicted), request)


def _systemd_layers(views: Sequence[LayerView]) -> list[LayerView]:
    return [v for v in views if any(p.owned_by_systemd for p in v.programs)]


def _layer_policy(view: LayerView, systemd: bool | None = None) -> Policy | None:
    result = Policy.allow_all()
    for program in view.programs:
        if systemd is not None and program.owned_by_systemd != systemd:
            continue
        if program.policy is None:
            return None
        result = result & program.policy
    return result


def _common_findings(
    views: Sequence[LayerView], predicted: Sequence[PredictedLayer], trigger: str
) -> list[Finding]:
    out: list[Finding] = []
    for view in views:
        for program in view.programs:
            if program.opaque is not None:
                out.append(
                    Finding(
                        FindingCode.OPAQUE_PROGRAM,
                        f"program {program.record.id} ({program.record.name or 'unnamed'}) on {view.cgroup} "
                        f"cannot be lifted: {program.opaque}",
                        (INSPECT_OPAQUE,),
                        view.cgroup,
                    )
                )
        if view.unit is not None and not view.unit.reload_keeps_devices:  # same devices on disk: noise
            used = "the files" if view.unit.on_disk is not None else "the loaded ones"
            out.append(
                Finding(
                    FindingCode.NEED_DAEMON_RELOAD,
                    f"{view.unit.unit} has NeedDaemonReload=yes: its unit files changed on disk and the "
                    f"next daemon-reload applies them (the after-reload prediction uses {used})",
                    (RELOAD_NOW,),
                    view.cgroup,
                )
            )
    for layer in predicted:
        fresh = [p for p in layer.added if p.source == ProgramOrigin.SYSTEMD]
        if fresh and not layer.removed:
            out.append(
                Finding(
                    FindingCode.RELOAD_ADDS_FILTER,
                    f"the next {trigger} attaches systemd's filter (from "
                    f"{layer.unit.unit if layer.unit else '?'}'s DevicePolicy/DeviceAllow) on "
                    f"{layer.cgroup}, beside the runtime's program",
                    (grant_durable(trigger, _unit_name(layer.unit)), SPEC_OR_CDI),
                    layer.cgroup,
                )
            )
        for added in layer.added:
            if added.source == ProgramOrigin.PIN and added.view is not None:
                pin = added.view.pin or "?"
                out.append(
                    Finding(
                        FindingCode.RELOAD_ADDS_FILTER,
                        f"the next {trigger} re-attaches {added.owner or 'the runtime'}'s program "
                        f"{added.view.record.id} pinned at {pin} (BPFProgram=) on {layer.cgroup}, "
                        "beside what is there",
                        (grant_pinned(trigger, _unit_name(layer.unit), (pin,)), SPEC_OR_CDI),
                        layer.cgroup,
                    )
                )
    return out


def structural_findings(
    views: Sequence[LayerView],
    predicted: Sequence[PredictedLayer],
    effective: Policy | None,
    after: Policy | None,
    trigger: str,
    devices: Mapping[str, tuple[str, int, int]] | None = None,
) -> list[Finding]:
    """What is wrong with a target as a whole (no particular device asked); ``trigger`` names
    what makes systemd rebuild its program (``reload.reload_trigger``); ``devices`` the
    container's device nodes (``Inspection.devices``), which examples are taken from."""
    nodes = devices or {}
    out = _common_findings(views, predicted, trigger)
    if effective is not None and effective == Policy.allow_all():
        out.append(
            Finding(
                FindingCode.ALLOW_ALL,
                "the container may open every device (privileged, or no device filter on any layer)",
                (RESTRICT,),
            )
        )
    for outer in _systemd_layers(views):
        outer_policy = _layer_policy(outer, systemd=True)
        for inner in views[views.index(outer) + 1 :]:
            inner_policy = _layer_policy(inner)
            if outer_policy is None or inner_policy is None or not inner.programs:
                continue
            gap = inner_policy.minus(outer_policy)
            if gap != Policy.deny_all():
                examples = _device_examples(gap, nodes)
                out.append(
                    Finding(
                        FindingCode.DOUBLE_FILTER,
                        f"{inner.cgroup}'s program allows devices that systemd's filter on {outer.cgroup} "
                        f"denies (e.g. {examples}): a grant made only on the inner layer has no effect",
                        (
                            grant_durable(trigger, _unit_name(outer.unit)),
                            SPEC_OR_CDI,
                            subgroup(trigger),
                            ALLOW_ALL_FIX,
                        ),
                        outer.cgroup,
                    )
                )
    if effective is not None and after is not None:
        dropped = effective.minus(after)
        if dropped != Policy.deny_all():
            out.append(
                Finding(
                    FindingCode.RELOAD_DROPS_GRANT,
                    f"allowed now but denied after the next {trigger}: {_device_examples(dropped, nodes)}",
                    (_reload_grant(trigger, predicted), SPEC_OR_CDI),
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class LayerVerdicts:
    """Per program verdicts of one layer, in the kernel's order (for request findings)."""

    view: LayerView
    verdicts: tuple[Verdict, ...]


def _double_filter_cause(runtime: str | None) -> str:
    """Who put two filters on the path: crun >= 1.18 does at start; runc replaces systemd's
    program with its own, so with runc systemd's came back through a reload or set-property."""
    name = (runtime or "").lower()
    if name.startswith("runc"):
        return "runc with the systemd driver: a daemon-reload or set-property re-attached systemd's filter"
    if name.startswith("crun") or not name:  # >= 1.23 hands its program to systemd where it can
        return "crun 1.18-1.22 with the systemd driver, or a later crun that could not pin its program"
    return f"{runtime} with the systemd driver"


def request_findings(
    request: Request,
    layers: Sequence[LayerVerdicts],
    predicted: Sequence[PredictedLayer],
    allowed: bool | None,
    allowed_after: bool | None,
    effective: Policy | None,
    trigger: str,
    runtime: str | None = None,
    devices: Mapping[str, tuple[str, int, int]] | None = None,
) -> list[Finding]:
    """What explains this one request's verdict, now and after a reload (``runtime``: the
    target's, named in the double-filter finding; ``devices``: the container's nodes, for examples
    beside the request)."""
    out = _common_findings([lv.view for lv in layers], predicted, trigger)
    if effective is not None and effective == Policy.allow_all():
        out.append(Finding(FindingCode.ALLOW_ALL, "the container may open every device", (RESTRICT,)))
    denying_sd = [
        lv.view
        for lv in layers
        for program, verdict in zip(lv.view.programs, lv.verdicts, strict=True)
        if program.owned_by_systemd and verdict.allowed is False
    ]
    inner_allows = [
        lv.view
        for lv in layers
        for program, verdict in zip(lv.view.programs, lv.verdicts, strict=True)
        if not program.owned_by_systemd and verdict.allowed is True
    ]
    if denying_sd and inner_allows and not allowed:
        inner, outer = inner_allows[-1], denying_sd[0]
        inner_policy, outer_policy = _layer_policy(inner), _layer_policy(outer, systemd=True)
        others = ""
        if inner_policy is not None and outer_policy is not None:
            gap = inner_policy.minus(outer_policy)
            shown = [e for e in _node_examples(gap, devices or {}, request) if e != str(request)]
            others = f"; the two also disagree on {', '.join(shown)}" if shown else ""
        out.append(
            Finding(
                FindingCode.DOUBLE_FILTER,
                f"{request} is allowed by the runtime's program on {inner.cgroup} but denied by "
                f"systemd's filter on {outer.cgroup} ({_double_filter_cause(runtime)}): "
                f"every layer must allow it{others}",
                (
                    grant_durable(trigger, _unit_name(denying_sd[0].unit), request),
                    SPEC_OR_CDI,
                    subgroup(trigger),
                    ALLOW_ALL_FIX,
                ),
                denying_sd[0].cgroup,
            )
        )
    out.extend(_pinned_denials(request, layers, trigger))
    if allowed is True and allowed_after is False:
        _, pins = _reattached_pins(predicted)
        missing = (
            f"the program pinned at {', '.join(pins)}, which systemd re-attaches"
            if pins and _reloading_unit(predicted) is None
            else "the unit's DeviceAllow"
        )
        out.append(
            Finding(
                FindingCode.RELOAD_DROPS_GRANT,
                f"{request} is allowed now but the next {trigger} denies it: the grant "
                f"is not in {missing} (a hook or a direct program edit made it)",
                (_reload_grant(trigger, predicted, request), SPEC_OR_CDI),
            )
        )
    return out


def _pinned_denials(request: Request, layers: Sequence[LayerVerdicts], trigger: str) -> list[Finding]:
    """A request denied by a program systemd attaches from a runtime's pin (crun >= 1.23 under
    systemd): one filter, the runtime's, on the unit's cgroup; the container's own cgroup has none,
    so the usual ways in fail here -- a hook that edits the container's cgroup (libnvidia-container's
    legacy hook) has no program to prepend to, and ``crun update`` refuses device changes."""
    out: list[Finding] = []
    for lv in layers:
        for program, verdict in zip(lv.view.programs, lv.verdicts, strict=True):
            if program.pin is None or verdict.allowed is not False:
                continue
            owner = program.owner or "the runtime"
            unit = _unit_name(lv.view.unit)
            out.append(
                Finding(
                    FindingCode.PINNED_PROGRAM,
                    f"{request} is denied by {owner}'s program {program.record.id} on {lv.view.cgroup}, "
                    f"which {owner} pinned at {program.pin} and systemd attaches (BPFProgram=, "
                    f"{owner} >= 1.23 with the systemd driver): it is the container's only device filter "
                    "and comes from its spec; a hook that edits the container's own cgroup cannot "
                    f"grant there, and `{owner} update` refuses device changes in this mode",
                    (grant_pinned(trigger, unit, (program.pin,), request), SPEC_OR_CDI),
                    lv.view.cgroup,
                )
            )
    return out
