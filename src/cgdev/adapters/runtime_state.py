"""What OCI runtimes record about their running containers: id, init pid, cgroup, annotations.

A user names a container by the id they gave the runtime, or by a name an engine put in its
annotations; cgdev has to turn that into a cgroup.  Each runtime keeps one state directory per
container under its root: crun ``<root>/<id>/status``, runc ``<root>/<id>/state.json`` (with the
whole libcontainer config), youki ``<root>/<id>/state.json`` (OCI state, camelCase).  The files
are parsed with msgspec into small typed structs that ignore every field cgdev does not need, so a
newer runtime adding fields never breaks us; a file that is not what it claims is skipped (another
tool may share the directory), never fatal.

The init pid is the most reliable way to the cgroup (``/proc/<pid>/cgroup``): the runtime's own
cgroup field is relative to the cgroup namespace the runtime ran in, which differs from ours in a
lab or a nested setup.  Both are returned; the caller decides.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from cgdev.errors import InputError, NeedsRoot

# The roots each runtime uses when run as root (their --root default).
DEFAULT_ROOTS: Final[tuple[tuple[str, str], ...]] = (
    ("crun", "/run/crun"),
    ("runc", "/run/runc"),
    ("youki", "/run/youki"),
)

# Annotations engines put a human container name in, most specific first.
NAME_ANNOTATIONS: Final = (
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
    "nerdctl/name",
    "io.podman.annotations.name",
    "org.opencontainers.image.ref.name",
)


@dataclass(frozen=True, slots=True)
class ContainerState:
    """One container as its runtime recorded it.

    ``cgroup`` is the runtime's own record: relative to *its* cgroup2 root (crun, youki) or an
    absolute host path (runc's ``cgroup_paths``); None when the runtime keeps none.
    """

    runtime: str
    id: str
    pid: int | None
    cgroup: str | None
    bundle: str | None
    systemd_cgroup: bool
    annotations: dict[str, str] = field(default_factory=dict)
    state_file: str = ""

    @property
    def name(self) -> str | None:
        for key in NAME_ANNOTATIONS:
            if self.annotations.get(key):
                return self.annotations[key]
        return None


# -- the on-disk formats (only the fields used) ------------------------------------------------


class _CrunStatus(msgspec.Struct, rename={"cgroup_path": "cgroup-path", "systemd_cgroup": "systemd-cgroup"}):
    pid: int = 0
    cgroup_path: str = ""
    bundle: str = ""
    systemd_cgroup: str | bool = False  # crun writes the string "true"/"false"


class _RuncCgroups(msgspec.Struct):
    path: str = ""
    name: str = ""
    parent: str = ""
    Systemd: bool = False


class _RuncConfig(msgspec.Struct):
    labels: list[str] | None = None
    cgroups: _RuncCgroups | None = None


class _RuncState(msgspec.Struct):
    id: str
    init_process_pid: int = 0
    cgroup_paths: dict[str, str] | None = None
    config: _RuncConfig | None = None


class _OciState(msgspec.Struct, rename="camel"):
    """youki's state.json (and any runtime writing the plain OCI state there)."""

    id: str
    pid: int | None = None
    bundle: str = ""
    annotations: dict[str, str] | None = None
    use_systemd: bool = False


class _Config(msgspec.Struct):
    annotations: dict[str, str] | None = None


def _truthy(value: str | bool) -> bool:
    return value is True or value == "true"


def _bundle_annotations(bundle: str) -> dict[str, str]:
    """crun keeps annotations only in the bundle's config.json; a vanished bundle has none."""
    if not bundle:
        return {}
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fh:
            return msgspec.json.decode(fh.read(), type=_Config).annotations or {}
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return {}


def parse_crun_status(container_id: str, data: bytes, state_file: str = "") -> ContainerState:
    status = msgspec.json.decode(data, type=_CrunStatus)
    return ContainerState(
        runtime="crun",
        id=container_id,
        pid=status.pid or None,
        cgroup=status.cgroup_path or None,
        bundle=status.bundle or None,
        systemd_cgroup=_truthy(status.systemd_cgroup),
        annotations=_bundle_annotations(status.bundle),
        state_file=state_file,
    )


def _labels(labels: Iterable[str]) -> dict[str, str]:
    out = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if sep:
            out[key] = value
    return out


def parse_runc_state(data: bytes, state_file: str = "", runtime: str = "runc") -> ContainerState:
    state = msgspec.json.decode(data, type=_RuncState)
    config = state.config or _RuncConfig()
    labels = _labels(config.labels or ())
    cgroup = (state.cgroup_paths or {}).get("")
    return ContainerState(
        runtime=runtime,
        id=state.id,
        pid=state.init_process_pid or None,
        cgroup=cgroup or None,
        bundle=labels.pop("bundle", None),
        systemd_cgroup=bool(config.cgroups and config.cgroups.Systemd),
        annotations=labels,
        state_file=state_file,
    )


def parse_oci_state(data: bytes, state_file: str = "", runtime: str = "youki") -> ContainerState:
    state = msgspec.json.decode(data, type=_OciState)
    return ContainerState(
        runtime=runtime,
        id=state.id,
        pid=state.pid or None,
        cgroup=None,
        bundle=state.bundle or None,
        systemd_cgroup=state.use_systemd,
        annotations=dict(state.annotations or {}),
        state_file=state_file,
    )


def parse_state_json(data: bytes, state_file: str = "", runtime: str = "runc") -> ContainerState:
    """runc's libcontainer state or a plain OCI state: told apart by runc's ``init_process_pid``."""
    if b'"init_process_pid"' in data:
        return parse_runc_state(data, state_file, runtime)
    return parse_oci_state(data, state_file, "youki" if runtime == "runc" else runtime)


def read_container(runtime: str, state_dir: str) -> ContainerState | None:
    """The state in one ``<root>/<id>`` directory; None when it holds no state we can read."""
    container_id = os.path.basename(state_dir.rstrip("/"))
    for filename in ("status", "state.json"):
        path = os.path.join(state_dir, filename)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise NeedsRoot(f"reading runtime state {path} needs root") from None
        try:
            if filename == "status":
                return parse_crun_status(container_id, data, path)
            return parse_state_json(data, path, runtime)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
    return None


def runtime_roots(extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The default roots plus each ``--runtime-root DIR`` (named after its directory)."""
    roots = list(DEFAULT_ROOTS)
    for root in extra:
        if not os.path.isdir(root):
            raise InputError(f"--runtime-root: {root!r} is not a directory")
        roots.append((os.path.basename(root.rstrip("/")) or root, root))
    return roots


def list_containers(roots: Sequence[tuple[str, str]] | None = None) -> list[ContainerState]:
    """Every container found under the given ``(runtime, root)`` pairs (missing roots are empty)."""
    found: list[ContainerState] = []
    for runtime, root in DEFAULT_ROOTS if roots is None else roots:
        try:
            with os.scandir(root) as entries:
                dirs = sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise NeedsRoot(f"listing runtime state in {root} needs root") from None
        for state_dir in dirs:
            state = read_container(runtime, state_dir)
            if state is not None:
                found.append(state)
    return found
