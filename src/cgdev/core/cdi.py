"""CDI (Container Device Interface) specs: the data model, its validation, and name resolution.

A CDI spec is the one device grant every layer agrees on: a runtime that injects it writes the node
into ``linux.devices`` and an allow rule into ``linux.resources.devices``, and every later reload
(systemd's included) re-reads those.  cgdev reads the same files the engines read, so what it
resolves must be exactly what podman or containerd would inject; the rules below follow the CDI
reference library (cncf-tags/container-device-interface, spec 1.1.0), with the differences listed
where they are made.

Validation is strict because an engine's loader is strict: a spec with an unknown field, or with a
field newer than its ``cdiVersion``, is skipped by the engines, so cgdev must not read it as valid.
Over 400 lines because the versioned model and its validation are one table read in one place:
splitting the structs from the checks would put each field's rule far from the field.

Every problem is one ``InputError`` whose field is ``FILE: path.in.spec`` (JSON names, as written)
and whose value is the offending value.

This module is pure: decoding a file, listing directories and ``lstat`` of host nodes happen in
``cgdev.adapters.cdi_dirs``; the host lookup is passed in as a function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Final

import msgspec

from cgdev.core.cdi_plain import fill_fields
from cgdev.core.model import ACC_M, ACC_R, ACC_W, Rule
from cgdev.errors import InputError, NotFound

# ---------------------------------------------------------------------------------------------
# Versions.  The reference knows 0.1.0 and 0.2.0 too but requires at least 0.3.0 of every spec;
# patch versions ("0.5.1") are not spec versions and are refused, as the reference refuses them.

VERSIONS: Final[tuple[str, ...]] = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
LATEST: Final = VERSIONS[-1]


def _vkey(version: str) -> int:
    return VERSIONS.index(version)


# ---------------------------------------------------------------------------------------------
# The spec as msgspec structs: unknown fields are errors (the reference decodes strictly).
# Integer fields the kernel reads as u32 are bounded here; the reference takes any int64 for
# major/minor, cgdev refuses negative or > u32 numbers since no device or rule can carry them.

U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF_FFFF)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, rename="camel"):
    pass


class CdiDeviceNode(_Strict):
    path: str
    host_path: str = ""  # 0.5.0
    type: str = ""
    major: U32 = 0
    minor: U32 = 0
    file_mode: U32 | None = None
    permissions: str = ""
    uid: U32 | None = None
    gid: U32 | None = None


class CdiMount(_Strict):
    host_path: str
    container_path: str
    options: list[str] = msgspec.field(default_factory=list)
    type: str = ""  # 0.4.0


class CdiHook(_Strict):
    hook_name: str
    path: str
    args: list[str] = msgspec.field(default_factory=list)
    env: list[str] = msgspec.field(default_factory=list)
    timeout: int | None = None


class CdiIntelRdt(_Strict):
    clos_id: str = msgspec.field(default="", name="closID")
    l3_cache_schema: str = ""
    mem_bw_schema: str = ""
    # 0.7.0 – 1.0.0 only: dropped in 1.1.0 (as runtime-spec dropped them).
    enable_cmt: bool | None = msgspec.field(default=None, name="enableCMT")
    enable_mbm: bool | None = msgspec.field(default=None, name="enableMBM")
    # 1.1.0
    schemata: list[str] | None = None
    enable_monitoring: bool = False


class CdiNetDevice(_Strict):
    host_interface_name: str
    name: str


class CdiEdits(_Strict):
    env: list[str] = msgspec.field(default_factory=list)
    device_nodes: list[CdiDeviceNode] = msgspec.field(default_factory=list)
    net_devices: list[CdiNetDevice] = msgspec.field(default_factory=list)  # 1.1.0
    hooks: list[CdiHook] = msgspec.field(default_factory=list)
    mounts: list[CdiMount] = msgspec.field(default_factory=list)
    intel_rdt: CdiIntelRdt | None = None  # 0.7.0
    additional_gids: list[U32] = msgspec.field(default_factory=list)  # 0.7.0

    def is_empty(self) -> bool:
        return not (
            self.env
            or self.device_nodes
            or self.net_devices
            or self.hooks
            or self.mounts
            or self.intel_rdt is not None
            or self.additional_gids
        )


class CdiDevice(_Strict):
    name: str
    annotations: dict[str, str] = msgspec.field(default_factory=dict)  # 0.6.0
    container_edits: CdiEdits = msgspec.field(default_factory=CdiEdits)


class CdiSpec(_Strict):
    cdi_version: str
    kind: str
    annotations: dict[str, str] = msgspec.field(default_factory=dict)  # 0.6.0
    devices: list[CdiDevice] = msgspec.field(default_factory=list)
    container_edits: CdiEdits = msgspec.field(default_factory=CdiEdits)

    @property
    def vendor(self) -> str:
        return self.kind.partition("/")[0]

    @property
    def device_class(self) -> str:
        return self.kind.partition("/")[2]


# ---------------------------------------------------------------------------------------------
# Names.  vendor and class: a letter first, a letter or digit last, [A-Za-z0-9_.-] between; device
# names also allow ':' and may start with a digit (the latter needs cdiVersion 0.5.0).

_VENDOR_CLASS = re.compile(r"[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?\Z")
_DEVICE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?\Z")


def name_problem(name: str, what: str) -> str | None:
    """Why ``name`` is not a valid CDI ``vendor``, ``class`` or ``device`` name, or None."""
    device = what == "device"
    if not name:
        return f"empty {what} name"
    if (_DEVICE if device else _VENDOR_CLASS).match(name):
        return None
    if not re.match("[A-Za-z0-9]" if device else "[A-Za-z]", name):
        return f"a {what} name must start with {'a letter or digit' if device else 'a letter'}"
    if not re.match("[A-Za-z0-9]", name[-1]):
        return f"a {what} name must end with a letter or digit"
    bad = re.search("[^A-Za-z0-9_.:-]" if device else "[^A-Za-z0-9_.-]", name)
    return f"invalid character {bad[0] if bad else '?'!r} in {what} name"


def split_qualified(text: str) -> tuple[str, str, str]:
    """``vendor/class=name`` -> its three parts, or an InputError (field ``device``)."""
    qualifier, eq, name = text.partition("=")
    vendor, slash, cls = qualifier.partition("/")
    if text.startswith("/") or not eq or not slash or not vendor or not cls or not name:
        raise InputError("not a CDI name: expected vendor/class=name", field="device", value=text)
    for part, what in ((vendor, "vendor"), (cls, "class"), (name, "device")):
        problem = name_problem(part, what)
        if problem:
            raise InputError(problem, field="device", value=text)
    return vendor, cls, name


def is_qualified_name(text: str) -> bool:
    """True when ``text`` parses as ``vendor/class=name`` (cheap: callers route DEVICE args on it)."""
    try:
        split_qualified(text)
    except InputError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Parsing a decoded document.

_HOOK_NAMES: Final = frozenset(
    {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
)
_NODE_TYPES: Final = frozenset({"", "b", "c", "u", "p"})
_MSGSPEC_AT = re.compile(r"^(?P<why>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_FIELD_IN = re.compile(r"field `([^`]*)`")


def _fail(source: str, path: str, why: str, value: object = None) -> InputError:
    return InputError(why, field=f"{source}: {path or '(document)'}", value=_short(value))


def _short(value: object) -> object:
    """Containers shown as a short text: an error line must stay one line."""
    if isinstance(value, dict | list):
        text = msgspec.json.encode(value).decode()
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, str) and len(value) > 200:
        return value[:197] + "..."
    return value


def _lookup(document: object, path: str) -> object:
    """The value at a msgspec path (``.devices[0].name``) of the decoded document, or None."""
    node = document
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        try:
            node = node[key] if key else node[int(index)]  # type: ignore[index]  # any JSON node; errors caught
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _drop_nulls(value: object) -> object:
    """``key: null`` reads as an absent key, as in the reference (a Go null leaves the zero value).

    YAML writes an empty ``env:`` as null, so refusing it would refuse specs every engine accepts.
    """
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def parse_spec(document: object, source: str) -> CdiSpec:
    """A decoded JSON/YAML document -> a validated ``CdiSpec``; ``source`` names it in errors."""
    document = _drop_nulls(document)
    try:
        spec = msgspec.convert(document, CdiSpec, strict=True)
    except msgspec.ValidationError as err:
        match = _MSGSPEC_AT.match(str(err))
        assert match is not None
        why, path = match["why"], (match["path"] or "").lstrip(".")
        field = _FIELD_IN.search(why)
        if why.startswith("Object contains unknown field") and field:
            full = f"{path}.{field[1]}" if path else field[1]
            raise _fail(source, full, "unknown field", _lookup(document, "." + full)) from None
        if why.startswith("Object missing required field") and field:
            full = f"{path}.{field[1]}" if path else field[1]
            raise _fail(source, full, "required field missing") from None
        raise _fail(source, path, why[:1].lower() + why[1:], _lookup(document, "." + path)) from None
    validate_spec(spec, source)
    return spec


def _features(spec: CdiSpec) -> Iterator[tuple[str, str, object]]:
    """(version needed, path, value) for every use of a field newer than 0.3.0 (as the reference
    counts them: a field set to its zero value does not count)."""
    if spec.annotations:
        yield "0.6.0", "annotations", spec.annotations
    if "." in spec.device_class:
        yield "0.6.0", "kind", spec.kind
    scopes: list[tuple[str, CdiEdits]] = [("containerEdits", spec.container_edits)]
    for i, dev in enumerate(spec.devices):
        if dev.name[:1] in tuple("0123456789"):
            yield "0.5.0", f"devices[{i}].name", dev.name
        if dev.annotations:
            yield "0.6.0", f"devices[{i}].annotations", dev.annotations
        scopes.append((f"devices[{i}].containerEdits", dev.container_edits))
    for at, edits in scopes:
        for j, mount in enumerate(edits.mounts):
            if mount.type:
                yield "0.4.0", f"{at}.mounts[{j}].type", mount.type
        for j, node in enumerate(edits.device_nodes):
            if node.host_path:
                yield "0.5.0", f"{at}.deviceNodes[{j}].hostPath", node.host_path
        if edits.additional_gids:
            yield "0.7.0", f"{at}.additionalGids", edits.additional_gids
        rdt = edits.intel_rdt
        if rdt is not None:
            yield "0.7.0", f"{at}.intelRdt", msgspec.to_builtins(rdt)
            if rdt.schemata is not None:
                yield "1.1.0", f"{at}.intelRdt.schemata", rdt.schemata
            if rdt.enable_monitoring:
                yield "1.1.0", f"{at}.intelRdt.enableMonitoring", True
        if edits.net_devices:
            yield "1.1.0", f"{at}.netDevices", msgspec.to_builtins(edits.net_devices)


def minimum_version(spec: CdiSpec) -> str:
    """The lowest ``cdiVersion`` whose fields cover everything ``spec`` uses."""
    return max((v for v, _, _ in _features(spec)), key=_vkey, default=VERSIONS[0])


def _validate_env(env: Sequence[str], at: str, source: str) -> None:
    for k, var in enumerate(env):
        if var.find("=") <= 0:
            raise _fail(source, f"{at}[{k}]", "not NAME=VALUE", var)


def _validate_edits(edits: CdiEdits, at: str, source: str, version: str) -> None:
    _validate_env(edits.env, f"{at}.env", source)
    for j, node in enumerate(edits.device_nodes):
        here = f"{at}.deviceNodes[{j}]"
        if not node.path:
            raise _fail(source, f"{here}.path", "empty device path", node.path)
        if node.type not in _NODE_TYPES:
            raise _fail(source, f"{here}.type", "not one of b, c, u, p", node.type)
        perms = node.permissions
        if perms not in ("", "none") and perms.strip("rwm"):
            raise _fail(source, f"{here}.permissions", "not 'none' or letters from r, w, m", perms)
    for j, hook in enumerate(edits.hooks):
        here = f"{at}.hooks[{j}]"
        if hook.hook_name not in _HOOK_NAMES:
            raise _fail(source, f"{here}.hookName", "not an OCI hook name", hook.hook_name)
        if not hook.path:
            raise _fail(source, f"{here}.path", "empty hook path", hook.path)
        _validate_env(hook.env, f"{here}.env", source)
    for j, mount in enumerate(edits.mounts):
        for name, value in (("hostPath", mount.host_path), ("containerPath", mount.container_path)):
            if not value:
                raise _fail(source, f"{at}.mounts[{j}].{name}", "empty mount path", value)
    rdt = edits.intel_rdt
    if rdt is not None:
        c = rdt.clos_id
        if c != "/" and (len(c) >= 4096 or c in (".", "..") or "/" in c or "\n" in c):
            raise _fail(source, f"{at}.intelRdt.closID", "not a valid CLOS name", c)
        for flag, set_to in (("enableCMT", rdt.enable_cmt), ("enableMBM", rdt.enable_mbm)):
            if set_to is not None and _vkey(version) >= _vkey("1.1.0"):
                raise _fail(source, f"{at}.intelRdt.{flag}", "removed in cdiVersion 1.1.0", set_to)
    hosts: dict[str, int] = {}
    names: dict[str, int] = {}
    for j, net in enumerate(edits.net_devices):
        here = f"{at}.netDevices[{j}]"
        pairs = (("hostInterfaceName", net.host_interface_name, hosts), ("name", net.name, names))
        for key, value, seen in pairs:
            if not value:
                raise _fail(source, f"{here}.{key}", "empty interface name", value)
            if value in seen:
                raise _fail(source, f"{here}.{key}", f"duplicate of netDevices[{seen[value]}]", value)
            seen[value] = j


def validate_spec(spec: CdiSpec, source: str) -> None:
    """The reference's checks, in its order, each failing as one ``InputError``."""
    version = spec.cdi_version.removeprefix("v")
    if version not in VERSIONS:
        raise _fail(source, "cdiVersion", f"not a CDI version ({', '.join(VERSIONS)})", spec.cdi_version)
    newer = [f for f in _features(spec) if _vkey(f[0]) > _vkey(version)]
    if newer:
        needed, path, value = max(newer, key=lambda f: _vkey(f[0]))
        why = f"needs cdiVersion {needed}, the spec declares {spec.cdi_version}"
        raise _fail(source, path, why, value)
    vendor, slash, cls = spec.kind.partition("/")
    if not slash or not vendor or not cls:
        raise _fail(source, "kind", "not vendor/class", spec.kind)
    for part, what in ((vendor, "vendor"), (cls, "class")):
        problem = name_problem(part, what)
        if problem:
            raise _fail(source, "kind", problem, spec.kind)
    _validate_edits(spec.container_edits, "containerEdits", source, version)
    seen: dict[str, int] = {}
    for i, dev in enumerate(spec.devices):
        problem = name_problem(dev.name, "device")
        if problem:
            raise _fail(source, f"devices[{i}].name", problem, dev.name)
        if dev.container_edits.is_empty():
            raise _fail(source, f"devices[{i}].containerEdits", "a device needs at least one edit")
        _validate_edits(dev.container_edits, f"devices[{i}].containerEdits", source, version)
        if dev.name in seen:
            raise _fail(source, f"devices[{i}].name", f"duplicate of devices[{seen[dev.name]}]", dev.name)
        seen[dev.name] = i
    if not spec.devices:
        raise _fail(source, "devices", "a spec needs at least one device")


