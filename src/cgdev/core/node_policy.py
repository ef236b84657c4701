"""The node's entitlement policy and the one decision made from it: which devices a container gets.

A container's annotations are written by whoever creates the container (a pod's user), so they
are claims, not grants.  This module decides which claims the node's administrator trusts
(``/etc/cgdev/policy.yaml``, parsed strictly into ``NodePolicy``) and returns exactly the devices
and rules that follow, plus one ``Refusal`` per claim it turned down.  Every front end that
grants at container creation (the OCI hook, the wrapper runtime) asks this one function, so the
security boundary is in one place and is pure (tested exhaustively, no I/O).

Sources, in the order they are decided:

- ``cdi.k8s.io/*`` annotations: comma-separated CDI names.  Trusted only when the name resolves to
  a spec installed on the node (the caller resolves them; a spec is root-owned), and, when the
  policy lists ``cdi.kinds``, only for those ``vendor/class`` kinds.
- ``cgdev.io/devices``: ``TYPE MAJOR:MINOR [ACCESS]`` entries, comma-separated.  Refused unless
  the policy enables the annotation, and then only for devices it lists, with at most the access
  it lists (wider access is refused whole, never clamped: a request the user did not get exactly
  is an error they should see).
- ``images`` / ``namespaces`` entries: granted when the container's image or namespace, as the
  engine itself records it (``ENGINE_IMAGE_KEYS``, ``ENGINE_NAMESPACE_KEYS``: CRI runtimes
  overwrite these keys, a pod cannot set them), matches.

Wildcards (``c 195:*``) are never accepted, neither in the policy nor in an annotation: a grant
names each device.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Final

import msgspec

from cgdev.core.cdi import CdiResolution, OciDevice, OciDeviceRule, split_qualified
from cgdev.errors import InputError

DEFAULT_POLICY_PATH: Final = "/etc/cgdev/policy.yaml"
CDI_ANNOTATION_PREFIX: Final = "cdi.k8s.io/"
DEVICES_ANNOTATION: Final = "cgdev.io/devices"
# Keys the engines write themselves (containerd's CRI plugin, CRI-O); a pod's own annotation of
# the same key is overwritten by the engine before the runtime sees the config.
ENGINE_IMAGE_KEYS: Final = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName")
ENGINE_NAMESPACE_KEYS: Final = ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
# Bounds that keep a hostile annotation from costing the hook its budget.
MAX_ANNOTATION_ENTRIES: Final = 64

_ACCESS = re.compile(r"[rwm]{1,3}\Z")
_ENTRY = re.compile(r"([bc])\s+(\d+):(\d+)(?:\s+(\S+))?\Z")


class EntitlementSource(StrEnum):
    """Where a claim came from (what a refusal log line names)."""

    CDI = "cdi"
    ANNOTATION = "annotation"
    IMAGE = "image"
    NAMESPACE = "namespace"


class Refusal(msgspec.Struct, frozen=True):
    """One claim turned down: its source, what it named, and why (one log line)."""

    source: EntitlementSource
    name: str
    why: str

    def line(self) -> str:
        return f"refused {self.source} {self.name!r}: {self.why}"


# ---------------------------------------------------------------------------------------------
# The policy file.


class PolicyDevice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One device the policy lets be granted: ``c 195:255``, at most ``access``; ``path`` is the
    container path of its node (for the wrapper runtime's ``linux.devices``), optional."""

    device: str
    access: str = "rw"
    path: str = ""


class AnnotationPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    devices: list[PolicyDevice] = msgspec.field(default_factory=list)


class CdiPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kinds`` empty: every spec installed on the node is trusted (the node's admin installed it)."""

    enabled: bool = True
    kinds: list[str] = msgspec.field(default_factory=list)


class ImageEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    image: str  # an fnmatch pattern against the engine-recorded image name
    devices: list[PolicyDevice]


class NamespaceEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    namespace: str
    devices: list[PolicyDevice]


class NodePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What ``/etc/cgdev/policy.yaml`` says; no file reads as ``NodePolicy()`` (CDI only)."""

    version: int = 1
    cdi: CdiPolicy = msgspec.field(default_factory=CdiPolicy)
    annotation: AnnotationPolicy = msgspec.field(default_factory=AnnotationPolicy)
    images: list[ImageEntry] = msgspec.field(default_factory=list)
    namespaces: list[NamespaceEntry] = msgspec.field(default_factory=list)
    bundle_dirs: list[str] = msgspec.field(default_factory=list)  # extra allowed bundle roots


class Grant(msgspec.Struct, frozen=True, order=True):
    """One device rule the decision grants (numbers and access, ``path`` if known)."""

    type: str
    major: int
    minor: int
    access: str
    path: str = ""


_MSGSPEC_AT = re.compile(r"^(?P<why>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def parse_grant(text: str, field: str, *, default_access: str = "rw", path: str = "") -> Grant:
    """``c 195:255`` or ``c 195:255 rw`` -> a ``Grant``; anything else (wildcards, other types,
    numbers out of range, letters outside rwm) an ``InputError`` naming ``field``."""
    stripped = " ".join(text.split())
    if "*" in stripped or stripped.lower().startswith("a"):
        raise InputError("wildcards are never granted: name each device", field=field, value=text)
    match = _ENTRY.match(stripped)
    if not match:
        raise InputError("not 'TYPE MAJOR:MINOR [ACCESS]' (e.g. 'c 195:255 rw')", field=field, value=text)
    major, minor = int(match[2]), int(match[3])
    if major > 0xFFF or minor > 0xFFFFF:
        raise InputError("major or minor out of range", field=field, value=text)
    access = match[4] or default_access
    if not _ACCESS.match(access) or len(set(access)) != len(access):
        raise InputError("access is not letters from r, w, m", field=field, value=text)
    return Grant(match[1], major, minor, "".join(c for c in "rwm" if c in access), path)


def _fail(source: str, path: str, why: str, value: object = None) -> InputError:
    return InputError(why, field=f"{source}: {path or '(document)'}", value=value)


def parse_node_policy(document: object, source: str) -> NodePolicy:
    """A decoded policy document -> ``NodePolicy``; every problem is one ``InputError`` whose
    field is ``FILE: path.in.policy`` and whose value is the offending value."""
    if document is None:
        return NodePolicy()
    try:
        policy = msgspec.convert(document, NodePolicy, strict=True)
    except msgspec.ValidationError as err:
        match = _MSGSPEC_AT.match(str(err))
        assert match is not None
        why, at = match["why"], (match["path"] or "").lstrip(".")
        unknown = re.search(r"field `([^`]*)`", why)
        if unknown and why.startswith("Object contains unknown field"):
            raise _fail(source, f"{at}.{unknown[1]}" if at else unknown[1], "unknown field") from None
        if unknown and why.startswith("Object missing required field"):
            raise _fail(
                source, f"{at}.{unknown[1]}" if at else unknown[1], "required field missing"
            ) from None
        raise _fail(source, at, why[:1].lower() + why[1:]) from None
    if policy.version != 1:
        raise _fail(source, "version", "cgdev knows policy version 1", policy.version)
    lists = [("annotation.devices", policy.annotation.devices)]
    lists += [(f"images[{i}].devices", e.devices) for i, e in enumerate(policy.images)]
    lists += [(f"namespaces[{i}].devices", e.devices) for i, e in enumerate(policy.namespaces)]
    for at, devices in lists:
        for j, dev in enumerate(devices):
            _policy_grant(dev, f"{source}: {at}[{j}]")
    for i, kind in enumerate(policy.cdi.kinds):
        if "/" not in kind or "=" in kind:
            raise _fail(source, f"cdi.kinds[{i}]", "not vendor/class", kind)
        try:
            split_qualified(f"{kind}=x")
        except InputError as err:
            raise _fail(source, f"cdi.kinds[{i}]", err.why, kind) from None
    for i, directory in enumerate(policy.bundle_dirs):
        if not directory.startswith("/") or directory.rstrip("/") == "":
            raise _fail(source, f"bundle_dirs[{i}]", "not an absolute directory other than /", directory)
    return policy


def _policy_grant(dev: PolicyDevice, field: str) -> Grant:
    grant = parse_grant(dev.device, f"{field}.device", default_access=dev.access, path=dev.path)
    if len(dev.device.split()) > 2:
        raise InputError("give the access in 'access', not in 'device'", field=f"{field}.device",
                         value=dev.device)  # fmt: skip
    if dev.path and not dev.path.startswith("/dev/"):
        raise InputError("not a path under /dev/", field=f"{field}.path", value=dev.path)
    return grant


def policy_grants(devices: list[PolicyDevice]) -> list[Grant]:
    """The grants of a policy list (already validated by ``parse_node_policy``)."""
    return [_policy_grant(d, "policy") for d in devices]


# ---------------------------------------------------------------------------------------------
# The decision.

CdiResolver = Callable[[str], "CdiResolution | str"]


class Decision(msgspec.Struct, frozen=True):
    """The pure decision: the trusted CDI names, the other grants, and every refusal."""

    cdi_names: tuple[str, ...]
    grants: tuple[Grant, ...]
    refusals: tuple[Refusal, ...]


def within(grant: Grant, allowed: list[Grant]) -> bool:
    """``grant`` is one listed device with at most the listed access."""
    return any(
        (a.type, a.major, a.minor) == (grant.type, grant.major, grant.minor)
        and set(grant.access) <= set(a.access)
        for a in allowed
    )


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def decide(policy: NodePolicy, annotations: Mapping[str, str], resolve_cdi: CdiResolver) -> Decision:
    """What the container is entitled to.  ``resolve_cdi(name)`` resolves one CDI name against
    the node's installed specs: a ``CdiResolution``, or why it does not resolve (a str)."""
    refusals: list[Refusal] = []
    names: list[str] = []
    grants: list[Grant] = []
    for key in sorted(annotations):
        if not key.startswith(CDI_ANNOTATION_PREFIX):
            continue
        claimed = _split(annotations[key])
        for name in claimed[:MAX_ANNOTATION_ENTRIES]:
            why = _cdi_refusal(policy, name, resolve_cdi)
            if why:
                refusals.append(Refusal(EntitlementSource.CDI, name, why))
            elif name not in names:
                names.append(name)
        if len(claimed) > MAX_ANNOTATION_ENTRIES:
            why = f"more than {MAX_ANNOTATION_ENTRIES} names in one annotation; the rest ignored"
            refusals.append(Refusal(EntitlementSource.CDI, key, why))
    raw = annotations.get(DEVICES_ANNOTATION)
    if raw is not None:
        _annotation_grants(policy, raw, grants, refusals)
    for image_key in ENGINE_IMAGE_KEYS:
        image = annotations.get(image_key)
        if image:
            for entry in policy.images:
                if fnmatch.fnmatchcase(image, entry.image):
                    grants.extend(policy_grants(entry.devices))
            break
    for ns_key in ENGINE_NAMESPACE_KEYS:
        namespace = annotations.get(ns_key)
        if namespace:
            for ns_entry in policy.namespaces:
                if ns_entry.namespace == namespace:
                    grants.extend(policy_grants(ns_entry.devices))
            break
    return Decision(tuple(names), tuple(dict.fromkeys(grants)), tuple(refusals))


def _cdi_refusal(policy: NodePolicy, name: str, resolve_cdi: CdiResolver) -> str:
    if not policy.cdi.enabled:
        return "CDI annotations are disabled by the node's policy"
    try:
        vendor, cls, _ = split_qualified(name)
    except InputError as err:
        return err.why
    if policy.cdi.kinds and f"{vendor}/{cls}" not in policy.cdi.kinds:
        return f"the node's policy trusts only CDI kinds {', '.join(policy.cdi.kinds)}"
    resolved = resolve_cdi(name)
    return resolved if isinstance(resolved, str) else ""


def _annotation_grants(policy: NodePolicy, raw: str, grants: list[Grant], refusals: list[Refusal]) -> None:
    entries = _split(raw)
    if not policy.annotation.enabled:
        for entry in entries[:MAX_ANNOTATION_ENTRIES] or [raw]:
            why = f"the node's policy does not enable the {DEVICES_ANNOTATION} annotation"
            refusals.append(Refusal(EntitlementSource.ANNOTATION, entry, why))
        return
    allowed = policy_grants(policy.annotation.devices)
    for entry in entries[:MAX_ANNOTATION_ENTRIES]:
        try:
            grant = parse_grant(entry, DEVICES_ANNOTATION)
        except InputError as err:
            refusals.append(Refusal(EntitlementSource.ANNOTATION, entry, err.why))
            continue
        same = [a for a in allowed if (a.type, a.major, a.minor) == (grant.type, grant.major, grant.minor)]
        if not within(grant, allowed):
            why = (
                f"the node's policy allows at most {same[0].access!r} on it"
                if same
                else "not a device the node's policy lists for this annotation"
            )
            refusals.append(Refusal(EntitlementSource.ANNOTATION, entry, why))
            continue
        grants.append(msgspec.structs.replace(grant, path=same[0].path))
    if len(entries) > MAX_ANNOTATION_ENTRIES:
        why = f"more than {MAX_ANNOTATION_ENTRIES} entries; the rest ignored"
        refusals.append(Refusal(EntitlementSource.ANNOTATION, DEVICES_ANNOTATION, why))


def merge(cdi: CdiResolution | None, grants: tuple[Grant, ...]) -> CdiResolution | None:
    """The CDI edits plus the policy's grants as one resolution (None when there is nothing)."""
    if cdi is None and not grants:
        return None
    base = cdi or CdiResolution((), (), (), ())
    devices = list(base.devices)
    known = {d.path for d in devices}
    for g in grants:
        if g.path and g.path not in known:
            devices.append(OciDevice(g.path, g.type, g.major, g.minor))
            known.add(g.path)
    rules = [*base.device_rules, *(OciDeviceRule(True, g.type, g.major, g.minor, g.access) for g in grants)]
    return msgspec.structs.replace(base, devices=tuple(devices), device_rules=tuple(dict.fromkeys(rules)))
