"""Explain one device request: every layer's verdict, the final one, the one after a reload, and why.

"Why can't my container open /dev/nvidiactl" has an answer only across layers: access needs every
program on the path from the cgroup root to the process's cgroup to return 1 (and, on hybrid
hosts, the v1 devices.list), and systemd will rebuild some of those programs at the next reload.
So the explanation is per program (which rule and which instructions decided), then the AND, then
the same after the predicted reload, then the findings that name the fix.

The device is given as the container sees it (a path resolved through ``/proc/<pid>/root``), as a
host path, or as ``c 195:255``; from a snapshot, paths resolve through the device nodes the
snapshot recorded.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from cgdev.core.model import Device, Request, parse_request_access
from cgdev.errors import InputError, NotFound
from cgdev.ops.findings import Finding, LayerVerdicts, request_findings
from cgdev.ops.layers import (
    Inspection,
    LayerView,
    LiftCache,
    UnitRecord,
    Verdict,
    all_allow,
    analyse_layers,
    devices_list_policy,
    effective_policy,
)
from cgdev.ops.reload import (
    PredictedLayer,
    ProgramOrigin,
    predict_reload,
    reload_changes,
    reload_notes,
    reload_trigger,
)


def parse_access_request(text: str) -> int:
    return parse_request_access(text, "access")


def _node(
    path: str, *, unreadable_is_absent: bool = False, field: str = "device"
) -> tuple[str, int, int] | None:
    """The node at ``path``; ``unreadable_is_absent`` for a container's root that even root may
    not enter (another user namespace, a process gone): the host's node is asked next."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        if unreadable_is_absent:
            return None
        raise InputError("permission denied", field=field, value=path) from None
    except OSError as err:
        raise InputError(str(err.strerror), field=field, value=path) from None
    if stat_mod.S_ISCHR(st.st_mode):
        return "c", os.major(st.st_rdev), os.minor(st.st_rdev)
    if stat_mod.S_ISBLK(st.st_mode):
        return "b", os.major(st.st_rdev), os.minor(st.st_rdev)
    raise InputError("is not a character or block device", field=field, value=path)


def _maybe_cdi_name(text: str) -> bool:
    """A CDI name (``vendor/class=name``): checked by shape first so the numeric spellings and
    paths never import the CDI reader."""
    stripped = text.strip()
    if "=" not in stripped or "/" not in stripped or stripped.startswith("/"):
        return False
    from cgdev.ops.cdi_names import is_cdi_name

    return is_cdi_name(stripped)


def cdi_requests(
    text: str, access: int, cdi_dirs: Sequence[str] = (), field: str = "device"
) -> list[tuple[Request, str]]:
    """The device nodes CDI name ``text`` injects (the node's specs, numbers missing from a spec
    taken from the host node, as an engine does), each as a request for ``access``."""
    from cgdev.adapters.cdi_dirs import DEFAULT_DIRS
    from cgdev.ops.cdi_names import resolve_cdi_names

    try:
        resolution = resolve_cdi_names([text.strip()], tuple(cdi_dirs) or DEFAULT_DIRS)
    except InputError as err:
        if field != "device" and err.field == "device":  # the caller's name for the argument
            raise type(err)(err.why, field=field, value=err.value) from None
        raise
    nodes = [d for d in resolution.devices if d.type in ("b", "c")]
    if not nodes:
        raise InputError("the CDI device injects no device node", field=field, value=text)
    return [(Request(d.type, d.major, d.minor, access), f"CDI {d.path}") for d in nodes]


def resolve_devices(
    text: str, inspection: Inspection | None, access: int, *, live: bool, field: str = "device",
    cdi_dirs: Sequence[str] = (),
) -> list[tuple[Request, str]]:  # fmt: skip
    """Every device DEVICE names: the one of ``resolve_device``, or each device node of a CDI
    name (``grant``/``revoke`` take them all)."""
    if _maybe_cdi_name(text):
        return cdi_requests(text, access, cdi_dirs, field)
    return [resolve_device(text, inspection, access, live=live, field=field)]


