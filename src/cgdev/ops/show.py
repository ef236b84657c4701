"""Show a target's effective device allowlist, layer by layer, and what a reload would change.

``explain`` answers one request; ``show`` answers all of them at once: the AND of every layer as a
minimal rule list (the thing a person can read and compare with their spec), each program's own
lifted rules, and the difference the next reload makes (what it adds and what it takes away),
all exact because policies are canonical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from cgdev.core.policy import Policy
from cgdev.core.render import to_rules
from cgdev.ops.findings import Finding, structural_findings
from cgdev.ops.layers import (
    Inspection,
    LayerView,
    LiftCache,
    analyse_layers,
    devices_list_policy,
    effective_policy,
)
from cgdev.ops.reload import (
    PredictedLayer,
    predict_reload,
    predicted_policy,
    reload_notes,
    reload_trigger,
)

MAX_EXAMPLES = 20


def rules_json(policy: Policy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    rendered = to_rules(policy)
    return {"rules": [str(r) for r in rendered.rules], "warnings": list(rendered.warnings)}


def _empty(policy: Policy) -> bool:
    return policy == Policy.deny_all()


def _requests(policy: Policy) -> list[dict[str, Any]]:
    """Up to MAX_EXAMPLES requests of ``policy``, as request objects (the set itself can be huge)."""
    return [m.request.to_json() for m in Policy.deny_all().diff(policy, limit=MAX_EXAMPLES)]


@dataclass(frozen=True, slots=True)
class ShowResult:
    inspection: Inspection
    layers: tuple[LayerView, ...]
    v1: Policy | None
    effective: Policy | None
    predicted: tuple[PredictedLayer, ...]
    after: Policy | None
    findings: tuple[Finding, ...]

    @property
    def gained(self) -> Policy | None:
        """Requests a reload would newly allow."""
        if self.effective is None or self.after is None:
            return None
        return self.after.minus(self.effective)

    @property
    def lost(self) -> Policy | None:
        """Requests a reload would newly deny."""
        if self.effective is None or self.after is None:
            return None
        return self.effective.minus(self.after)

    def to_json(self) -> dict[str, Any]:
        target = self.inspection.target
        gained, lost = self.gained, self.lost
        return {
            "target": msgspec.to_builtins(target),
            "cgroup": target.cgroup,
            "effective": rules_json(self.effective),
            "effective_policy": None if self.effective is None else self.effective.to_json(),
            "v1": rules_json(self.v1),
            "layers": [_layer_json(view) for view in self.layers],
            "after_reload": {
                "effective": rules_json(self.after),
                "changed": None if gained is None or lost is None else not (_empty(gained) and _empty(lost)),
                "gained": None if gained is None else _requests(gained),
                "lost": None if lost is None else _requests(lost),
                "layers": [_predicted_json(layer) for layer in self.predicted],
                "notes": list(reload_notes(list(self.predicted))),
            },
            "systemd": self.inspection.systemd,
            "findings": [f.to_json() for f in self.findings],
        }


def _layer_json(view: LayerView) -> dict[str, Any]:
    unit = view.unit
    return {
        "cgroup": view.cgroup,
        "programs": [
            {
                "id": p.record.id,
                "name": p.record.name,
                "tag": p.record.tag,
                "attach_flags": p.record.attach_flags,
                "generator": p.generator,
                "owner": p.owner,
                "attached_by": p.attached_by,
                "pin": p.pin,
                "opaque": p.opaque,
                "instructions": len(p.record.xlated) // 8,
                "lifted_rules": [] if p.lifted is None else [str(r) for r in p.lifted.rules],
                "allows": rules_json(p.policy),
            }
            for p in view.programs
        ],
        "systemd": None if unit is None else msgspec.to_builtins(unit),
    }


def _predicted_json(layer: PredictedLayer) -> dict[str, Any]:
    return {
        "cgroup": layer.cgroup,
        "programs": [
            {
                "source": p.source,
                "id": None if p.view is None else p.view.record.id,
                "name": p.name,
                "generator": p.generator,
                "owner": p.owner,
                "attached_by": p.attached_by,
                "pin": None if p.view is None else p.view.pin,
                "allows": rules_json(p.policy),
            }
            for p in layer.programs
        ],
        "removed": [p.record.id for p in layer.removed],
    }


def show(inspection: Inspection, cache: LiftCache | None = None) -> ShowResult:
    lifts = cache if cache is not None else LiftCache()
    views = analyse_layers(inspection, lifts)
    v1 = devices_list_policy(inspection.v1_devices)
    effective = effective_policy(views, v1)
    predicted = predict_reload(views, inspection, lifts)
    after = predicted_policy(predicted, v1)
    trigger = reload_trigger(inspection.systemd_version)
    findings = structural_findings(views, predicted, effective, after, trigger, inspection.devices)
    return ShowResult(inspection, tuple(views), v1, effective, tuple(predicted), after, tuple(findings))
