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

from cgdev.errors import InputError, NotFound
from cgdev.ops.layers import Inspection, Layer, ProgramRecord, device_from_json
from cgdev.ops.targets import Target

FORMAT: Final = "cgdev-snapshot"
VERSION: Final = 1


def to_json(inspection: Inspection) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"kernel": platform.release(), "hostname": platform.node()},
        "target": inspection.target.to_json(),
        "systemd": inspection.systemd,
        "systemd_version": inspection.systemd_version,
        "layers": [layer.to_json() for layer in inspection.layers],
        "pins": {path: record.to_json() for path, record in inspection.pins.items()},
        "proc_devices": inspection.proc_devices,
        "v1_devices": None if inspection.v1_devices is None else list(inspection.v1_devices),
        "devices": {path: list(node) for path, node in inspection.devices.items()},
    }


def from_json(data: Any) -> Inspection:
    """Rebuild an Inspection; any structural problem is one InputError naming the field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'not a cgdev snapshot (missing "format": "{FORMAT}")', field="snapshot")
    if data.get("version") != VERSION:
        why = f"version {data.get('version')!r} is not supported (expected {VERSION})"
        raise InputError(why, field="snapshot")
    try:
        v1 = data.get("v1_devices")
        return Inspection(
            target=Target.from_json(data["target"]),
            layers=tuple(Layer.from_json(layer) for layer in data["layers"]),
            proc_devices=str(data.get("proc_devices", "")),
            v1_devices=None if v1 is None else tuple(str(line) for line in v1),
            pins={str(k): ProgramRecord.from_json(v) for k, v in (data.get("pins") or {}).items()},
            devices={
                str(k): device_from_json(v, f"devices.{k}") for k, v in (data.get("devices") or {}).items()
            },
            systemd=str(data.get("systemd", "off")),
            systemd_version=str(data.get("systemd_version") or ""),
        )
    except InputError as err:
        raise InputError(err.why, field="snapshot") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise InputError(f"malformed snapshot ({type(err).__name__}: {err})", field="snapshot") from None


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
