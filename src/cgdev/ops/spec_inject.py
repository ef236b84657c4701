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

The common claim (``cdi.k8s.io/*`` annotations, no policy file) is resolved from the cache of the
node's validated CDI registry (``adapters.cdi_cache``, written by the full reader) without msgspec:
when every name is in the cache, the spec files are unchanged and every host node fits, the result
is the one ``ops.entitled`` would give (the default policy trusts every installed spec and grants
nothing else); anything else (a name not found, a refusal, a policy file, a ``cgdev.io/devices``
annotation, a stale or missing cache) takes the full path.
"""

from __future__ import annotations

import os

from cgdev.adapters.oci_bundle import DEFAULT_BUNDLE_DIRS, Bundle
from cgdev.errors import InputError

TYPE_CHECKING = False  # typing, collections.abc and dataclasses would cost more than this module's work
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Final

    from cgdev.core.cdi import CdiResolution
    from cgdev.core.cdi_plain import PlainResolution
    from cgdev.core.spec_edit import SpecEdit

DEFAULT_POLICY_PATH: Final = "/etc/cgdev/policy.yaml"  # = cgdev.core.node_policy.DEFAULT_POLICY_PATH
# = node_policy.CDI_ANNOTATION_PREFIX and DEVICES_ANNOTATION (not imported: the fast path's cost)
_CDI_PREFIX: Final = "cdi.k8s.io/"
_CLAIM_PREFIXES: Final = (_CDI_PREFIX, "cgdev.io/devices")
_MAX_NAMES: Final = 64  # = node_policy.MAX_ANNOTATION_ENTRIES
_DEFAULT_CDI_DIRS: Final = ("/etc/cdi", "/var/run/cdi")  # = adapters.cdi_dirs.DEFAULT_DIRS


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

        dirs = tuple(cdi_dirs) or _DEFAULT_CDI_DIRS
        resolution: CdiResolution | PlainResolution | None = None
        if not has_policy:
            resolution = cached_resolution(annotations, dirs)
        refusals: tuple[str, ...] = ()
        if resolution is None:
            from cgdev.ops.entitled import entitled_devices

            decision = entitled_devices(
                annotations, config, policy_path=policy_path, cdi_dirs=dirs, cache=True
            )
            refusals = tuple(decision.log_lines())
            resolution = decision.resolution
            if resolution is None:
                return Injection(opened.path, refusals)
        edit = apply_resolution(config, resolution)
        if edit.changed:
            opened.replace(edit.config)
        return Injection(opened.path, refusals, edit)


def _claimed_names(annotations: Mapping[str, str]) -> list[str] | None:
    """The CDI names of the ``cdi.k8s.io/*`` annotations, in ``node_policy.decide``'s order (keys
    sorted, each name once); None when the claim is not this path's (another claim source, an
    annotation over the bound, none at all)."""
    names: list[str] = []
    for key in sorted(annotations):
        if not key.startswith(_CDI_PREFIX):
            if key.startswith(_CLAIM_PREFIXES):
                return None
            continue
        claimed = [part.strip() for part in annotations[key].split(",") if part.strip()]
        if len(claimed) > _MAX_NAMES:
            return None
        names += [n for n in claimed if n not in names]
    return names or None


def cached_resolution(annotations: Mapping[str, str], cdi_dirs: Sequence[str]) -> PlainResolution | None:
    """What the default policy (no policy file) grants for the CDI claims, from the cache of the
    node's validated registry; None to take the full path (which says why, or refreshes the cache).
    The host nodes are looked up now, as the full path does."""
    names = _claimed_names(annotations)
    if names is None:
        return None
    from cgdev.adapters.cdi_cache import host_node_plain, read_cache
    from cgdev.core.cdi_plain import resolve_cached
    from cgdev.errors import CgdevError

    cache = read_cache(tuple(os.path.normpath(d) for d in cdi_dirs))
    if cache is None:
        return None
    try:
        return resolve_cached(cache, names, host_node_plain)
    except (CgdevError, OSError, LookupError, TypeError, ValueError, AttributeError):
        return None  # a node that does not fit (the full path refuses it), or a cache not as written
