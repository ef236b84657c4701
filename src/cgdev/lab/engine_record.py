"""What the lab knows about a container a real engine (podman, containerd) started in it.

The record crosses boundaries (the CLI's JSON, other front ends' tests: the OCI hook's and the
wrapper runtime's), so it is a msgspec struct, kept as one JSON file per container under the
lab's state dir (``engines/<name>.json``, gone with ``lab down``).  Engine-specific commands live
in ``podman`` and ``containerd``; starting, finding and removing in ``engines``.
"""

from __future__ import annotations

import contextlib
import re
from enum import StrEnum
from pathlib import Path
from typing import Final

import msgspec

from cgdev.errors import InputError
from cgdev.lab.paths import StateFiles

# Inside the lab (its private /run, so everything goes with the lab): the engines' storage,
# state, sockets and the runtime wrappers that carry a runtime's environment.
ENGINES_DIR_IN_LAB: Final = "/run/cgdev-engines"
# containerd's id rule (stricter than the runtimes': no '..', no trailing separator); podman's
# names follow the runtimes' (``runtime.check_container_id``).
_CONTAINERD_ID: Final = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_ANNOTATION_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")


class Engine(StrEnum):
    PODMAN = "podman"
    CONTAINERD = "containerd"


class EngineContainer(msgspec.Struct, frozen=True, kw_only=True):
    """A container an engine runs in the lab: enough to probe, explain, hook and remove it.

    ``pid`` and ``cgroup`` are the lab's view (``Lab.host_cgroup(cgroup)`` is the host path);
    ``bundle`` is the OCI bundle as the lab sees it (its ``config.json`` is the spec the runtime
    got); ``runtime_path`` the binary the engine was told to run (a lab runtime or any path).
    """

    engine: Engine
    name: str
    id: str  # podman's 64-hex id; containerd's id is the name
    runtime: str  # crun, runc, crun-1.8.1, or the basename of a runtime path
    runtime_path: str
    driver: str  # systemd | cgroupfs
    pid: int
    cgroup: str
    scope: str | None
    bundle: str
    annotations: dict[str, str] = {}
    devices: list[str] = []
    hooks_dir: str | None = None
    engine_version: str | None = None  # read from the engine's binary in the lab, never assumed

    @property
    def config_json(self) -> str:
        return f"{self.bundle.rstrip('/')}/config.json"

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=1)


def records_dir(state: StateFiles | None = None) -> Path:
    return (state or StateFiles()).root / "engines"


def save(record: EngineContainer, state: StateFiles | None = None) -> None:
    directory = records_dir(state)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{record.name}.json").write_bytes(record.to_json())


def forget(name: str, state: StateFiles | None = None) -> None:
    (records_dir(state) / f"{name}.json").unlink(missing_ok=True)


def load_all(state: StateFiles | None = None) -> list[EngineContainer]:
    """Every record that reads (a torn or foreign file is skipped, never fatal)."""
    out = []
    for path in sorted(records_dir(state).glob("*.json")):
        with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
            out.append(msgspec.json.decode(path.read_bytes(), type=EngineContainer))
    return out


def find(name: str, state: StateFiles | None = None) -> EngineContainer | None:
    """The record of ``name`` (or of a container whose id is or starts with ``name``)."""
    records = load_all(state)
    for record in records:
        if name in (record.name, record.id):
            return record
    prefixed = [r for r in records if len(name) >= 12 and r.id.startswith(name)]
    return prefixed[0] if len(prefixed) == 1 else None


def check_engine(value: str) -> Engine:
    try:
        return Engine(value)
    except ValueError:
        raise InputError(f"--engine: {value!r} is not one of {', '.join(e.value for e in Engine)}") from None


def check_name(engine: Engine, name: str) -> str:
    """A name both the engine and its runtimes accept (and systemd in the scope's name)."""
    from cgdev.lab.runtime import check_container_id

    check_container_id(name, "--name")
    if engine is Engine.CONTAINERD and not _CONTAINERD_ID.fullmatch(name):
        raise InputError(
            f"--name {name!r}: a containerd id is letters and digits, separated by single '.', '_' or '-'"
        )
    return name


def check_annotation(value: str) -> tuple[str, str]:
    key, sep, text = value.partition("=")
    if not sep or not _ANNOTATION_KEY.fullmatch(key):
        raise InputError(f"--annotation {value!r}: give KEY=VALUE (a key of letters, digits, _ . / -)")
    return key, text


def check_hooks_dir(engine: Engine, value: str | None) -> str | None:
    if value is not None and engine is Engine.CONTAINERD:
        raise InputError(f"--hooks-dir {value!r}: containerd has no hooks directory (podman has)")
    if value is not None and not value.startswith("/"):
        raise InputError(f"--hooks-dir {value!r}: give an absolute path (as the lab sees it)")
    return value


def check_device(engine: Engine, value: str) -> str:
    """podman: ``/dev/x[:/dev/y][:rwm]`` or a CDI name ``vendor/class=name``; containerd: a path."""
    from cgdev.core.cdi import is_qualified_name

    if value.startswith("/") and "\n" not in value:
        return value
    if engine is Engine.PODMAN and is_qualified_name(value):
        return value
    wants = "an absolute device path" + (
        " or a CDI name vendor/class=name" if engine is Engine.PODMAN else ""
    )
    raise InputError(f"--device {value!r}: {engine.value} takes {wants}")
