"""CDI resolution over plain data: the wrapper runtime's claim path without msgspec.

Why: msgspec's import alone (its C core imports inspect, typing_extensions, decimal, uuid, datetime)
costs the wrapper runtime more than its target for a whole ``create``.  The strict reading of the
spec files (``cgdev.core.cdi``, msgspec structs) still happens, once per change of the node's CDI
directories: it writes what it validated into a cache (``cgdev.adapters.cdi_cache``) and this module
resolves names from that cache, as plain dicts, into objects with the attribute names of
``core.cdi``'s ``OciDevice``, ``OciDeviceRule``, ``CdiMount``, ``CdiHook`` and ``CdiResolution``,
which ``core.spec_edit`` applies the same way.

The cache is a dict ``{"specs": {path: edits}, "devices": {name: {"spec": path, "index": i,
"edits": edits}}}`` where ``edits`` is ``{"env", "deviceNodes", "mounts", "hooks",
"additionalGids"}`` in the spec's JSON names, defaults omitted (``registry_cache`` in core.cdi).
``fill_fields`` is the one implementation of the reference's node filling; ``core.cdi.fill_node``
calls it too.  Host lookups happen at every resolution (never cached): a node's numbers are the
host's at create time.

Pure (no I/O; the host lookup is passed in) and free of typing/msgspec imports at run time.
"""

from __future__ import annotations

from cgdev.errors import EnvError, InputError

TYPE_CHECKING = False  # typing and collections.abc cost the wrapper runtime more than this module
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Protocol

    class HostInfo(Protocol):
        @property
        def type(self) -> str: ...
        @property
        def major(self) -> int: ...
        @property
        def minor(self) -> int: ...
        @property
        def mode(self) -> int: ...


class PlainHostNode:
    """What ``lstat`` says of a host path (= ``core.cdi.HostNode``, without msgspec)."""

    __slots__ = ("major", "minor", "mode", "type")

    def __init__(self, type: str, major: int, minor: int, mode: int) -> None:  # the OCI name
        self.type, self.major, self.minor, self.mode = type, major, minor, mode


class _Plain:
    """Attribute access, equality and a repr by fields (what the msgspec structs give)."""

    __slots__: tuple[str, ...] = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Plain) and type(other) is type(self) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._key()!r}"


class PlainDevice(_Plain):
    """One ``linux.devices`` entry (= ``core.cdi.OciDevice``)."""

    __slots__ = ("file_mode", "gid", "major", "minor", "path", "type", "uid")

    def __init__(
        self, path: str, type: str, major: int, minor: int,  # the OCI name
        file_mode: int | None, uid: int | None, gid: int | None,
    ) -> None:  # fmt: skip
        self.path, self.type, self.major, self.minor = path, type, major, minor
        self.file_mode, self.uid, self.gid = file_mode, uid, gid


class PlainRule(_Plain):
    """One allow rule (= ``core.cdi.OciDeviceRule``; ``access`` "" for ``none``)."""

    __slots__ = ("access", "allow", "major", "minor", "type")

    def __init__(self, type: str, major: int, minor: int, access: str) -> None:
        self.allow, self.type, self.major, self.minor, self.access = True, type, major, minor, access


class PlainMount(_Plain):
    """= ``core.cdi.CdiMount``."""

    __slots__ = ("container_path", "host_path", "options", "type")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.host_path, self.container_path = doc["hostPath"], doc["containerPath"]
        self.options, self.type = list(doc.get("options", ())), doc.get("type", "")


class PlainHook(_Plain):
    """= ``core.cdi.CdiHook``."""

    __slots__ = ("args", "env", "hook_name", "path", "timeout")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.hook_name, self.path = doc["hookName"], doc["path"]
        self.args, self.env = list(doc.get("args", ())), list(doc.get("env", ()))
        self.timeout = doc.get("timeout")


class PlainResolution:
    """= ``core.cdi.CdiResolution`` after ``node_policy.merge`` with no grants (rules once each)."""

    __slots__ = (
        "additional_gids", "device_rules", "devices", "env", "hooks", "mounts", "names", "spec_paths",
    )  # fmt: skip

    def __init__(
        self, names: tuple[str, ...], spec_paths: tuple[str, ...], devices: tuple[PlainDevice, ...],
        device_rules: tuple[PlainRule, ...], env: tuple[str, ...], mounts: tuple[PlainMount, ...],
        hooks: tuple[PlainHook, ...], additional_gids: tuple[int, ...],
    ) -> None:  # fmt: skip
        self.names, self.spec_paths = names, spec_paths
        self.devices, self.device_rules = devices, device_rules
        self.env, self.mounts, self.hooks, self.additional_gids = env, mounts, hooks, additional_gids


