"""The node's CDI registry, validated once and cached: the I/O of the wrapper runtime's fast claim.

Why: reading the specs strictly (``adapters.cdi_dirs``: msgspec structs, YAML) costs a ``create``
with a CDI claim several times the wrapper's budget, and the specs change when a driver or toolkit
is installed, not per container.  So when the full reader has read the directories, what it
validated is written here (``write_cache``: the device entries ``core.cdi_plain`` resolves, and
per spec file its path, size, mtime, ctime, inode and device), atomically, under cgdev's state
directory (``CGDEV_STATE_DIR``, default /var/lib/cgdev).  ``read_cache`` gives that back only when
the directories list exactly the same spec files and every one stats the same (one listing per
directory and one ``stat`` per file); anything else (a file added, removed or changed, a directory
that cannot be listed, a missing, corrupt or untrusted cache) is None, and the caller runs the full
reader, which rewrites the cache.

Trust: the cache is read only when it and its directory belong to this process's user (root, for
an engine's runtime) and are writable by no one else, so it is as trusted as the specs themselves
(which root installs under root-only directories).  Staleness: a spec file changed within the
same clock tick with the same size and inode would stat the same, so a snapshot in which any file
was changed less than ``_SETTLE_NS`` ago is never cached (git's "racy clean" rule); and the stats
are taken before and after the full read, a cache written only when both agree.

Imports only the standard library's start-up set and ``core.strict_json`` (no msgspec, no json).
"""

from __future__ import annotations

import contextlib
import os

from cgdev.core.cdi_plain import PlainHostNode
from cgdev.core.strict_json import JsonError, loads
from cgdev.errors import InputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Final

SPEC_SUFFIXES: Final = (".json", ".yaml")
DEFAULT_STATE_DIR: Final = "/var/lib/cgdev"  # = ops.entitlements.DEFAULT_STATE_DIR
CACHE_NAME: Final = "cdi-cache.json"
CACHE_VERSION: Final = 1
MAX_CACHE_BYTES: Final = 8 << 20
_SETTLE_NS: Final = 2_000_000_000  # a file changed this recently is not cached (coarse mtime clocks)

Snapshot = list  # [[path, priority, size, mtime_ns, ctime_ns, ino, dev], ...] in scan order


def spec_files(dirs: Sequence[str]) -> tuple[list[tuple[str, int]], list[InputError]]:
    """(path, priority) of every spec file, in scan order; and one error per unreadable directory.
    The reference's scan: directories in order, in each the ``.json``/``.yaml`` files in name
    order, no recursion, a missing directory skipped."""
    found: list[tuple[str, int]] = []
    errors: list[InputError] = []
    for priority, directory in enumerate(dirs):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        except OSError as err:
            errors.append(InputError(f"cannot list: {err.strerror}", field=directory))
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) or not entry.name.endswith(SPEC_SUFFIXES):
                continue
            found.append((os.path.normpath(entry.path), priority))
    return found, errors


def snapshot(dirs: Sequence[str], now_ns: int | None = None) -> Snapshot | None:
    """What identifies the spec files of ``dirs`` now; None when it cannot be trusted to (a
    directory that cannot be listed, a file that cannot be stat'd or changed too recently)."""
    import time

    files, errors = spec_files(dirs)
    if errors:
        return None
    now = time.time_ns() if now_ns is None else now_ns
    out: Snapshot = []
    for path, priority in files:
        try:
            st = os.stat(path)  # the full reader opens it following a symlink: so does this
        except OSError:
            st = None
        if st is None:
            out.append([path, priority, -1, 0, 0, 0, 0])  # broken, as the full reader finds it
            continue
        if max(st.st_mtime_ns, st.st_ctime_ns) > now - _SETTLE_NS:
            return None
        out.append([path, priority, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev])
    return out


def cache_path() -> str:
    return os.path.join(os.environ.get("CGDEV_STATE_DIR", DEFAULT_STATE_DIR), CACHE_NAME)


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def read_cache(dirs: Sequence[str]) -> dict[str, Any] | None:
    """The cached registry of ``dirs`` (``core.cdi.registry_cache``), when it is still the node's;
    else None (the caller reads the specs in full)."""
    path = cache_path()
    try:
        if not _trusted(os.stat(os.path.dirname(path))):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _trusted(st) or st.st_size > MAX_CACHE_BYTES:
            return None
        data = os.read(fd, MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        doc = loads(data)
    except JsonError:
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != CACHE_VERSION
        or doc.get("dirs") != list(dirs)
        or not isinstance(doc.get("registry"), dict)
        or doc.get("files") != snapshot(dirs)
    ):
        return None
    registry: dict[str, Any] = doc["registry"]
    if not isinstance(registry.get("devices"), dict) or not isinstance(registry.get("specs"), dict):
        return None
    return registry


def write_cache(dirs: Sequence[str], files: Snapshot, registry: dict[str, Any]) -> None:
    """Replace the cache, atomically (a temporary file renamed over it); OSError when it cannot."""
    import json

    path = cache_path()
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not _trusted(os.stat(directory)):
        raise PermissionError(f"{directory}: not owned by this user or writable by others")
    doc = {"version": CACHE_VERSION, "dirs": list(dirs), "files": files, "registry": registry}
    data = json.dumps(doc, separators=(",", ":")).encode()
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def host_node_plain(path: str) -> PlainHostNode | None:
    """``adapters.cdi_dirs.host_node`` without msgspec: ``lstat`` (a symlink is not followed),
    type b, c, p or "" for any other file, numbers and permission bits; None if absent."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return None
    mode = st.st_mode
    kind = "b" if stat.S_ISBLK(mode) else "c" if stat.S_ISCHR(mode) else "p" if stat.S_ISFIFO(mode) else ""
    return PlainHostNode(kind, os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(mode))