def encode_spec(spec: CdiSpec) -> bytes:
    """JSON of a spec as written (defaults omitted): what ``parse_spec`` reads back unchanged."""
    document = msgspec.to_builtins(spec)
    if document.get("containerEdits") == {}:  # a struct default msgspec does not omit
        del document["containerEdits"]
    return msgspec.json.encode(document)


# ---------------------------------------------------------------------------------------------
# The registry: every valid spec of every directory, devices by qualified name.
# As the reference: a later directory overrides an earlier one; the same name twice in one
# directory is a conflict that removes the device and is an error in both files.


class LoadedSpec(msgspec.Struct, frozen=True):
    """One spec file read without error: its path and its directory's priority (index)."""

    path: str
    priority: int
    spec: CdiSpec


class CdiEntry(msgspec.Struct, frozen=True):
    """A device the registry resolves: its spec, and the spec files it overrides."""

    name: str
    loaded: LoadedSpec
    index: int
    shadows: tuple[str, ...] = ()

    @property
    def device(self) -> CdiDevice:
        return self.loaded.spec.devices[self.index]


class CdiRegistry(msgspec.Struct, frozen=True):
    """What a node's CDI directories offer: devices, and one error per broken or conflicting file."""

    dirs: tuple[str, ...]
    devices: dict[str, CdiEntry]
    errors: tuple[InputError, ...] = ()
    specs: tuple[LoadedSpec, ...] = ()


