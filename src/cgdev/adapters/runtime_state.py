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
import re
import stat
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from cgdev.adapters import cgroupfs
from cgdev.errors import CgdevError, InputError, NeedsRoot

# The roots each runtime uses when run as root (their --root default).  A root ending in ``/*``
# is a directory of roots: containerd's runc shim keeps one per namespace (``--root
# /run/containerd/runc/<namespace>``), whichever of runc or crun it runs.
DEFAULT_ROOTS: Final[tuple[tuple[str, str], ...]] = (
    ("crun", "/run/crun"),
    ("runc", "/run/runc"),
    ("youki", "/run/youki"),
    ("runc", "/run/containerd/runc/*"),
)
ROOTS_GLOB: Final = "/*"
# A bundle that containers/storage made (podman, CRI-O): ``<storage>/<driver>-containers/<id>/userdata``.
_STORAGE_BUNDLE: Final = re.compile(r"^(.*/[a-z0-9]+-containers)/([0-9a-f]{64})/userdata/?$")

# Annotations engines put a human container name in, most specific first.
NAME_ANNOTATIONS: Final = (
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
    "nerdctl/name",
    "io.podman.annotations.name",
    "org.opencontainers.image.ref.name",
)


class ContainerState(msgspec.Struct, frozen=True):
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
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    state_file: str = ""
    ns_pid: int | None = None  # the pid as recorded, when the runtime runs in another PID namespace
    # The names an engine keeps outside the spec (podman's and CRI-O's containers/storage).
    engine_names: tuple[str, ...] = ()

    @property
    def name(self) -> str | None:
        for key in NAME_ANNOTATIONS:
            if self.annotations.get(key):
                return self.annotations[key]
        return self.engine_names[0] if self.engine_names else None

    def named(self, spec: str) -> bool:
        """Whether ``spec`` is one of this container's names (annotation or engine record)."""
        return spec == self.name or spec in self.engine_names


# -- the on-disk formats: runtime_state_files, imported when a file is read -------------------


def _truthy(value: str | bool) -> bool:
    return value is True or value == "true"


def _bundle_annotations(bundle: str, fs_root: str = "/") -> dict[str, str]:
    """crun keeps annotations only in the bundle's config.json; a vanished bundle has none.

    ``fs_root`` is the runtime's root directory as we see it (``/proc/<pid>/root`` for a
    runtime in other namespaces), since the bundle path is the runtime's.
    """
    if not bundle:
        return {}
    try:
        with open(os.path.join(fs_root, bundle.lstrip("/"), "config.json"), "rb") as fh:
            data = fh.read()
    except OSError:
        return {}
    from cgdev.adapters import runtime_state_files as files

    try:
        return files.decode(data, type=files.BundleConfig).annotations or {}
    except files.DECODE_ERRORS:
        return {}


_FOREIGN_ROOT: Final = re.compile(r"^(/proc/\d+/root)/")


class _StorageNames:
    """containers/storage's ``containers.json`` (id -> names), read once per file version.

    podman 4 puts a container's name in no annotation: its name lives in its engine's records,
    and containers/storage's JSON file beside the bundle is the one of them that is plain JSON
    (libpod's database is BoltDB).  Cached by (path, mtime) so a listing reads each file once.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, dict[str, tuple[str, ...]]]] = {}

    def names(self, bundle: str, container_id: str, fs_root: str = "/") -> tuple[str, ...]:
        match = _STORAGE_BUNDLE.match(bundle)
        if match is None or match.group(2) != container_id:
            return ()
        path = os.path.join(fs_root, match.group(1).lstrip("/"), "containers.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return ()
        cached = self._cache.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, _read_storage_names(path))
            self._cache[path] = cached
        return cached[1].get(container_id, ())


def _read_storage_names(path: str) -> dict[str, tuple[str, ...]]:
    from cgdev.adapters import runtime_state_files as files

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return {}
    try:
        records = files.decode(data, type=list[files.StorageContainer])
    except files.DECODE_ERRORS:
        return {}
    return {r.id: tuple(r.names or ()) for r in records}


_STORAGE = _StorageNames()


def bundle_seen_from_here(bundle: str | None, state_file: str) -> str | None:
    """The bundle path is the runtime's: a runtime whose state we read under ``/proc/PID/root``
    (another mount namespace, the lab) has its bundle under the same root."""
    if not bundle:
        return None
    found = _FOREIGN_ROOT.match(state_file)
    return os.path.join(found.group(1), bundle.lstrip("/")) if found else bundle


def parse_crun_status(
    container_id: str, data: bytes, state_file: str = "", fs_root: str = "/"
) -> ContainerState:
    from cgdev.adapters import runtime_state_files as files

    status = files.decode(data, type=files.CrunStatus)
    return ContainerState(
        runtime="crun",
        id=container_id,
        pid=status.pid or None,
        cgroup=status.cgroup_path or None,
        bundle=status.bundle or None,
        systemd_cgroup=_truthy(status.systemd_cgroup),
        annotations=_bundle_annotations(status.bundle, fs_root),
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
    from cgdev.adapters import runtime_state_files as files

    state = files.decode(data, type=files.RuncState)
    config = state.config or files.RuncConfig()
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
    from cgdev.adapters import runtime_state_files as files

    state = files.decode(data, type=files.OciState)
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


def read_container(runtime: str, state_dir: str, fs_root: str = "/") -> ContainerState | None:
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
        from cgdev.adapters import runtime_state_files as files

        try:
            if filename == "status":
                state = parse_crun_status(container_id, data, path, fs_root)
            else:
                state = parse_state_json(data, path, runtime)
        except files.DECODE_ERRORS:
            return None
        names = _STORAGE.names(state.bundle, state.id, fs_root) if state.bundle else ()
        return msgspec.structs.replace(state, engine_names=names) if names else state
    return None


def runtime_roots(extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The default roots plus each ``--runtime-root DIR`` (named after its directory)."""
    roots = list(DEFAULT_ROOTS)
    for root in extra:
        try:
            is_dir = stat.S_ISDIR(os.stat(root).st_mode)
        except PermissionError:
            raise NeedsRoot(f"--runtime-root: {root!r}: reading it needs root") from None
        except OSError:
            is_dir = False
        if not is_dir:
            raise InputError(f"--runtime-root: {root!r} is not a directory")
        roots.append((os.path.basename(root.rstrip("/")) or root, root))
    return roots


