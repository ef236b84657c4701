"""Owned file descriptors for bpf objects and cgroups.

Program fds keep programs alive, so leaking one leaks a kernel object: ``Fd`` makes the lifetime
explicit; ``open_cgroup`` gives the cgroup handle that bpf(2) attaches to.
"""

from __future__ import annotations

import contextlib
import errno
import os

from cgdev.adapters.bpf.abi import errno_text
from cgdev.errors import NeedsRoot, NotFound

# --- file descriptors -------------------------------------------------------------------------


class Fd:
    """An owned file descriptor: int-like for os.* calls, closed by ``close()``, ``with`` or GC.

    Program fds keep programs alive, so leaking one leaks a kernel object; owning them in one
    small class makes the lifetime explicit without a framework.
    """

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on a closed Fd")
        return self._fd

    def __int__(self) -> int:
        return self.fileno()

    def __index__(self) -> int:
        return self.fileno()

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership: return the raw fd, which the caller must close."""
        fd, self._fd = self._fd, -1
        return fd

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def __repr__(self) -> str:
        return f"Fd({self._fd})" if self._fd >= 0 else "Fd(closed)"


def raw_fd(fd: Fd | int) -> int:
    return fd.fileno() if isinstance(fd, Fd) else int(fd)


def open_cgroup(path: str) -> Fd:
    """An fd on a cgroup directory, the handle bpf(2) attaches to."""
    try:
        return Fd(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except FileNotFoundError:
        raise NotFound(f"cgroup {path} not found") from None
    except NotADirectoryError:
        raise NotFound(f"cgroup {path} not found (not a directory)") from None
    except PermissionError as exc:
        raise NeedsRoot(
            f"opening cgroup {path} needs root: {errno_text(exc.errno or errno.EACCES)}"
        ) from None