def build_registry(
    dirs: Sequence[str], loaded: Iterable[LoadedSpec], errors: Iterable[InputError] = ()
) -> CdiRegistry:
    """Index ``loaded`` (in scan order) by qualified name, resolving duplicates as the reference."""
    errs = list(errors)
    specs = list(loaded)
    devices: dict[str, CdiEntry] = {}
    conflicts: set[str] = set()
    for spec in specs:
        for i, dev in enumerate(spec.spec.devices):
            name = f"{spec.spec.kind}={dev.name}"
            entry = CdiEntry(name, spec, i)
            old = devices.get(name)
            if old is not None:
                if old.loaded.priority < spec.priority:
                    entry = CdiEntry(name, spec, i, (*old.shadows, old.loaded.path))
                elif old.loaded.priority == spec.priority:
                    why = f"{name} is also defined in {old.loaded.path}: a conflict, neither is used"
                    errs.append(_fail(spec.path, f"devices[{i}].name", why, dev.name))
                    conflicts.add(name)
                    continue
            devices[name] = entry
    for name in conflicts:
        devices.pop(name, None)
    return CdiRegistry(tuple(dirs), dict(sorted(devices.items())), tuple(errs), tuple(specs))


# ---------------------------------------------------------------------------------------------
# Resolution: names -> the OCI edits an engine would make (devices and cgroup rules first).


