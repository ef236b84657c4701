"""Injecting a CDI resolution into an OCI config.json document, as the CDI reference library does.

Why a spec edit at all: the device in the spec (``linux.devices`` + ``linux.resources.devices``) is
the one grant every layer and every reload agree on (DESIGN.md §10); the wrapper runtime writes it
before the real runtime reads the bundle.  The edit follows the reference's ``ContainerEdits.Apply``
(cncf-tags/container-device-interface) in order and effect, with three differences, each because
the edit must be safe to repeat and must never widen anything:

- an existing ``linux.devices`` entry of the same path but another type/major/minor is an input
  error (the reference silently replaces it: an image could otherwise have its node re-pointed);
- a rule, hook or gid already in place is not added again, so applying twice is applying once (the
  reference appends rules and hooks each time);
- a ``permissions: none`` node gets its node but no rule (the reference's empty-access allow grants
  nothing, and runc refuses an empty access).

A rule counts as "already in place" only when an identical allow sits after the list's last deny:
then nothing after it can take it back, so appending it again would not change the policy.

Pure: the document is a decoded ``dict`` and a new one is returned; the input is not modified.
Free of msgspec at run time: the resolution is read by attribute only, so the wrapper runtime's
cached claim path applies ``core.cdi_plain``'s plain objects without importing msgspec.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping

from cgdev.errors import InputError

TYPE_CHECKING = False  # typing and core.cdi (msgspec) would cost the wrapper runtime's claim path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from cgdev.core.cdi import CdiHook, CdiMount, CdiResolution, OciDevice, OciDeviceRule
    from cgdev.core.cdi_plain import PlainResolution

    Resolution = CdiResolution | PlainResolution

# CDI hook names -> the OCI ``hooks`` keys they go to (the reference maps them one to one).
_HOOK_STAGES = {
    "prestart": "prestart",
    "createRuntime": "createRuntime",
    "createContainer": "createContainer",
    "startContainer": "startContainer",
    "poststart": "poststart",
    "poststop": "poststop",
}


class SpecEdit:
    """The edited document and what the edit added (for the one log line a front end writes).
    A plain class, not a msgspec struct: the wrapper runtime's cached claim path has no msgspec."""

    __slots__ = ("config", "devices", "other", "rules")

    def __init__(
        self,
        config: dict[str, Any],
        devices: tuple[str, ...] = (),  # paths of linux.devices entries added or replaced
        rules: tuple[OciDeviceRule, ...] = (),  # allow rules appended to linux.resources.devices
        other: tuple[str, ...] = (),  # "env NAME", "mount /x", "hook createRuntime /p", "gid 44"
    ) -> None:
        self.config, self.devices, self.rules, self.other = config, devices, rules, other

    @property
    def changed(self) -> bool:
        return bool(self.devices or self.rules or self.other)


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``parent[key]`` as an object, created when absent; anything else there is an input error."""
    node = parent.get(key)
    if node is None:
        node = parent[key] = {}
    if not isinstance(node, dict):
        raise InputError("expected an object", field=f"config: {where}", value=_short(node))
    return node


def _list(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    node = parent.get(key)
    if node is None:
        node = parent[key] = []
    if not isinstance(node, list):
        raise InputError("expected a list", field=f"config: {where}", value=_short(node))
    return node


def _short(value: object) -> object:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


def _device_json(dev: OciDevice, uid: int, gid: int) -> dict[str, Any]:
    out: dict[str, Any] = {"path": dev.path, "type": dev.type, "major": dev.major, "minor": dev.minor}
    if dev.file_mode is not None:
        out["fileMode"] = dev.file_mode
    # As the reference: a node without uid/gid belongs to the process's user when that is not root.
    if dev.uid is not None or uid > 0:
        out["uid"] = dev.uid if dev.uid is not None else uid
    if dev.gid is not None or gid > 0:
        out["gid"] = dev.gid if dev.gid is not None else gid
    return out


def _same_node(entry: Mapping[str, Any], dev: OciDevice) -> bool:
    return (entry.get("type"), entry.get("major", 0), entry.get("minor", 0)) == (
        dev.type,
        dev.major,
        dev.minor,
    )


def _rule_json(rule: OciDeviceRule) -> dict[str, Any]:
    return {"allow": True, "type": rule.type, "major": rule.major, "minor": rule.minor, "access": rule.access}


def _rule_in_place(rules: list[Any], wanted: dict[str, Any]) -> bool:
    """An identical allow after the last deny: nothing later can take it back."""
    for entry in reversed(rules):
        if entry == wanted:
            return True
        if not isinstance(entry, Mapping) or entry.get("allow") is not True:
            return False
    return False


def _mount_json(mount: CdiMount) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": mount.container_path, "source": mount.host_path}
    if mount.options:
        out["options"] = list(mount.options)
    if mount.type:
        out["type"] = mount.type
    return out


def _mount_order(mount: Any) -> tuple[int, str]:
    """The reference's ``orderedMounts``: fewer path components first, then by destination."""
    dest = mount.get("destination", "") if isinstance(mount, Mapping) else ""
    dest = dest if isinstance(dest, str) else ""
    return posixpath.normpath(dest or ".").count("/"), dest


