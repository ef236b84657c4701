"""An OCI bundle's config.json: read safely when the bundle path is input, rewritten atomically.

Reading: the path in a hook's OCI state, or in a runtime's ``--bundle``, is input, not a fact:
whoever can write a state (or swap a directory under it) could point a root process at any file.
So the bundle must be an absolute path, under one of the engines' state directories, and every
component is opened with ``O_NOFOLLOW`` from ``/`` down (no symlink anywhere, and no race between
a check and the open); ``config.json`` must be a regular file no larger than ``MAX_CONFIG_BYTES``,
and a JSON object.

Writing (the wrapper runtime, between the engine writing config.json and the real runtime reading
it): a crash must leave the old file or the new one, never half of one.  The new document goes to
a temporary file in the bundle directory (same filesystem), which gets the old file's mode and
owner and is fsync'ed, then is renamed over config.json; rename(2) is atomic, so every reader sees
one whole file.  Everything is relative to the descriptor of the directory opened above, so the
file replaced is the one read.  The directory itself is not fsync'ed: a power loss also takes the
container being created, and the engine creates it again from its own copy of the spec.
"""

from __future__ import annotations

import os
import stat

from cgdev.core import strict_json
from cgdev.errors import EnvError, InputError

TYPE_CHECKING = False  # typing and collections cost the wrapper runtime more than its whole fast path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Final

# Where engines keep bundles (rootful): podman and CRI-O (containers/storage), containerd and
# Docker (the v2 task dirs), and the cgdev lab.  The node's policy and --bundle-dir add more.
DEFAULT_BUNDLE_DIRS: Final[tuple[str, ...]] = (
    "/run/containers/storage",
    "/var/lib/containers/storage",
    "/run/containerd",
    "/run/crio",
    "/var/lib/cgdev/lab",
)
MAX_CONFIG_BYTES: Final = 4 << 20
CONFIG: Final = "config.json"
TEMP: Final = ".config.json.cgdev-tmp"  # one name: a killed attempt's leftover is replaced


def _under(path: str, directories: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)


def _open_nofollow(path: str, last_flags: int) -> int:
    """A descriptor of ``path``, each component opened without following a symlink."""
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_NOFOLLOW | os.O_CLOEXEC | (last_flags if last else os.O_PATH | os.O_DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as err:
                where = "/" + "/".join(parts[: i + 1])
                if err.errno in (40, 20):  # ELOOP, ENOTDIR: a symlink (or a file) where a dir should be
                    raise InputError("a symlink or not a directory on the way", field="bundle",
                                     value=where) from None  # fmt: skip
                raise InputError(f"cannot open {where}: {err.strerror}", field="bundle", value=path) from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_bundle_path(bundle: str, allowed_dirs: Sequence[str]) -> str:
    """``bundle`` normalised, or an ``InputError``: not absolute, not normal, outside the dirs."""
    if not bundle.startswith("/") or "\0" in bundle:
        raise InputError("not an absolute path", field="bundle", value=bundle)
    normal = os.path.normpath(bundle)
    if normal != bundle.rstrip("/") or "/../" in f"{bundle}/":
        raise InputError("not a normal path (.., //, /./)", field="bundle", value=bundle)
    if not _under(normal, [os.path.normpath(d) for d in allowed_dirs]):
        why = "outside the engines' state directories (" + ", ".join(allowed_dirs) + ")"
        raise InputError(why, field="bundle", value=bundle)
    return normal


class Bundle:
    """An open bundle directory: ``read()`` its config.json, ``replace()`` it atomically."""

    def __init__(self, bundle: str, allowed_dirs: Sequence[str] = DEFAULT_BUNDLE_DIRS) -> None:
        self.path = check_bundle_path(bundle, allowed_dirs)
        self.config_path = f"{self.path}/{CONFIG}"
        self.fd = _open_nofollow(self.path, os.O_PATH | os.O_DIRECTORY)
        self._stat: os.stat_result | None = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read(self) -> dict[str, Any]:
        """config.json as a JSON object; every problem one ``InputError`` naming the file."""
        path = self.config_path
        try:
            fd = os.open(CONFIG, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as err:
            if err.errno in (40, 20):  # ELOOP, ENOTDIR: as for every component before it
                raise InputError(
                    "a symlink or not a directory on the way", field="bundle", value=path
                ) from None
            raise InputError(f"cannot open {path}: {err.strerror}", field="bundle", value=self.path) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError("not a regular file", field="config", value=path)
            if info.st_size > MAX_CONFIG_BYTES:
                raise InputError(f"larger than {MAX_CONFIG_BYTES} bytes", field="config", value=path)
            chunks = []
            size = 0
            while size <= MAX_CONFIG_BYTES:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                raise InputError(f"larger than {MAX_CONFIG_BYTES} bytes", field="config", value=path)
        finally:
            os.close(fd)
        self._stat = info
        try:
            config = strict_json.loads(b"".join(chunks))
        except strict_json.JsonError as err:
            raise InputError(str(err), field="config", value=path) from None
        if not isinstance(config, dict):
            raise InputError("not a JSON object", field="config", value=path)
        return config

    def replace(self, config: dict[str, Any]) -> None:
        """Write ``config`` as config.json: the old file or the whole new one, never a mix; the new
        file keeps the old one's mode and owner."""
        import contextlib  # here, not at the top: the no-claim path never writes

        try:
            data = strict_json.dumps(config) + b"\n"
        except (TypeError, ValueError) as err:  # a lone surrogate read from a \\ud800 escape, a NaN
            raise InputError(
                f"cannot be written back as JSON: {err}", field="config", value=self.config_path
            ) from None
        old = self._stat
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(TEMP, dir_fd=self.fd)  # what a killed earlier attempt left
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(TEMP, flags, 0o600, dir_fd=self.fd)
            try:
                if old is not None:
                    os.fchown(fd, old.st_uid, old.st_gid)
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(TEMP, CONFIG, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(TEMP, dir_fd=self.fd)
            why = f"cannot be rewritten: {err.strerror or err}"
            raise EnvError(why, field="config", value=self.config_path) from None


def read_bundle_config(bundle: str, allowed_dirs: Sequence[str] = DEFAULT_BUNDLE_DIRS) -> dict[str, Any]:
    """The bundle's config.json as a dict, or one ``InputError`` (field ``bundle`` or ``config``)."""
    with Bundle(bundle, allowed_dirs) as opened:
        return opened.read()