class HostNode(msgspec.Struct, frozen=True):
    """What ``lstat`` says of a host path: ``type`` b, c, p, or "" for anything else."""

    type: str
    major: int
    minor: int
    mode: int


class OciDevice(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    """One ``linux.devices`` entry."""

    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


class OciDeviceRule(msgspec.Struct, frozen=True):
    """One ``linux.resources.devices`` entry (always an allow; ``access`` "" for ``none``)."""

    allow: bool
    type: str
    major: int
    minor: int
    access: str


class CdiResolution(msgspec.Struct, frozen=True, rename="camel"):
    """The edits injecting ``names`` makes, in the reference's order (spec edits once per spec)."""

    names: tuple[str, ...]
    spec_paths: tuple[str, ...]
    devices: tuple[OciDevice, ...]
    device_rules: tuple[OciDeviceRule, ...]
    env: tuple[str, ...] = ()
    mounts: tuple[CdiMount, ...] = ()
    hooks: tuple[CdiHook, ...] = ()
    additional_gids: tuple[int, ...] = ()

    def rules(self) -> list[Rule]:
        """The cgroup rules as cgdev's model (``none`` is an allow of no access)."""
        return [Rule(True, r.type, r.major, r.minor, access_bits(r.access)) for r in self.device_rules]


def access_bits(permissions: str) -> int:
    return (
        (ACC_R if "r" in permissions else 0)
        | (ACC_W if "w" in permissions else 0)
        | (ACC_M if "m" in permissions else 0)
    )


HostLookup = Callable[[str], HostNode | None]


def fill_node(node: CdiDeviceNode, lookup: HostLookup, source: str, at: str) -> OciDevice:
    """The reference's filling of one node from ``lookup`` of its hostPath (or path), which
    returns None when the path is no device node: ``core.cdi_plain.fill_fields`` (the one
    implementation, which the wrapper runtime's cached path calls too)."""
    host = lookup(node.host_path or node.path)
    path, dev_type, major, minor, mode = fill_fields(msgspec.to_builtins(node), host, source, at)
    return OciDevice(path, dev_type, major, minor, mode, node.uid, node.gid)


def resolve(registry: CdiRegistry, names: Sequence[str], lookup: HostLookup) -> CdiResolution:
    """The edits injecting ``names`` makes.  An unknown name is a ``NotFound`` naming the broken
    spec files too (the device may be in one of them)."""
    entries: list[CdiEntry] = []
    for name in names:
        split_qualified(name)
        entry = registry.devices.get(name)
        if entry is None:
            why = "no such CDI device in " + ", ".join(registry.dirs)
            if registry.errors:
                why += f" ({len(registry.errors)} spec file(s) in them could not be read)"
            raise NotFound(why, field="device", value=name)
        entries.append(entry)
    devices: dict[str, OciDevice] = {}
    rules: list[OciDeviceRule] = []
    env: list[str] = []
    mounts: list[CdiMount] = []
    hooks: list[CdiHook] = []
    gids: list[int] = []
    seen_specs: list[str] = []
    scopes: list[tuple[str, str, CdiEdits]] = []
    for entry in entries:
        path = entry.loaded.path
        if path not in seen_specs:
            seen_specs.append(path)
            scopes.append((path, "containerEdits", entry.loaded.spec.container_edits))
        scopes.append((path, f"devices[{entry.index}].containerEdits", entry.device.container_edits))
    for path, at, edits in scopes:
        env.extend(edits.env)
        for j, node in enumerate(edits.device_nodes):
            dev = fill_node(node, lookup, path, f"{at}.deviceNodes[{j}]")
            devices.pop(dev.path, None)  # the reference removes a device of the same path first
            devices[dev.path] = dev
            if dev.type in ("b", "c"):
                access = {"": "rwm", "none": ""}.get(node.permissions, node.permissions)
                rules.append(OciDeviceRule(True, dev.type, dev.major, dev.minor, access))
        mounts.extend(edits.mounts)
        hooks.extend(edits.hooks)
        gids.extend(g for g in edits.additional_gids if g != 0)
    return CdiResolution(
        tuple(names), tuple(seen_specs), tuple(devices.values()), tuple(rules),
        tuple(env), tuple(mounts), tuple(hooks), tuple(gids),
    )  # fmt: skip


def entry_summary(entry: CdiEntry) -> Mapping[str, Any]:
    """The ``cdi list`` JSON object of one device (as declared, nothing read from the host)."""
    spec = entry.loaded.spec
    nodes = [*spec.container_edits.device_nodes, *entry.device.container_edits.device_nodes]
    return {
        "name": entry.name,
        "spec": entry.loaded.path,
        "cdiVersion": spec.cdi_version,
        "deviceNodes": [msgspec.to_builtins(n) for n in nodes],
        "shadows": list(entry.shadows),
    }


def resolution_json(res: CdiResolution) -> dict[str, Any]:
    """``cdi show --json``: the edits laid out as the OCI config.json they go into."""
    return {
        "names": list(res.names),
        "specs": list(res.spec_paths),
        "linux": {
            "devices": msgspec.to_builtins(res.devices),
            "resources": {"devices": msgspec.to_builtins(res.device_rules)},
        },
        "env": list(res.env),
        "mounts": msgspec.to_builtins(res.mounts),
        "hooks": msgspec.to_builtins(res.hooks),
        "additionalGids": list(res.additional_gids),
    }


def _edits_cache(edits: CdiEdits) -> dict[str, Any]:
    return {
        "env": list(edits.env),
        "deviceNodes": msgspec.to_builtins(edits.device_nodes),
        "mounts": msgspec.to_builtins(edits.mounts),
        "hooks": msgspec.to_builtins(edits.hooks),
        "additionalGids": list(edits.additional_gids),
    }


def registry_cache(registry: CdiRegistry) -> dict[str, Any]:
    """What ``core.cdi_plain.resolve_cached`` needs of a validated registry, as plain JSON data:
    each spec's own edits and each device's (the registry's winners; conflicts are absent)."""
    specs = {s.path: _edits_cache(s.spec.container_edits) for s in registry.specs}
    devices = {
        name: {"spec": e.loaded.path, "index": e.index, "edits": _edits_cache(e.device.container_edits)}
        for name, e in registry.devices.items()
    }
    return {"specs": specs, "devices": devices}