def _hook_json(hook: CdiHook) -> dict[str, Any]:
    out: dict[str, Any] = {"path": hook.path}
    if hook.args:
        out["args"] = list(hook.args)
    if hook.env:
        out["env"] = list(hook.env)
    if hook.timeout is not None:
        out["timeout"] = hook.timeout
    return out


def _user_id(process: Mapping[str, Any], key: str) -> int:
    user = process.get("user")
    value = user.get(key, 0) if isinstance(user, Mapping) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def apply_resolution(config: Mapping[str, Any], res: Resolution) -> SpecEdit:
    """``config`` with ``res`` injected; an ``InputError`` (field ``config: ...``) when the document
    cannot take it (a section of the wrong type, a conflicting node)."""
    if not isinstance(config, Mapping):
        raise InputError("expected an object", field="config", value=_short(config))
    doc: dict[str, Any] = copy.deepcopy(dict(config))
    process = doc.get("process")
    if process is not None and not isinstance(process, dict):
        raise InputError("expected an object", field="config: process", value=_short(process))
    flat = _collapsed(res)
    other: list[str] = []
    if flat.env:
        other += _inject_env(_list(_obj(doc, "process", "process"), "env", "process.env"), flat.env)
    devices: list[str] = []
    rules: list[OciDeviceRule] = []
    if flat.devices or flat.device_rules:
        linux = _obj(doc, "linux", "linux")
        if flat.devices:
            uid, gid = _user_id(process or {}, "uid"), _user_id(process or {}, "gid")
            devices = _inject_devices(_list(linux, "devices", "linux.devices"), flat.devices, uid, gid)
        resources = _obj(linux, "resources", "linux.resources")
        rules = _inject_rules(_list(resources, "devices", "linux.resources.devices"), flat.device_rules)
    if flat.mounts:
        other += _inject_mounts(_list(doc, "mounts", "mounts"), flat.mounts)
    if flat.hooks:
        other += _inject_hooks(_obj(doc, "hooks", "hooks"), flat.hooks)
    if flat.additional_gids:
        user = _obj(_obj(doc, "process", "process"), "user", "process.user")
        other += _inject_gids(
            _list(user, "additionalGids", "process.user.additionalGids"), flat.additional_gids
        )
    return SpecEdit(doc, tuple(devices), tuple(rules), tuple(other))


class _Collapsed:
    __slots__ = ("additional_gids", "device_rules", "devices", "env", "hooks", "mounts")

    def __init__(self, res: Resolution, env: Any, devices: Any, mounts: Any) -> None:
        self.env: tuple[str, ...] = tuple(env)
        self.devices: tuple[Any, ...] = tuple(devices)  # OciDevice or PlainDevice: read by attribute
        self.mounts: tuple[Any, ...] = tuple(mounts)
        self.device_rules: tuple[Any, ...] = res.device_rules
        self.hooks: tuple[Any, ...] = res.hooks
        self.additional_gids: tuple[int, ...] = res.additional_gids