def fill_fields(
    node: dict[str, Any], host: HostInfo | None, source: str, at: str
) -> tuple[str, str, int, int, int | None]:
    """The reference's filling of one ``deviceNodes`` entry (JSON names, defaults omitted) from
    ``host`` (the ``lstat`` of hostPath, or path; None when absent): (path, type, major, minor,
    fileMode).  A node with a type and a major (or a fifo) is complete and keeps its numbers, only
    a missing fileMode is taken from the host; otherwise type and, when major is 0, major and minor
    come from the host node, which must exist and be of the declared type."""
    path, host_path = node["path"], node.get("hostPath", "")
    node_type, major, minor = node.get("type", ""), node.get("major", 0), node.get("minor", 0)
    file_mode = node.get("fileMode")
    minimal = node_type != "" and (major != 0 or node_type == "p")
    if host is None or host.type == "":
        if not minimal:
            # The spec is fine; the node it names is not there (driver not loaded): environment.
            why = "no device node on the host to take type/major/minor from"
            field = f"{source}: {at}.hostPath" if host_path else f"{source}: {at}.path"
            raise EnvError(why, field=field, value=host_path or path)
        return path, node_type, major, minor, file_mode
    mode = file_mode if file_mode is not None else host.mode
    if minimal:
        return path, node_type, major, minor, mode
    dev_type = node_type or host.type
    if dev_type != host.type:
        why = f"the host node {host_path or path} is of type {host.type}"
        raise InputError(why, field=f"{source}: {at}.type", value=node_type)
    # A fifo keeps its (meaningless) numbers; a major of 0 means "take both from the host".
    if dev_type != "p" and major == 0:
        major, minor = host.major, host.minor
    return path, dev_type, major, minor, mode


def resolve_cached(
    cache: dict[str, Any], names: Sequence[str], lookup: Callable[[str], HostInfo | None]
) -> PlainResolution | None:
    """The edits injecting ``names`` makes, as ``core.cdi.resolve`` then ``node_policy.merge``
    give them; None when a name is not in the cache (the full reader says why).  A host node that
    does not fit raises as ``core.cdi.resolve`` does."""
    devices_of, specs = cache["devices"], cache["specs"]
    scopes: list[tuple[str, str, dict[str, Any]]] = []
    seen_specs: list[str] = []
    for name in names:
        entry = devices_of.get(name)
        if entry is None:
            return None
        path = entry["spec"]
        if path not in seen_specs:
            seen_specs.append(path)
            scopes.append((path, "containerEdits", specs[path]))
        scopes.append((path, f"devices[{entry['index']}].containerEdits", entry["edits"]))
    devices: dict[str, PlainDevice] = {}
    rules: dict[PlainRule, None] = {}
    env: list[str] = []
    mounts: list[PlainMount] = []
    hooks: list[PlainHook] = []
    gids: list[int] = []
    for path, at, edits in scopes:
        env.extend(edits.get("env", ()))
        for j, node in enumerate(edits.get("deviceNodes", ())):
            host = lookup(node.get("hostPath") or node["path"])
            dev_path, dev_type, major, minor, mode = fill_fields(node, host, path, f"{at}.deviceNodes[{j}]")
            devices.pop(dev_path, None)  # the reference removes a device of the same path first
            uid, gid = node.get("uid"), node.get("gid")
            devices[dev_path] = PlainDevice(dev_path, dev_type, major, minor, mode, uid, gid)
            if dev_type in ("b", "c"):
                perms = node.get("permissions", "")
                access = {"": "rwm", "none": ""}.get(perms, perms)
                rules[PlainRule(dev_type, major, minor, access)] = None
        mounts.extend(PlainMount(m) for m in edits.get("mounts", ()))
        hooks.extend(PlainHook(h) for h in edits.get("hooks", ()))
        gids.extend(g for g in edits.get("additionalGids", ()) if g != 0)
    return PlainResolution(
        tuple(names), tuple(seen_specs), tuple(devices.values()), tuple(rules),
        tuple(env), tuple(mounts), tuple(hooks), tuple(gids),
    )  # fmt: skip
