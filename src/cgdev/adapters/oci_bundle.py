"""Reading an OCI bundle's config.json for a hook, when the bundle path comes from stdin.

The path in a hook's OCI state is input, not a fact: whoever can write a state (or swap a
directory under it) could point a root process at any file.  So the bundle must be an absolute
path, under one of the engines' state directories, and every component is opened with
``O_NOFOLLOW`` from ``/`` down (no symlink anywhere, and no race between a check and the open);
``config.json`` must be a regular file no larger than ``MAX_CONFIG_BYTES``, and a JSON object.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Any, Final

from cgdev.errors import InputError

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


def _under(path: str, directories: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)


def _open_nofollow(path: str) -> int:
    """A descriptor of ``path``'s file, each component opened without following a symlink."""
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= (os.O_RDONLY | os.O_NONBLOCK) if last else (os.O_PATH | os.O_DIRECTORY)
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


def read_bundle_config(bundle: str, allowed_dirs: Sequence[str] = DEFAULT_BUNDLE_DIRS) -> dict[str, Any]:
    """The bundle's config.json as a dict, or one ``InputError`` (field ``bundle`` or ``config``)."""
    if not bundle.startswith("/") or "\0" in bundle:
        raise InputError("not an absolute path", field="bundle", value=bundle)
    normal = os.path.normpath(bundle)
    if normal != bundle.rstrip("/") or "/../" in f"{bundle}/":
        raise InputError("not a normal path (.., //, /./)", field="bundle", value=bundle)
    if not _under(normal, [os.path.normpath(d) for d in allowed_dirs]):
        why = "outside the engines' state directories (" + ", ".join(allowed_dirs) + ")"
        raise InputError(why, field="bundle", value=bundle)
    path = f"{normal}/config.json"
    fd = _open_nofollow(path)
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
    import msgspec

    try:
        config = msgspec.json.decode(b"".join(chunks))
    except msgspec.DecodeError as err:
        raise InputError(f"not JSON: {err}", field="config", value=path) from None
    if not isinstance(config, dict):
        raise InputError("not a JSON object", field="config", value=path)
    return config