def _collapsed(res: Resolution) -> _Collapsed:
    """The resolution with each env name, node path and mount point once, as applying it in order
    would leave them (a later one wins), so an edit's report lists each change once."""
    env: dict[str, str] = {}
    for var in res.env:
        env[var.partition("=")[0]] = var
    devices: dict[str, Any] = {}
    for dev in res.devices:
        devices.pop(dev.path, None)
        devices[dev.path] = dev
    mounts: dict[str, Any] = {}
    for mount in res.mounts:
        mounts.pop(mount.container_path, None)
        mounts[mount.container_path] = mount
    return _Collapsed(res, env.values(), devices.values(), mounts.values())


def _inject_env(env: list[Any], wanted: Sequence[str]) -> list[str]:
    """``AddMultipleProcessEnv``: a variable of the same name is replaced, else appended."""
    out = []
    for var in wanted:
        prefix = var.partition("=")[0] + "="
        at = next((i for i, e in enumerate(env) if isinstance(e, str) and e.startswith(prefix)), None)
        if at is not None and env[at] == var:
            continue
        if at is None:
            env.append(var)
        else:
            env[at] = var
        out.append(f"env {prefix[:-1]}")
    return out


def _inject_devices(devices: list[Any], wanted: Sequence[OciDevice], uid: int, gid: int) -> list[str]:
    """``RemoveDevice`` + ``AddDevice``: one entry per path, at the end; an entry already there once
    and identical stays where it is (so a second edit changes nothing)."""
    out = []
    for dev in wanted:
        entry_json = _device_json(dev, uid, gid)
        same = []
        for i, entry in enumerate(devices):
            if not isinstance(entry, Mapping):
                raise InputError(
                    "expected an object", field=f"config: linux.devices[{i}]", value=_short(entry)
                )
            if entry.get("path") != dev.path:
                continue
            if not _same_node(entry, dev):
                now = f"{entry.get('type')} {entry.get('major')}:{entry.get('minor')}"
                why = f"is {now} in the spec but {dev.type} {dev.major}:{dev.minor} in CDI"
                raise InputError(why, field=f"config: linux.devices[{i}].path", value=dev.path)
            same.append(entry)
        if same == [entry_json]:
            continue
        devices[:] = [e for e in devices if e.get("path") != dev.path]
        devices.append(entry_json)
        out.append(dev.path)
    return out


def _inject_rules(rules: list[Any], wanted: Sequence[OciDeviceRule]) -> list[OciDeviceRule]:
    out = []
    for rule in wanted:
        if not rule.access:
            continue  # permissions "none": the node without access
        rule_json = _rule_json(rule)
        if not _rule_in_place(rules, rule_json):
            rules.append(rule_json)
            out.append(rule)
    return out


def _inject_mounts(mounts: list[Any], wanted: Sequence[CdiMount]) -> list[str]:
    """``RemoveMount`` + ``AddMount``, then the reference's stable sort of every mount."""
    out = []
    for mount in wanted:
        mount_json = _mount_json(mount)
        here = [m for m in mounts if isinstance(m, Mapping) and m.get("destination") == mount.container_path]
        if here == [mount_json]:
            continue
        mounts[:] = [m for m in mounts if not any(m is h for h in here)]
        mounts.append(mount_json)
        out.append(f"mount {mount.container_path}")
    mounts.sort(key=_mount_order)
    return out


def _inject_hooks(hooks: dict[str, Any], wanted: Sequence[CdiHook]) -> list[str]:
    out = []
    for hook in wanted:
        stage = _HOOK_STAGES[hook.hook_name]
        entries = _list(hooks, stage, f"hooks.{stage}")
        hook_json = _hook_json(hook)
        if hook_json not in entries:
            entries.append(hook_json)
            out.append(f"hook {stage} {hook.path}")
    return out


def _inject_gids(gids: list[Any], wanted: Sequence[int]) -> list[str]:
    out = []
    for g in wanted:
        if g != 0 and g not in gids:
            gids.append(g)
            out.append(f"gid {g}")
    return out