def resolve_device(
    text: str, inspection: Inspection | None, access: int, *, live: bool, field: str = "device",
    cdi_dirs: Sequence[str] = (),
) -> tuple[Request, str]:  # fmt: skip
    """The request for ``--device`` and a note saying where the device was found.

    ``inspection`` None: no container, only the host (``lift --check``): a path is looked up on
    the host, numeric spellings are taken as given.  A CDI name must name exactly one device node
    (a question is about one device); otherwise the error lists the nodes it names.
    """
    if _maybe_cdi_name(text):
        found = cdi_requests(text, access, cdi_dirs, field)
        if len(found) != 1:
            nodes = ", ".join(f"{note.removeprefix('CDI ')} ({r.device})" for r, note in found)
            raise InputError(f"names {len(found)} device nodes ({nodes}): ask about one of them",
                             field=field, value=text)  # fmt: skip
        return found[0]
    numeric = Device.parse_numeric(text, field)  # one reader of device spellings (core)
    if numeric is not None and not text.strip().startswith("/"):
        return Request.of(numeric, access), "given"
    recorded = None if inspection is None else inspection.devices.get(os.path.normpath(text))
    if recorded is not None:
        return Request(recorded[0], recorded[1], recorded[2], access), "container"
    if live:
        pid = None if inspection is None else inspection.target.pid
        if pid is not None:
            node = _node(f"/proc/{pid}/root{os.path.normpath(text)}", unreadable_is_absent=True)
            if node is not None:
                return Request(node[0], node[1], node[2], access), "container"
        node = _node(text, field=field)
        if node is not None:
            return Request(node[0], node[1], node[2], access), "host"
    if numeric is not None:  # systemd's spelling (/dev/char/M:m), link or not
        return Request.of(numeric, access), "given"
    if inspection is None:
        where = "on the host"
    else:
        where = "in the container or on the host" if live else "in the snapshot's device list"
    raise NotFound(f"no such device node {where} (give it as 'c MAJOR:MINOR')", field=field, value=text)


def host_request(text: str, field: str = "check") -> Request:
    """``'DEVICE ACCESS'`` with any spelling ``--device`` takes (``c 195:255 rw``, ``195:255 r``,
    ``/dev/char/195:255 w``, ``/dev/null rw``), a path looked up on the host: for commands that
    ask about programs, not a container (``lift --check``)."""
    device_text, _, access_text = text.strip().rpartition(" ")
    if not device_text.strip() or ":" in access_text:
        raise InputError(
            "expected 'DEVICE ACCESS', e.g. 'c 195:255 rw' or '/dev/null r'", field=field, value=text
        )
    access = parse_request_access(access_text, field)
    return resolve_device(device_text, None, access, live=True, field=field)[0]


def explain_device(inspection: Inspection, device: str, access: int, *, live: bool,
                   cache: LiftCache | None = None, cdi_dirs: Sequence[str] = ()) -> Explanation:  # fmt: skip
    """Explain ``device`` (as a user gives it: a path, ``c 195:255``, a CDI name...) for ``access``."""
    request, source = resolve_device(device, inspection, access, live=live, cdi_dirs=cdi_dirs)
    return explain(inspection, request, device, source, cache)


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgramAnswer:
    id: int | None
    name: str
    tag: str
    generator: str
    source: ProgramOrigin
    opaque: str | None
    verdict: Verdict
    # Who made it and who attached it (``ProgramView.owner`` / ``attached_by``): a pinned program
    # (crun >= 1.23) is the runtime's, attached by systemd from ``pin``.
    owner: str | None = None
    attached_by: str | None = None
    pin: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tag": self.tag,
            "generator": self.generator,
            "source": self.source,
            "opaque": self.opaque,
            "owner": self.owner,
            "attached_by": self.attached_by,
            "pin": self.pin,
            **self.verdict.to_json(),
        }


