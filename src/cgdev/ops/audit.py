"""Audit every container cgroup on a node: one walk, one query per cgroup, one lift per program.

A node runs thousands of containers whose device programs are mostly identical (same runtime,
same defaults), so the cost model is: walk the cgroup tree once; query each cgroup on a container's
path at most once (``system.slice`` is shared by all); read each program id once; lift each distinct
program once (``LiftCache``); and compute the per-container analysis (effective policy, reload
prediction, findings) once per distinct *shape* — the sequence of programs and units along the
path — re-labelling the cached findings with each container's own cgroup names.

Containers are recognised by name (engine scopes, cgroupfs-driver 64-hex ids: ``targets.classify``)
and from the runtimes' state directories (any cgroup naming scheme); the pod UID comes from the
kubelet's cgroup names (``core.cgroup_names``), so no API server is asked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cgdev.adapters import cgroupfs
from cgdev.errors import NotFound
from cgdev.ops.collect import (
    pinned_record,
    program_records,
    read_or_empty,
    systemd_version,
    systemd_view,
    unit_record,
)
from cgdev.ops.findings import Finding, structural_findings
from cgdev.ops.layers import (
    Inspection,
    Layer,
    LayerView,
    LiftCache,
    ProgramRecord,
    UnitRecord,
    devices_list_policy,
    effective_policy,
)
from cgdev.ops.reload import predict_reload, predicted_policy, reload_trigger
from cgdev.ops.targets import Target, TargetKind, container_targets

if TYPE_CHECKING:
    from cgdev.core.policy import Policy
    from cgdev.ops.inspect import HostView
    from cgdev.ops.reload import PredictedLayer
    from cgdev.ops.spec_devices import MissingLink


@dataclass(frozen=True, slots=True)
class AuditRow:
    target: Target
    programs: int
    opaque: int
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "cgroup": self.target.cgroup,
            "kind": self.target.kind,
            "runtime": self.target.runtime,
            "container_id": self.target.container_id,
            "pod_uid": self.target.pod_uid,
            "name": self.target.name,
            "pid": self.target.pid,
            "programs": self.programs,
            "opaque": self.opaque,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class AuditResult:
    rows: tuple[AuditRow, ...]
    cgroups_walked: int
    cgroups_queried: int
    programs_read: int
    programs_lifted: int
    shapes: int
    seconds: float
    systemd: str
    errors: tuple[str, ...] = field(default_factory=tuple)
    missing_links: tuple[MissingLink, ...] = ()  # the node's, not one container's

    @property
    def has_findings(self) -> bool:
        return any(row.findings for row in self.rows) or any(m.certain for m in self.missing_links)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for row in self.rows:
            for finding in row.findings:
                counts[finding.code] = counts.get(finding.code, 0) + 1
        return {
            "containers": [row.to_json() for row in self.rows],
            "summary": {
                "containers": len(self.rows),
                "with_findings": sum(1 for row in self.rows if row.findings),
                "findings": counts,
                "cgroups_walked": self.cgroups_walked,
                "cgroups_queried": self.cgroups_queried,
                "programs_read": self.programs_read,
                "programs_lifted": self.programs_lifted,
                "distinct_shapes": self.shapes,
                "seconds": round(self.seconds, 4),
            },
            "systemd": self.systemd,
            "errors": list(self.errors),
            "missing_links": [_builtins(m) for m in self.missing_links],
        }


def _builtins(value: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(value)


class _Reader:
    """Per-run caches of the kernel and systemd: each cgroup, program and unit asked once."""

    def __init__(self, mount: str, systemd: Any, systemd_root: str, systemd_fs_root: str) -> None:
        self.mount = mount
        self.systemd = systemd
        self.systemd_root = systemd_root
        self.systemd_fs_root = systemd_fs_root
        self.layers: dict[str, Layer] = {}
        self.records: dict[int, ProgramRecord] = {}
        self.pins: dict[str, ProgramRecord] = {}
        self.reads = 0

    def layer(self, host_path: str) -> Layer:
        cached = self.layers.get(host_path)
        if cached is not None:
            return cached
        rel = cgroupfs.relative(host_path, self.mount)
        programs = tuple(self._dedup(r) for r in program_records(host_path))
        unit: UnitRecord | None = None
        if self.systemd is not None:
            sd_path = systemd_view(rel, self.systemd_root)
            if sd_path is not None:
                unit = unit_record(self.systemd, sd_path, self.systemd_fs_root)
        if unit is not None:
            self._read_pins(unit)
        layer = Layer(rel, programs, unit)
        self.layers[host_path] = layer
        return layer

    def _read_pins(self, unit: UnitRecord) -> None:
        for kind, pin in unit.bpf_program:
            if kind == "device" and pin not in self.pins:
                record = pinned_record(os.path.join(self.systemd_fs_root, pin.lstrip("/")))
                if record is not None:
                    self.pins[pin] = record

    def _dedup(self, record: ProgramRecord) -> ProgramRecord:
        self.reads += 1
        return self.records.setdefault(record.id, record)


def _placeholder(index: int) -> str:
    return f"\x00layer{index}\x00"


def _v1_devices(target: Target, v1_mount: str | None) -> tuple[str, ...] | None:
    """The v1 devices.list governing the container's processes (hybrid hosts), or None: on such a
    host it is one more layer every access must pass, as in ``explain``."""
    if v1_mount is None:
        return None
    if target.pid is None:
        return None
    pid = target.pid
    try:
        lines = cgroupfs.v1_devices_list(pid, v1_mount)
    except NotFound:  # the process went away mid-audit
        return None
    return None if lines is None else tuple(lines)


def _shape_key(
    layers: Sequence[Layer], pins: dict[str, ProgramRecord], v1: tuple[str, ...] | None
) -> tuple[Any, ...]:
    """What the analysis depends on: programs (bytes, names, ids of pinned ones), units, v1."""
    pinned = {r.id for r in pins.values()}
    return v1, tuple(
        (
            tuple(p.xlated for p in layer.programs),
            tuple(p.name for p in layer.programs),
            tuple(p.id for p in layer.programs if p.id in pinned),
            repr(layer.unit),
            tuple(pins[pin].id if pin in pins else None for _, pin in layer.unit.bpf_program)
            if layer.unit is not None
            else (),
        )
        for layer in layers
    )


def _relabel(findings: Sequence[Finding], names: Sequence[str]) -> tuple[Finding, ...]:
    def sub(text: str) -> str:
        for index, name in enumerate(names):
            text = text.replace(_placeholder(index), name)
        return text

    return tuple(
        Finding(f.code, sub(f.message), f.fix, None if f.layer is None else sub(f.layer)) for f in findings
    )


def audit(
    *,
    mount: str | None = None,
    root: str | None = None,
    runtime_roots: Sequence[tuple[str, str]] | None = None,
    systemd: Any = None,
    systemd_status: str = "off",
    systemd_root: str = "/",
    systemd_fs_root: str = "/",
) -> AuditResult:
    """Audit every container under ``root`` (a cgroup relative to the mount; default: all)."""
    started = time.perf_counter()
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    walk_root = cgroupfs.locate(root, mount=base)[0] if root else base
    if not os.path.isdir(walk_root):
        raise NotFound(f"no such cgroup under {base}", field="root", value=root)
    targets, walked = container_targets(base, walk_root, runtime_roots)
    reader = _Reader(base, systemd, systemd_root, systemd_fs_root)
    proc_devices = read_or_empty("/proc/devices")
    v1_mount = cgroupfs.v1_mount("devices")
    version = systemd_version(systemd)  # what a reload re-applies depends on it (257)
    lifts = LiftCache()
    shapes: dict[tuple[Any, ...], _Shape] = {}
    rows = []
    errors = []
    for target in targets:
        leaf = cgroupfs.cgroup_path(target.cgroup, mount=base)
        try:
            layers = [reader.layer(p) for p in cgroupfs.ancestors(leaf, mount=base)]
        except NotFound as err:  # a container that went away mid-audit; no root etc. is fatal
            errors.append(f"{target.cgroup}: {err}")
            continue
        v1 = _v1_devices(target, v1_mount)
        key = _shape_key(layers, reader.pins, v1)
        cached = shapes.get(key)
        if cached is None:
            cached = shapes[key] = _analyse_shape(layers, proc_devices, reader.pins, lifts, v1, version)
        names = [layer.cgroup for layer in layers]
        findings = _relabel(cached.findings, names)
        if target.bundle:  # per container, not per shape: the spec is the container's own
            from cgdev.ops.spec_devices import revise_audit

            findings = revise_audit(target, findings, cached.predicted, cached.effective, cached.after,
                                    systemd_fs_root)  # fmt: skip
        rows.append(AuditRow(target, cached.programs, cached.opaque, findings))
    from cgdev.adapters.runtime_binaries import binary_version
    from cgdev.ops.spec_devices import missing_links

    links = missing_links([row.target for row in rows], systemd_fs_root, version or None,
                          lambda: binary_version("runc", systemd_fs_root))  # fmt: skip
    return AuditResult(
        rows=tuple(rows),
        cgroups_walked=walked,
        cgroups_queried=len(reader.layers),
        programs_read=len(reader.records),
        programs_lifted=lifts.lifted,
        shapes=len(shapes),
        seconds=time.perf_counter() - started,
        systemd=systemd_status,
        errors=tuple(errors),
        missing_links=links,
    )


@dataclass(frozen=True, slots=True)
class _Shape:
    """One shape's analysis: its findings (on placeholder names) and what per-container findings
    (the spec's devices) need: the policy now and after the next reload, the predicted layers."""

    findings: tuple[Finding, ...]
    programs: int
    opaque: int
    predicted: tuple[PredictedLayer, ...]
    effective: Policy | None
    after: Policy | None


def _analyse_shape(
    layers: Sequence[Layer],
    proc_devices: str,
    pins: dict[str, ProgramRecord],
    lifts: LiftCache,
    v1_devices: tuple[str, ...] | None,
    version: str,
) -> _Shape:
    """Findings for one shape, computed on placeholder layer names (re-labelled per container)."""
    anonymous = tuple(Layer(_placeholder(i), layer.programs, layer.unit) for i, layer in enumerate(layers))
    target = Target("", TargetKind.CONTAINER, _placeholder(len(layers) - 1))
    inspection = Inspection(
        target, anonymous, proc_devices, v1_devices=v1_devices, pins=dict(pins), systemd_version=version
    )
    views = [LayerView(layer, tuple(lifts.view(p) for p in layer.programs)) for layer in anonymous]
    v1 = devices_list_policy(v1_devices)
    effective = effective_policy(views, v1)
    predicted = predict_reload(views, inspection, lifts)
    after = predicted_policy(predicted, v1)
    findings = tuple(structural_findings(views, predicted, effective, after, reload_trigger(version)))
    programs = sum(len(v.programs) for v in views)
    opaque = sum(1 for v in views for p in v.programs if p.opaque is not None)
    return _Shape(findings, programs, opaque, tuple(predicted), effective, after)


def audit_host(host: HostView, root: str | None = None) -> AuditResult:
    """Audit every container of ``host`` under ``root``, the bus opened and closed here."""
    from cgdev.ops.inspect import systemd_session

    with systemd_session(host) as (client, status):
        return audit(
            root=root,
            runtime_roots=host.runtime_roots,
            systemd=client,
            systemd_status=status,
            systemd_root=host.systemd_root,
            systemd_fs_root=host.systemd_fs_root,
        )
