"""What a container is entitled to at creation: the node's policy applied to its annotations.

The OCI hook and the wrapper runtime both call ``entitled_devices``; the decision itself is
``cgdev.core.node_policy.decide`` (pure).  This module does the reading around it: the policy file
(``/etc/cgdev/policy.yaml``, YAML or JSON, read only when it exists) and the node's CDI spec
directories (read only when a ``cdi.k8s.io/*`` annotation names something), and resolves the CDI
names the decision trusts into the edits an engine would make.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from cgdev.adapters.cdi_cache import snapshot, write_cache
from cgdev.adapters.cdi_dirs import DEFAULT_DIRS, host_node, load_registry
from cgdev.core.cdi import CdiRegistry, CdiResolution, registry_cache, resolve
from cgdev.core.node_policy import (
    CDI_ANNOTATION_PREFIX,
    DEFAULT_POLICY_PATH,
    EntitlementSource,
    NodePolicy,
    Refusal,
    decide,
    merge,
    parse_node_policy,
)
from cgdev.errors import CgdevError, EnvError, InputError

__all__ = [
    "DEFAULT_DIRS",
    "DEFAULT_POLICY_PATH",
    "EntitlementDecision",
    "EntitlementSource",
    "Refusal",
    "entitled_devices",
    "read_node_policy",
]

MAX_POLICY_BYTES: Final = 1 << 20


class EntitlementDecision(msgspec.Struct, frozen=True):
    """The devices, rules and edits to grant (only from trusted sources), and every refused claim."""

    resolution: CdiResolution | None
    refusals: tuple[Refusal, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Nothing to inject or grant (no device, rule, env, mount, hook or gid)."""
        res = self.resolution
        return res is None or not (
            res.devices or res.device_rules or res.env or res.mounts or res.hooks or res.additional_gids
        )

    def log_lines(self) -> list[str]:
        return [r.line() for r in self.refusals]


def read_node_policy(path: str = DEFAULT_POLICY_PATH) -> NodePolicy:
    """The node's policy; a missing file is the default policy (CDI specs trusted, nothing else).

    A policy that cannot be read or parsed is an error, never the default: a broken file must not
    silently widen or narrow what the node grants.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        return NodePolicy()
    except OSError as err:
        raise EnvError(f"cannot read: {err.strerror}", field="policy", value=path) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise InputError(f"larger than {MAX_POLICY_BYTES} bytes", field="policy", value=path)
    return parse_node_policy(_decode(raw, path), path)


def _decode(raw: bytes, path: str) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 (byte {err.start})", field="policy", value=path) from None
    if not text.strip():
        return None
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"not YAML: {problem}", field="policy", value=where) from None


def entitled_devices(
    annotations: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    policy_path: str = DEFAULT_POLICY_PATH,
    cdi_dirs: Sequence[str] = DEFAULT_DIRS,
    cache: bool = False,
) -> EntitlementDecision:
    """The devices the container may be granted, never wider than the policy or a CDI spec lists.
    ``cache``: write what the CDI reader validated for the wrapper runtime's cached claim path
    (``load_registry_cached``; only the wrapper asks, the hook writes no state for a refusal).

    ``annotations`` are the OCI state's (the engine copies config.json's into it); ``config`` is
    the bundle's config.json, from which only ``linux.devices`` is read (a policy device's node
    path in the container, when the policy does not give one).
    """
    policy = read_node_policy(policy_path)
    wants_cdi = any(k.startswith(CDI_ANNOTATION_PREFIX) for k in annotations)
    registry: list[CdiRegistry] = []

    def resolve_one(name: str) -> CdiResolution | str:
        if not registry:
            registry.append(load_registry_cached(cdi_dirs) if cache else load_registry(cdi_dirs))
        try:
            return resolve(registry[0], [name], host_node)
        except CgdevError as err:
            return err.why
        except OSError as err:
            return f"cannot read its host node: {err.strerror}"

    decision = decide(policy, annotations, resolve_one)
    cdi = resolve(registry[0], decision.cdi_names, host_node) if decision.cdi_names and wants_cdi else None
    grants = tuple(
        g if g.path else msgspec.structs.replace(g, path=_config_path(config, g.type, g.major, g.minor))
        for g in decision.grants
    )
    return EntitlementDecision(merge(cdi, grants), decision.refusals)


def load_registry_cached(dirs: Sequence[str]) -> CdiRegistry:
    """``load_registry``, and the validated result written to the cache the wrapper runtime's fast
    claim path reads (``adapters.cdi_cache``) when the spec files stat the same before and after the
    read.  A cache that cannot be written (not root, a read-only state dir) only costs the next
    claim the full read."""
    dirs = tuple(os.path.normpath(d) for d in dirs)
    before = snapshot(dirs)
    registry = load_registry(dirs)
    if before is not None and snapshot(dirs) == before:
        with contextlib.suppress(OSError):
            write_cache(dirs, before, registry_cache(registry))
    return registry


def _config_path(config: Mapping[str, Any], dev_type: str, major: int, minor: int) -> str:
    linux = config.get("linux")
    devices = linux.get("devices") if isinstance(linux, dict) else None
    for dev in devices if isinstance(devices, list) else ():
        if (
            isinstance(dev, dict)
            and (dev.get("type"), dev.get("major"), dev.get("minor")) == (dev_type, major, minor)
            and isinstance(dev.get("path"), str)
            and os.path.isabs(dev["path"])
        ):
            return str(dev["path"])
    return ""
