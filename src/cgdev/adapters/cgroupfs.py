"""Where the cgroup hierarchies are, and which cgroup a process is in.

Mount points are always discovered from /proc/self/mountinfo, never assumed: cgroup2 is at
/sys/fs/cgroup on a pure-v2 host but at /sys/fs/cgroup/unified in the hybrid layout, and a lab or a
container may mount it elsewhere.  Device programs apply to every cgroup from the mount root down to
a process's own, so ``ancestors`` is the list an explanation walks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import msgspec

from cgdev.errors import EnvError, InputError, NeedsRoot, NotFound

MOUNTINFO = "/proc/self/mountinfo"


class Mount(msgspec.Struct, frozen=True):
    """One line of mountinfo, reduced to what cgroup discovery needs."""

    root: str
    mountpoint: str
    fstype: str
    super_options: tuple[str, ...]


def _unescape(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\ooo`` octal."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; optional fields end at the lone ``-`` separator."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        mounts.append(
            Mount(
                root=_unescape(fields[3]),
                mountpoint=_unescape(fields[4]),
                fstype=fields[sep + 1],
                super_options=tuple(fields[sep + 3].split(",")),
            )
        )
    return mounts


def mounts() -> list[Mount]:
    with open(MOUNTINFO) as fh:
        return parse_mountinfo(fh.read())


def cgroup2_mount() -> str:
    """The cgroup2 mount point (pure v2 or hybrid); a mount of the hierarchy root is preferred."""
    candidates = [m for m in mounts() if m.fstype == "cgroup2"]
    if not candidates:
        raise EnvError("no cgroup2 mount in /proc/self/mountinfo (device programs need cgroup v2)")
    for mount in candidates:
        if mount.root == "/":
            return mount.mountpoint
    return candidates[0].mountpoint


def v1_mount(controller: str) -> str | None:
    """Mount point of a v1 hierarchy carrying ``controller`` (or ``name=systemd``), if any."""
    for mount in mounts():
        if mount.fstype == "cgroup" and controller in mount.super_options:
            return mount.mountpoint
    return None


def _read_proc_cgroup(pid: int) -> list[tuple[str, str, str]]:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InputError(f"pid: {pid!r} is not a positive integer")
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise NotFound(f"process {pid} not found") from None
    except PermissionError:
        raise NeedsRoot(f"reading /proc/{pid}/cgroup needs root") from None
    entries = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        entries.append((hierarchy, controllers, path))
    return entries


def process_cgroup(pid: int) -> str:
    """The cgroup2 path of a process, relative to the cgroup2 mount (``/`` for the root)."""
    for hierarchy, controllers, path in _read_proc_cgroup(pid):
        if hierarchy == "0" and controllers == "":
            return path
    raise EnvError(f"process {pid} is in no cgroup2 hierarchy (v1-only host?)")


def cgroup_path(rel: str, *, mount: str | None = None) -> str:
    """Absolute host path of a cgroup given relative to the cgroup2 mount (``..`` refused)."""
    parts = [p for p in rel.split("/") if p and p != "."]
    if ".." in parts:
        raise InputError(f"cgroup path: {rel!r} must not contain '..'")
    base = mount if mount is not None else cgroup2_mount()
    return os.path.join(base, *parts) if parts else base


def locate(spec: str, *, mount: str | None = None) -> tuple[str, str]:
    """``(host path, path relative to the mount)`` of a cgroup named either way, so that every
    command accepts what another printed: ``/sys/fs/cgroup/unified/a/b`` or ``/a/b``."""
    base = mount if mount is not None else cgroup2_mount()
    try:
        parts = _relative_parts(spec, base)
    except InputError:  # not under the mount: relative to it
        parts = [p for p in spec.split("/") if p and p != "."]
    host = cgroup_path("/".join(parts), mount=base)
    return host, "/" + "/".join(parts)


def relative(path: str, mount: str) -> str:
    """A host path under ``mount`` as ``/a/b`` (``/`` for the root): how every command prints a
    cgroup.  A path outside the mount is an InputError."""
    return "/" + "/".join(_relative_parts(path, mount))


def _relative_parts(path: str, mount: str) -> list[str]:
    mount = mount.rstrip("/") or "/"
    norm = os.path.normpath(path)
    if norm == mount:
        return []
    prefix = mount if mount.endswith("/") else mount + "/"
    if not norm.startswith(prefix):
        raise InputError(f"cgroup path: {path!r} is not under the cgroup2 mount {mount}")
    return norm[len(prefix) :].split("/")


def ancestors(path: str, *, mount: str | None = None) -> list[str]:
    """Absolute paths from the mount root down to ``path`` included: every place a filter may sit.

    ``path`` is an absolute host path under the mount, or a path relative to it (``/a/b`` as
    /proc/<pid>/cgroup prints it is taken as relative when it is not under the mount).
    """
    base = mount if mount is not None else cgroup2_mount()
    if not (path == base or path.startswith(base.rstrip("/") + "/")):
        path = cgroup_path(path, mount=base)
    result = [base]
    current = base
    for part in _relative_parts(path, base):
        current = os.path.join(current, part)
        result.append(current)
    return result


def v1_devices_dir(pid: int, mount: str | None = None) -> str | None:
    """The v1 devices cgroup directory governing ``pid``; None without a v1 devices hierarchy."""
    mount = mount if mount is not None else v1_mount("devices")
    if mount is None:
        return None
    for _hierarchy, controllers, path in _read_proc_cgroup(pid):
        if "devices" in controllers.split(","):
            return os.path.join(mount, path.lstrip("/"))
    return None


def v1_devices_list(pid: int, mount: str | None = None) -> list[str] | None:
    """The lines of the v1 ``devices.list`` governing ``pid``; None without a v1 devices hierarchy.

    ``mount`` (the v1 devices mount point, from ``v1_mount``) spares a mountinfo read per call
    when many processes are asked (audit)."""
    directory = v1_devices_dir(pid, mount)
    if directory is None:
        return None
    target = os.path.join(directory, "devices.list")
    try:
        with open(target) as fh:
            return [line for line in fh.read().splitlines() if line]
    except FileNotFoundError:
        raise NotFound(f"v1 devices cgroup {target} not found") from None
    except PermissionError:
        raise NeedsRoot(f"reading {target} needs root") from None


def walk(root: str) -> Iterator[str]:
    """Every cgroup directory under ``root`` (included), parents first.

    os.scandir's d_type answers without a stat per entry; symlinks are never followed, and
    cgroups that vanish mid-walk (containers come and go) are skipped rather than fatal.
    """
    stack = [root]
    while stack:
        current = stack.pop()
        yield current
        try:
            with os.scandir(current) as entries:
                children = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise NeedsRoot(f"listing cgroup {current} needs root") from None
        stack.extend(sorted(children, reverse=True))
