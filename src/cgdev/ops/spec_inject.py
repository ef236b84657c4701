"""Putting the devices a container is entitled to into its spec, before the runtime reads it.

The wrapper runtime's one operation.  The device in the spec (``linux.devices`` +
``linux.resources.devices``) is the grant every layer and every reload agree on (DESIGN.md §10),
so the wrapper edits config.json on ``create`` and the real runtime does the rest: its program,
systemd's ``DeviceAllow``, and every later reload all come from the spec.

Which devices is ``ops.entitled``'s decision (the node's policy, trusted sources only), the edit is
``core.spec_edit``'s, the read and the atomic rewrite are ``adapters.oci_bundle``'s.  Most
containers are entitled to nothing, and then this costs one read of config.json and one stat of the
policy file: ``ops.entitled`` (msgspec, the CDI reader, YAML) is imported only when an annotation
names a device or a policy file exists.
"""

from __future__ import annotations

import os

from cgdev.adapters.oci_bundle import DEFAULT_BUNDLE_DIRS, Bundle
from cgdev.errors import InputError

TYPE_CHECKING = False  # typing, collections.abc and dataclasses would cost more than this module's work
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Final

    from cgdev.core.spec_edit import SpecEdit

DEFAULT_POLICY_PATH: Final = "/etc/cgdev/policy.yaml"  # = cgdev.core.node_policy.DEFAULT_POLICY_PATH
# = node_policy.CDI_ANNOTATION_PREFIX and DEVICES_ANNOTATION (not imported: the fast path's cost)
_CLAIM_PREFIXES: Final = ("cdi.k8s.io/", "cgdev.io/devices")


class Injection:
    """What the edit did: the log lines of refused claims, and the edit (None: nothing entitled).
    A plain class: ``dataclasses`` imports ``re`` and ``inspect``, more than the no-claim path costs."""

    __slots__ = ("bundle", "edit", "refusals")

    def __init__(self, bundle: str, refusals: tuple[str, ...] = (), edit: SpecEdit | None = None) -> None:
        self.bundle = bundle
        self.refusals = refusals
        self.edit = edit

    @property
    def written(self) -> bool:
        return self.edit is not None and self.edit.changed

    def summary(self) -> str:
        """One line: what went into the spec (for the runtime's log)."""
        if self.edit is None or not self.edit.changed:
            return "nothing to add"
        edit = self.edit
        parts = [f"device {p}" for p in edit.devices]
        parts += [f"allow {r.type} {r.major}:{r.minor} {r.access}" for r in edit.rules]
        parts += list(edit.other)
        return "added " + ", ".join(parts)


def annotations_of(config: Mapping[str, Any], source: str = "config") -> dict[str, str]:
    """config.json's ``annotations`` (what the engine copies into the OCI state), checked."""
    annotations = config.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InputError("not an object of strings", field=f"{source}: annotations")
    return annotations


def inject_entitled(
    bundle: str,
    *,
    policy_path: str = DEFAULT_POLICY_PATH,
    cdi_dirs: Sequence[str] = (),
    bundle_dirs: Sequence[str] = (),
) -> Injection:
    """Add what the container of ``bundle`` is entitled to into its config.json (atomically).

    Hostile or malformed input (a bundle outside the engines' state directories or reached through
    a symlink, a config.json that is huge, not a file, not JSON) is an ``InputError``; a broken
    policy too.  A refused claim is not an error: it is a log line, and nothing is granted for it.
    """
    has_policy = os.path.lexists(policy_path)
    allowed = (*DEFAULT_BUNDLE_DIRS, *bundle_dirs)
    if has_policy:
        from cgdev.ops.entitled import read_node_policy

        allowed = (*allowed, *read_node_policy(policy_path).bundle_dirs)
    with Bundle(bundle, allowed) as opened:
        config = opened.read()
        annotations = annotations_of(config, opened.config_path)
        if not has_policy and not any(k.startswith(_CLAIM_PREFIXES) for k in annotations):
            return Injection(opened.path)
        from cgdev.core.spec_edit import apply_resolution
        from cgdev.ops.entitled import DEFAULT_DIRS, entitled_devices

        decision = entitled_devices(
            annotations, config, policy_path=policy_path, cdi_dirs=tuple(cdi_dirs) or DEFAULT_DIRS
        )
        refusals = tuple(decision.log_lines())
        if decision.resolution is None:
            return Injection(opened.path, refusals)
        edit = apply_resolution(config, decision.resolution)
        if edit.changed:
            opened.replace(edit.config)
        return Injection(opened.path, refusals, edit)
