"""Snapshots: an ``Inspection`` in one JSON file, so explain and show run offline as any user.

A bug report about device access needs what only root could read on the node: the raw programs of
every layer, the unit properties systemd re-applies, /proc/devices, the v1 devices.list and the
container's device nodes.  The snapshot is exactly the ``Inspection`` the live commands compute
on, so an offline answer is the live answer by construction (same code path after collection).
Programs are stored as raw xlated bytes (base64) with their id, name and tag: lifting happens at
read time, so a newer cgdev reads an old snapshot better, never worse.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Final

import msgspec

from cgdev.errors import InputError, NotFound
from cgdev.ops.layers import DeviceNode, Inspection, Layer, ProgramRecord, SystemdStatus
from cgdev.ops.targets import Target

FORMAT: Final = "cgdev-snapshot"
VERSION: Final = 1


class Snapshot(msgspec.Struct, kw_only=True):
    """The file: an ``Inspection`` with a header.  Decoding it is the validation (types, b or c,
    numbers within 32 bits, base64 programs); a field it does not know is ignored."""

    format: str = FORMAT
    version: int = VERSION
    created: str = ""
    host: dict[str, Any] = {}
    target: Target
    systemd: str = SystemdStatus.OFF
    systemd_version: str | None = ""
    layers: tuple[Layer, ...]
    pins: dict[str, ProgramRecord] | None = None
    proc_devices: str = ""
    v1_devices: tuple[str, ...] | None = None
    devices: dict[str, DeviceNode] | None = None


def to_json(inspection: Inspection) -> dict[str, Any]:
    document = Snapshot(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        host={"kernel": platform.release(), "hostname": platform.node()},
        target=inspection.target,
        systemd=inspection.systemd,
        systemd_version=inspection.systemd_version,
        layers=inspection.layers,
        pins=inspection.pins,
        proc_devices=inspection.proc_devices,
        v1_devices=inspection.v1_devices,
        devices=inspection.devices,
    )
    out: dict[str, Any] = msgspec.to_builtins(document)
    return out


def from_json(data: Any) -> Inspection:
    """Rebuild an Inspection; any structural problem is one InputError naming the field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'not a cgdev snapshot (missing "format": "{FORMAT}")', field="snapshot")
    if data.get("version") != VERSION:
        why = f"version {data.get('version')!r} is not supported (expected {VERSION})"
        raise InputError(why, field="snapshot")
    try:
        target = {"spec": "", "kind": "cgroup", **data["target"]}  # what old snapshots may omit
        snap = msgspec.convert({**data, "target": target}, Snapshot)
    except (KeyError, TypeError, ValueError) as err:  # msgspec.ValidationError is a ValueError
        raise InputError(f"malformed snapshot ({type(err).__name__}: {err})", field="snapshot") from None
    return Inspection(
        target=snap.target,
        layers=snap.layers,
        proc_devices=snap.proc_devices,
        v1_devices=snap.v1_devices,
        pins=snap.pins or {},
        devices=snap.devices or {},
        systemd=snap.systemd,
        systemd_version=snap.systemd_version or "",
    )


def dumps(inspection: Inspection) -> str:
    """The snapshot file's text (keys sorted, so two snapshots diff line by line)."""
    return json.dumps(to_json(inspection), indent=1, sort_keys=True) + "\n"


def write(inspection: Inspection, path: str) -> None:
    """Write atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as fh:
            fh.write(dumps(inspection))
        os.replace(tmp, path)
    except OSError as err:
        raise InputError(f"cannot write {path!r}: {err.strerror}", field="output") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read(path: str) -> Inspection:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise NotFound("not found", field="snapshot", value=path) from None
    except OSError as err:
        raise InputError(f"cannot read it: {err.strerror}", field="snapshot", value=path) from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"not JSON ({err})", field="snapshot", value=path) from None
    try:
        return from_json(data)
    except InputError as err:
        raise InputError(err.why, field="snapshot", value=path) from None