def list_containers(roots: Sequence[tuple[str, str]] | None = None) -> list[ContainerState]:
    """Every container found under the given ``(runtime, root)`` pairs (missing roots are empty).

    Pids are host pids (ours): a root reached through ``/proc/<pid>/root`` of a process in
    another PID namespace has its recorded pids translated (``ns_pid`` keeps the recorded one).
    """
    found: list[ContainerState] = []
    for runtime, root in _expand(DEFAULT_ROOTS if roots is None else roots):
        try:
            with os.scandir(root) as entries:
                dirs = sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise NeedsRoot(f"listing runtime state in {root} needs root") from None
        holder = foreign_namespace_holder(root)
        fs_root = "/" if holder is None else f"/proc/{holder}/root"
        for state_dir in dirs:
            state = read_container(runtime, state_dir, fs_root)
            if state is not None:
                found.append(state if holder is None else to_host(state, holder))
    return found


def _expand(roots: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each ``DIR/*`` root replaced by the directories in ``DIR`` (none when it is missing)."""
    out: list[tuple[str, str]] = []
    for runtime, root in roots:
        if not root.endswith(ROOTS_GLOB):
            out.append((runtime, root))
            continue
        parent = root[: -len(ROOTS_GLOB)] or "/"
        try:
            with os.scandir(parent) as entries:
                out += sorted((runtime, e.path) for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise NeedsRoot(f"listing runtime state in {parent} needs root") from None
    return out


# -- runtimes in another PID namespace (a lab, a node inside a container) --------------------------

_PROC_ROOT: Final = re.compile(r"^/proc/(\d+)/root(?:/|$)")


def _ns(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def foreign_namespace_holder(root: str) -> int | None:
    """The process a runtime root is reached through, when its PID namespace is not ours.

    ``/proc/<pid>/root/run/crun`` is the state of a runtime that runs in ``<pid>``'s namespaces:
    the pids it recorded are pids of that namespace, meaningless (or another process) here.
    """
    match = _PROC_ROOT.match(os.path.normpath(root))
    if match is None:
        return None
    holder = int(match.group(1))
    theirs = _ns(holder, "pid")
    return holder if theirs is not None and theirs != _ns("self", "pid") else None


def ns_pids(pid: int) -> list[int]:
    """``NSpid`` of a process: its pid in our namespace first, then in each nested one."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def _holder_cgroup2_mount(holder: int) -> str | None:
    try:
        with open(f"/proc/{holder}/mountinfo") as fh:
            text = fh.read()
    except OSError:
        return None
    for mount in cgroupfs.parse_mountinfo(text):
        if mount.fstype == "cgroup2":
            return mount.mountpoint
    return None


def _recorded_cgroup(state: ContainerState, holder: int) -> str | None:
    """The state's cgroup relative to the runtime's cgroup2 root (runc records a mount path)."""
    if state.cgroup is None:
        return None
    mount = _holder_cgroup2_mount(holder)
    if mount and state.cgroup.startswith(mount.rstrip("/") + "/"):
        return state.cgroup[len(mount.rstrip("/")) :]
    return "/" + state.cgroup.strip("/")


def _pid_in(cgroup_dir: str, depth: int, ns_pid: int) -> int | None:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as fh:
            pids = [int(x) for x in fh.read().split()]
    except OSError:
        return None
    for pid in pids:
        chain = ns_pids(pid)
        if len(chain) > depth and chain[depth] == ns_pid:
            return pid
    return None


def host_pid(ns_pid: int, holder: int, recorded_cgroup: str | None) -> int | None:
    """Our pid of the process that is ``ns_pid`` in ``holder``'s PID namespace, or None (gone).

    Only processes in the holder's cgroup subtree are candidates, and each is checked through
    its ``NSpid``: first the cgroup the runtime recorded, placed under each ancestor of the
    holder's cgroup (its cgroup namespace root is one of them), then that whole subtree.
    """
    depth = len(ns_pids(holder)) - 1
    if depth < 1:
        return None
    mount = cgroupfs.cgroup2_mount()
    try:
        holder_dirs = cgroupfs.ancestors(cgroupfs.process_cgroup(holder), mount=mount)[1:]
    except CgdevError:
        return None
    if recorded_cgroup is not None:
        for base in reversed(holder_dirs):
            found = _pid_in(base + recorded_cgroup.rstrip("/"), depth, ns_pid)
            if found is not None:
                return found
    for cgroup_dir in cgroupfs.walk(holder_dirs[0]) if holder_dirs else ():
        found = _pid_in(cgroup_dir, depth, ns_pid)
        if found is not None:
            return found
    return None


def to_host(state: ContainerState, holder: int) -> ContainerState:
    """The state with our pid and our cgroup path (None when its process is gone)."""
    recorded = _recorded_cgroup(state, holder)
    pid = None if state.pid is None else host_pid(state.pid, holder, recorded)
    cgroup = None
    if pid is not None:
        try:
            cgroup = cgroupfs.process_cgroup(pid)
        except CgdevError:
            pid = None
    return msgspec.structs.replace(state, pid=pid, cgroup=cgroup, ns_pid=state.pid)
