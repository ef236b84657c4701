"""Throw-away cgroup2 children of the root, to attach programs to and probe from.

A scratch cgroup leaves nothing behind: its programs are detached explicitly (freeing them at
once, not when the kernel gets round to releasing the cgroup) before it is removed; a process
killed before it cleaned up leaves ``cgdev-scratch-<pid>-*`` behind: ``sweep_stale_scratch``.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Final

from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.adapters.probe_nodes import owner_alive, sweep_stale_probe_mounts
from cgdev.core.model import Request
from cgdev.errors import CgdevError, EnvError, NeedsRoot, NotFound

SCRATCH_PREFIX: Final = "cgdev-scratch-"
_RMDIR_RETRIES: Final = 50

_scratch_counter = itertools.count()


def _detach_all(cgroup_dir: str) -> None:
    with bpf.open_cgroup(cgroup_dir) as cg_fd:
        for prog_id in bpf.prog_query(cg_fd).ids:
            try:
                with bpf.prog_fd_by_id(prog_id) as prog_fd:
                    bpf.prog_detach(cg_fd, prog_fd)
            except NotFound:
                continue


def _rmdir(path: str) -> None:
    """rmdir a cgroup; EBUSY right after its last process exited is transient, so retry briefly."""
    for attempt in range(_RMDIR_RETRIES):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == _RMDIR_RETRIES - 1:
                raise EnvError(f"cannot remove cgroup {path}: {bpf.errno_text(exc.errno or 0)}") from None
            time.sleep(0.002)


def detach_and_remove_tree(root: str) -> None:
    """Detach every device program in a cgroup subtree and remove it, deepest first."""
    for path in reversed(list(cgroupfs.walk(root))):
        try:
            _detach_all(path)
        except NotFound:
            continue
        _rmdir(path)


class ScratchCgroup:
    """A throw-away cgroup2 child of the root to attach programs to and probe from.

    Leaves nothing behind: on exit (also after a failure) every program attached anywhere in its
    subtree is detached, the program fds it loaded are closed, and the cgroups are removed.
    """

    def __init__(self, parent: str | None = None) -> None:
        base = parent if parent is not None else cgroupfs.cgroup2_mount()
        self.path = os.path.join(base, f"{SCRATCH_PREFIX}{os.getpid()}-{next(_scratch_counter)}")
        self._fd: bpf.Fd | None = None
        self._owned: list[bpf.Fd] = []

    @property
    def fd(self) -> bpf.Fd:
        if self._fd is None:
            raise EnvError(f"scratch cgroup {self.path} is not open (use it in a with block)")
        return self._fd

    def __enter__(self) -> ScratchCgroup:
        try:
            os.mkdir(self.path)
        except PermissionError:
            raise NeedsRoot(f"creating cgroup {self.path} needs root") from None
        except OSError as exc:
            raise EnvError(f"cannot create cgroup {self.path}: {bpf.errno_text(exc.errno or 0)}") from None
        try:
            self._fd = bpf.open_cgroup(self.path)
        except CgdevError:
            os.rmdir(self.path)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            if os.path.isdir(self.path):
                detach_and_remove_tree(self.path)
        finally:
            if self._fd is not None:
                self._fd.close()
                self._fd = None
            for owned in self._owned:
                owned.close()
            self._owned.clear()

    def _program(self, prog: bpf.Fd | int | bytes, name: str) -> bpf.Fd | int:
        if isinstance(prog, bytes | bytearray):
            fd = bpf.prog_load(bytes(prog), name=name)
            self._owned.append(fd)
            return fd
        return prog

    def attach(self, prog: bpf.Fd | int | bytes, *, name: str = "") -> bpf.Fd | int:
        """Attach a program fd, or load and attach raw instructions; returns the program's fd."""
        fd = self._program(prog, name)
        bpf.prog_attach(self.fd, fd)
        return fd

    def replace(self, old: bpf.Fd | int, new: bpf.Fd | int | bytes, *, name: str = "") -> bpf.Fd | int:
        """Swap ``old`` for ``new`` atomically (BPF_F_REPLACE); returns the new program's fd."""
        fd = self._program(new, name)
        bpf.prog_attach(self.fd, fd, replace=old)
        return fd

    def detach(self, prog: bpf.Fd | int) -> None:
        bpf.prog_detach(self.fd, prog)

    def program_ids(self, *, effective: bool = False) -> list[int]:
        return bpf.prog_query(self.fd, effective=effective).ids

    def child(self, name: str) -> str:
        """Create a sub-cgroup (removed with the scratch cgroup) and return its path."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"child cgroup name: {name!r} must be one path component")
        path = os.path.join(self.path, name)
        os.mkdir(path)
        return path

    def kernel_verdicts(self, requests: Sequence[Request]) -> list[bool]:
        """The kernel's verdict for each request, asked from inside this cgroup."""
        return kernel_verdicts(self.path, requests)


def sweep_stale_scratch(mount: str | None = None) -> list[str]:
    """Remove what killed test processes left: scratch cgroups and probe tmpfs mounts; returns them."""
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    removed = sweep_stale_probe_mounts()
    pattern = re.compile(rf"^{re.escape(SCRATCH_PREFIX)}(\d+)-\d+$")
    with os.scandir(base) as entries:
        names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    for name in names:
        match = pattern.match(name)
        if match is None or owner_alive(int(match.group(1))):
            continue
        detach_and_remove_tree(os.path.join(base, name))
        removed.append(os.path.join(base, name))
    return removed
