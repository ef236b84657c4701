"""The kernel probe's device nodes: a private tmpfs without ``nodev``, mounted once per process.

Opens on a nodev mount fail before the device program is asked, so the nodes live on a tmpfs of
their own, made by the calling (unrestricted) process and shared with its probe children.  A process
killed before it unmounted leaves a ``cgdev-probe-<pid>-*`` mount behind: ``sweep_stale_probe_mounts``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import os
import re
import stat
from typing import Final

from cgdev.adapters import bpf, cgroupfs
from cgdev.errors import EnvError, NeedsRoot

PROBE_MOUNT_PREFIX: Final = "cgdev-probe-"
NODE_MODE: Final[dict[str, int]] = {"c": stat.S_IFCHR | 0o600, "b": stat.S_IFBLK | 0o600}
_NODE_CACHE_MAX: Final = 8192
_MS_NOSUID: Final = 0x2
_MS_NOEXEC: Final = 0x8
_MS_PRIVATE: Final = 1 << 18
_MNT_DETACH: Final = 0x2


class NodeDir:
    """A tmpfs without nodev, mounted once per process, holding parent-made device nodes."""

    def __init__(self) -> None:
        self.path = ""
        self.owner = 0
        self.nodes: dict[tuple[str, int, int], str] = {}

    def ensure(self) -> str:
        if self.path and self.owner == os.getpid():
            return self.path
        libc = ctypes.CDLL(None, use_errno=True)
        path = _private_dir(f"{PROBE_MOUNT_PREFIX}{os.getpid()}-")
        target = os.fsencode(path)
        if libc.mount(b"cgdev-probe", target, b"tmpfs", _MS_NOSUID | _MS_NOEXEC, b"mode=0700") != 0:
            err = ctypes.get_errno()
            os.rmdir(path)
            if err in (errno.EPERM, errno.EACCES):
                raise NeedsRoot("probing device verdicts needs root (mounting a tmpfs for device nodes)")
            raise EnvError(f"cannot mount a tmpfs at {path}: {bpf.errno_text(err)}")
        # Private: nothing mounted below it propagates, and its nodes are ours alone.
        libc.mount(None, target, None, _MS_PRIVATE, None)
        self.path, self.owner, self.nodes = path, os.getpid(), {}
        atexit.register(self.release)
        return path

    def release(self) -> None:
        if not self.path or self.owner != os.getpid():
            return
        _unmount(self.path)
        self.path, self.nodes = "", {}

    def node(self, dev_type: str, major: int, minor: int) -> str:
        key = (dev_type, major, minor)
        path = self.nodes.get(key)
        if path is None:
            path = f"{self.path}/{dev_type}{major}_{minor}"
            try:
                os.mknod(path, NODE_MODE[dev_type], os.makedev(major, minor))
            except FileExistsError:
                pass
            except PermissionError:
                raise EnvError(
                    f"the probing process itself may not mknod {dev_type} {major}:{minor}: "
                    "it must run unrestricted (outside any device filter)"
                ) from None
            self.nodes[key] = path
        return path

    def trim(self, incoming: int) -> None:
        """Keep the tmpfs small: forget every node when the cache would overflow."""
        if len(self.nodes) + incoming <= _NODE_CACHE_MAX:
            return
        for path in self.nodes.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.nodes.clear()


def _private_dir(prefix: str) -> str:
    """A new 0700 directory in $TMPDIR (or /tmp), as ``tempfile.mkdtemp`` makes one, without its
    import cost (random, hashlib, shutil: a few ms on every ``cgdev grant``, which probes once)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    while True:
        path = os.path.join(base, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _unmount(path: str) -> None:
    """Detach the tmpfs (its nodes go with it) and remove the then empty directory."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(os.fsencode(path), _MNT_DETACH)
    with contextlib.suppress(OSError):
        os.rmdir(path)


node_dir = NodeDir()


def sweep_stale_probe_mounts() -> list[str]:
    """Unmount the node tmpfs of probe processes that died without unmounting it; returns them."""
    pattern = re.compile(rf"/{re.escape(PROBE_MOUNT_PREFIX)}(\d+)-[^/]+$")
    removed = []
    for mount in cgroupfs.mounts():
        match = pattern.search(mount.mountpoint)
        if mount.fstype == "tmpfs" and match is not None and not owner_alive(int(match.group(1))):
            _unmount(mount.mountpoint)
            removed.append(mount.mountpoint)
    return removed


def owner_alive(pid: int) -> bool:
    """Whether the process whose pid is in a stale-looking name still runs (then it is not stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