@dataclass(frozen=True, slots=True)
class LayerAnswer:
    cgroup: str
    unit: UnitRecord | None
    programs: tuple[ProgramAnswer, ...]

    @property
    def allowed(self) -> bool | None:
        return all_allow([p.verdict.allowed for p in self.programs])

    def to_json(self) -> dict[str, Any]:
        unit = self.unit
        return {
            "cgroup": self.cgroup,
            "allowed": self.allowed,
            "programs": [p.to_json() for p in self.programs],
            "systemd": None
            if unit is None
            else {
                "unit": unit.unit,
                "DevicePolicy": unit.device_policy,
                "DeviceAllow": [list(p) for p in unit.device_allow],
                "BPFProgram": [list(p) for p in unit.bpf_program],
                "Delegate": unit.delegate,
                "NeedDaemonReload": unit.need_daemon_reload,
            },
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    inspection: Inspection
    request: Request
    device: str
    device_source: str
    layers: tuple[LayerAnswer, ...]
    v1_allowed: bool | None
    allowed: bool | None
    after_layers: tuple[LayerAnswer, ...]
    after_allowed: bool | None
    after_notes: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def denied_by(self) -> list[tuple[str, ProgramAnswer]]:
        return [(la.cgroup, p) for la in self.layers for p in la.programs if p.verdict.allowed is False]

    def to_json(self) -> dict[str, Any]:
        target = self.inspection.target
        return {
            "target": msgspec.to_builtins(target),
            "cgroup": target.cgroup,
            "device": self.device,
            "device_source": self.device_source,
            "request": self.request.to_json(),
            "allowed": self.allowed,
            "v1": None if self.inspection.v1_devices is None else {"allowed": self.v1_allowed},
            "layers": [la.to_json() for la in self.layers],
            "denied_by": [{"cgroup": c, "id": p.id, "name": p.name} for c, p in self.denied_by],
            "after_reload": {
                "allowed": self.after_allowed,
                "changed": reload_changes(self.allowed, self.after_allowed),
                "layers": [la.to_json() for la in self.after_layers],
                "notes": list(self.after_notes),
            },
            "systemd": self.inspection.systemd,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class PodExplanation:
    """One request for each container a target names (a pod): a pod is no enforcement point,
    so there is no verdict of its own -- it is allowed when every container is, denied when one
    is, unknown otherwise."""

    spec: str
    containers: tuple[Explanation, ...]

    @property
    def allowed(self) -> bool | None:
        return all_allow(c.allowed for c in self.containers)

    def to_json(self) -> dict[str, Any]:
        requests = {c.request for c in self.containers}  # a path may differ per container
        return {
            "target": {"spec": self.spec, "kind": "pod"},
            "device": self.containers[0].device,
            "request": self.containers[0].request.to_json() if len(requests) == 1 else None,
            "allowed": self.allowed,
            "containers": [c.to_json() for c in self.containers],
        }


def _answers(view: LayerView, request: Request) -> tuple[LayerAnswer, tuple[Verdict, ...]]:
    verdicts = tuple(p.verdict(request) for p in view.programs)
    programs = tuple(
        ProgramAnswer(
            p.record.id,
            p.record.name,
            p.record.tag,
            p.generator,
            ProgramOrigin.ATTACHED,
            p.opaque,
            v,
            p.owner,
            p.attached_by,
            p.pin,
        )
        for p, v in zip(view.programs, verdicts, strict=True)
    )
    return LayerAnswer(view.cgroup, view.unit, programs), verdicts


def _after_answers(layer: PredictedLayer, request: Request) -> LayerAnswer:
    programs = []
    for p in layer.programs:
        record = p.view.record if p.view is not None else None
        programs.append(
            ProgramAnswer(
                None if record is None or p.source == ProgramOrigin.SYSTEMD else record.id,
                p.name,
                "" if record is None else record.tag,
                p.generator,
                p.source,
                None if p.view is None else p.view.opaque,
                p.verdict(request),
                p.owner,
                p.attached_by,
                None if p.view is None else p.view.pin,
            )
        )
    return LayerAnswer(layer.cgroup, layer.unit, tuple(programs))


def explain(inspection: Inspection, request: Request, device: str = "", device_source: str = "given",
            cache: LiftCache | None = None) -> Explanation:  # fmt: skip
    lifts = cache if cache is not None else LiftCache()
    views = analyse_layers(inspection, lifts)
    v1 = devices_list_policy(inspection.v1_devices)
    v1_allowed = None if v1 is None else v1.allows(request)
    layer_answers = []
    layer_verdicts = []
    for view in views:
        answer, verdicts = _answers(view, request)
        layer_answers.append(answer)
        layer_verdicts.append(LayerVerdicts(view, verdicts))
    allowed = all_allow([la.allowed for la in layer_answers] + ([v1_allowed] if v1 is not None else []))
    predicted = predict_reload(views, inspection, lifts)
    after_answers = [_after_answers(layer, request) for layer in predicted]
    after_allowed = all_allow([la.allowed for la in after_answers] + ([v1_allowed] if v1 is not None else []))
    notes = reload_notes(predicted)
    effective = effective_policy(views, v1)
    findings = request_findings(
        request, layer_verdicts, predicted, allowed, after_allowed, effective,
        reload_trigger(inspection.systemd_version), inspection.target.runtime, inspection.devices,
    )  # fmt: skip
    from cgdev.ops.spec_devices import revise  # the spec names the device: say why systemd lacks it

    findings = revise(findings, request, inspection, predicted)
    return Explanation(
        inspection,
        request,
        device or str(request),
        device_source,
        tuple(layer_answers),
        v1_allowed,
        allowed,
        tuple(after_answers),
        after_allowed,
        notes,
        tuple(findings),
    )
