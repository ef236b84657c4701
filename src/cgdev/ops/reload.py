"""What the kernel will enforce after the next ``systemctl daemon-reload`` or ``set-property``.

systemd rebuilds its device program for every unit with a device policy, from the unit's
properties alone, on every reload and every property change of the unit (DESIGN.md §1,
anchors.md §3.3); it never removes programs it did not attach, and it re-attaches every
``BPFProgram=device:PATH`` pin (an already attached one is an ignored EEXIST).  So, per layer:

- systemd's own program (``sd_devices``) is dropped and replaced by the one the properties give
  (possibly none: ``DevicePolicy=auto`` without ``DeviceAllow``);
- a unit whose cgroup carries no systemd program today gets one if its properties say so: the
  runc and crun ``run.oci.systemd.subgroup=""`` case, where the runtime had swapped it out;
- each pinned program not attached today is attached beside what is there;
- every foreign program (a runtime's, a hook's) stays as it is.

systemd 257 is the exception (``reload_reapplies_devices``): its daemon-reload re-applies nothing,
so there the prediction is what the next set-property (or restart) of the unit gives, and a note
says that a daemon-reload leaves today's programs in place.

The prediction is exact when the properties systemd has loaded are the ones it will use:
``NeedDaemonReload=yes`` means a unit file changed on disk, which a reload (not a set-property)
would read first; the prediction says so instead of guessing the file's content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cgdev.core.model import Request, access_to_str
from cgdev.core.policy import Policy
from cgdev.ops.layers import (
    SYSTEMD_PROGRAM_NAME,
    Inspection,
    LayerView,
    LiftCache,
    ProgramView,
    UnitRecord,
    Verdict,
)

if TYPE_CHECKING:  # systemd's semantics are imported only when a unit manages devices
    from cgdev.core.semantics.systemd import SdProgram


@dataclass(frozen=True, slots=True)
class PredictedProgram:
    """One program attached after the reload: ``kept`` (there now), ``systemd`` (regenerated
    from the unit's properties), ``pin`` (a BPFProgram= pin systemd re-attaches) or ``unknown``
    (systemd was not asked, so whatever it attaches on this cgroup cannot be predicted)."""

    source: str
    view: ProgramView | None = None
    sd: SdProgram | None = None
    unit: str | None = None

    @property
    def policy(self) -> Policy | None:
        if self.sd is not None:
            return self.sd.policy()
        return None if self.view is None else self.view.policy  # "unknown": no policy to give

    @property
    def name(self) -> str:
        if self.sd is not None or self.source == "unknown":
            return SYSTEMD_PROGRAM_NAME
        return "" if self.view is None else self.view.record.name

    @property
    def generator(self) -> str:
        if self.sd is not None or self.source == "unknown":
            return "systemd"
        return "unknown" if self.view is None else self.view.generator

    def verdict(self, request: Request) -> Verdict:
        if self.source == "unknown":
            return Verdict(None, "unknown: systemd was not asked for this unit's device properties", None)
        if self.view is not None:
            return self.view.verdict(request)
        assert self.sd is not None
        return sd_verdict(self.sd, request)


def sd_verdict(sd: SdProgram, request: Request) -> Verdict:
    """systemd's program is allow-only: the first DeviceAllow block that matches decides."""
    if sd.deny_everything:
        return Verdict(False, "deny everything (no DeviceAllow entry matched any device)", None)
    for entry in sd.entries:
        rule = entry.as_rule()
        if (
            rule.matches_device(request.type, request.major, request.minor)
            and request.access & ~entry.access == 0
        ):
            source = f" (DeviceAllow {entry.source})" if entry.source else ""
            return Verdict(True, f"{rule}{source}", None)
    return Verdict(False, f"no DeviceAllow entry allows {request.type} {request.major}:{request.minor} "
                   f"{access_to_str(request.access)}", None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PredictedLayer:
    cgroup: str
    unit: UnitRecord | None
    programs: tuple[PredictedProgram, ...]
    removed: tuple[ProgramView, ...]
    notes: tuple[str, ...]

    @property
    def added(self) -> tuple[PredictedProgram, ...]:
        return tuple(p for p in self.programs if p.source != "kept")


def _stat_for(unit: UnitRecord):  # type: ignore[no-untyped-def]
    from cgdev.core.semantics.systemd import standard_stat

    def stat(path: str) -> tuple[str, int, int] | None:
        return unit.device_nodes.get(path) or standard_stat(path)

    return stat


def reload_trigger(systemd_version: str) -> str:
    """What makes systemd rebuild its device program, in words for findings: on systemd 257 a
    daemon-reload does not (``reload_reapplies_devices``), a property change still does."""
    from cgdev.core.semantics.systemd import reload_reapplies_devices

    if reload_reapplies_devices(systemd_version):
        return "daemon-reload or set-property"
    return f"set-property or restart of the unit (systemd {systemd_version}: not a daemon-reload)"


SYSTEMD_UNIT_SUFFIXES: Final = (".scope", ".service", ".slice")


def predict_layer(view: LayerView, inspection: Inspection, cache: LiftCache) -> PredictedLayer:
    unit = view.unit
    systemd_owned = tuple(p for p in view.programs if p.owned_by_systemd)
    if (
        unit is None
        and inspection.systemd != "ok"
        and (systemd_owned or view.cgroup.rstrip("/").endswith(SYSTEMD_UNIT_SUFFIXES))
    ):
        # A cgroup systemd probably owns, and systemd was not asked: whatever a reload attaches
        # here is unknown.  Saying "unchanged" would be a guess that hides the runc/hook case.
        kept = [PredictedProgram("kept", view=p) for p in view.programs if not p.owned_by_systemd]
        note = (
            f"systemd was not asked ({inspection.systemd}): what a reload attaches on {view.cgroup} "
            "is unknown (run as root with systemd's bus reachable, or pass --bus)"
        )
        return PredictedLayer(view.cgroup, None, (*kept, PredictedProgram("unknown")), systemd_owned, (note,))
    if unit is None or not (unit.manages_devices or systemd_owned):
        kept = tuple(PredictedProgram("kept", view=p) for p in view.programs)
        return PredictedLayer(view.cgroup, unit, kept, (), ())
    notes: list[str] = []
    programs = [PredictedProgram("kept", view=p, unit=None) for p in view.programs if not p.owned_by_systemd]
    from cgdev.core.semantics.systemd import reload_reapplies_devices, systemd_program

    if not reload_reapplies_devices(inspection.systemd_version):
        notes.append(
            f"systemd {inspection.systemd_version} does not rebuild device programs on daemon-reload "
            f"(fixed in systemd 258): this prediction is for the next set-property or restart of "
            f"{unit.unit}; a daemon-reload leaves the programs attached now"
        )
    sd = systemd_program(unit.device_policy, unit.device_allow, inspection.proc_devices, _stat_for(unit))
    if sd.attached:
        programs.append(PredictedProgram("systemd", sd=sd, unit=unit.unit))
    attached_ids = {p.view.record.id for p in programs if p.view is not None}
    for kind, pin in unit.bpf_program:
        if kind != "device":
            continue
        record = inspection.pins.get(pin)
        if record is None:
            notes.append(f"BPFProgram pin {pin} is missing: systemd will log an error and attach nothing")
        elif record.id not in attached_ids:
            programs.append(PredictedProgram("pin", view=cache.view(record), unit=unit.unit))
            attached_ids.add(record.id)
    if unit.need_daemon_reload:
        notes.append(
            f"{unit.unit} has NeedDaemonReload=yes: a daemon-reload reads changed unit files first, "
            "so this prediction (from the loaded properties) holds for set-property only"
        )
    return PredictedLayer(view.cgroup, unit, tuple(programs), systemd_owned, tuple(notes))


def predict_reload(views: list[LayerView], inspection: Inspection, cache: LiftCache) -> list[PredictedLayer]:
    return [predict_layer(view, inspection, cache) for view in views]


def predicted_policy(layers: list[PredictedLayer], v1: Policy | None = None) -> Policy | None:
    """The AND after the reload; None if a program in it is opaque."""
    result = Policy.allow_all() if v1 is None else v1
    for layer in layers:
        for program in layer.programs:
            policy = program.policy
            if policy is None:
                return None
            result = result & policy
    return result
