"""The kernel as the oracle for device verdicts.

Differential tests compare what cgdev computes (interpreter, lifter, compiler) with what the kernel
actually decides, hundreds of thousands of times, so a probe must be fast and must never touch a
real device.  The design:

* Device nodes are made by the calling process (unrestricted) on a private tmpfs mounted without
  ``nodev`` (opens on a nodev mount fail before the device program is asked), once per process.
* One forked child per batch moves itself into the scratch cgroup and performs every request:
  mknod of a fresh path for ``m``; open with O_RDONLY / O_WRONLY / O_RDWR for ``r`` / ``w`` /
  ``rw``.  EPERM is the program's "deny"; any other outcome of an open (success, ENXIO, ENODEV,
  EIO ...) happened after the program allowed it.  The child reports raw errnos through a pipe and
  the parent judges them, so the judgement lives in one place.
* Safety: opening a node whose major has a driver runs that driver's open (char 10:130 arms a
  hardware watchdog that reboots the machine; 1:1 is /dev/mem).  Opens are therefore refused for
  every (type, major) registered in /proc/devices (or loadable as a module), except a tiny allowlist
  of nodes whose open has no effect.  mknod never reaches a driver and is always safe.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import itertools
import os
import re
import shutil
import stat
import struct
import tempfile
import time
from array import array
from collections.abc import Sequence
from types import TracebackType
from typing import Final

from cgdev.adapters import bpf, cgroupfs
from cgdev.core.model import (
    ACC_M,
    ACC_R,
    ACC_W,
    MKNOD_MAJOR_MAX,
    MKNOD_MINOR_MAX,
    REQUEST_MASKS,
    DevType,
    Request,
)
from cgdev.errors import CgdevError, EnvError, NeedsRoot, NotFound

# Nodes whose open is free of side effects even though a driver exists: null, zero, full, random,
# urandom, and /dev/tty (with O_NOCTTY it only re-opens an existing controlling tty, else ENXIO).
# Deliberately not: 5:1 console and other ttys (an open/close pair can toggle modem lines or hang up
# a line), 5:2 ptmx (allocates a pty pair), 1:1/1:4 memory and ports, 10:* misc (the watchdog).
OPEN_ALLOWLIST: Final[frozenset[tuple[str, int, int]]] = frozenset(
    {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0)}
)

PROC_DEVICES: Final = "/proc/devices"
SCRATCH_PREFIX: Final = "cgdev-scratch-"
PROBE_MOUNT_PREFIX: Final = "cgdev-probe-"
_OPEN_FLAGS: Final[dict[int, int]] = {
    ACC_R: os.O_RDONLY,
    ACC_W: os.O_WRONLY,
    ACC_R | ACC_W: os.O_RDWR,
}
_OPEN_COMMON: Final = os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
_NODE_MODE: Final[dict[str, int]] = {"c": stat.S_IFCHR | 0o600, "b": stat.S_IFBLK | 0o600}
# errnos that an open or mknod can return BEFORE the device program is asked: no verdict.
_UNDECIDED: Final[frozenset[int]] = frozenset(
    {errno.EACCES, errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EMFILE, errno.ENFILE, errno.EROFS}
)
_NODE_CACHE_MAX: Final = 8192
_RMDIR_RETRIES: Final = 50

# --- which nodes are safe to open -------------------------------------------------------------


def registered_majors() -> dict[str, set[int]]:
    """Majors with a driver, per type, from /proc/devices (read afresh: modules come and go)."""
    found: dict[str, set[int]] = {"c": set(), "b": set()}
    section: str | None = None
    with open(PROC_DEVICES) as fh:
        for line in fh:
            if line.startswith("Character"):
                section = "c"
            elif line.startswith("Block"):
                section = "b"
            elif section is not None and line.strip():
                found[section].add(int(line.split()[0]))
    return found


_ALIAS_MAJOR = re.compile(r"^alias (char|block)-major-(\d+)", re.MULTILINE)
_autoload_cache: dict[str, set[int]] | None = None


def autoload_majors() -> dict[str, set[int]]:
    """Majors a module would be auto-loaded for on open (modules.alias), if modules exist at all.

    Opening a driverless node asks the kernel to load ``char-major-M-m``; if such a module is
    installed, the open then reaches a freshly loaded driver.  Cached: installed modules of the
    running kernel do not change under a test run.
    """
    global _autoload_cache
    if _autoload_cache is None:
        found: dict[str, set[int]] = {"c": set(), "b": set()}
        if os.path.exists("/proc/modules"):
            path = f"/lib/modules/{os.uname().release}/modules.alias"
            try:
                with open(path) as fh:
                    text = fh.read()
            except OSError:
                text = ""
            for kind, major in _ALIAS_MAJOR.findall(text):
                found["c" if kind == "char" else "b"].add(int(major))
        _autoload_cache = found
    return _autoload_cache


def _unsafe_majors() -> dict[str, set[int]]:
    registered = registered_majors()
    autoload = autoload_majors()
    return {t: registered[t] | autoload[t] for t in ("c", "b")}


def driverless_majors(dev_type: DevType) -> list[int]:
    """Majors (0..4095) with no driver and no auto-loadable module: any minor is safe to open."""
    if dev_type not in ("b", "c"):
        raise ValueError(f"type: {dev_type!r} is not 'b' or 'c'")
    unsafe = _unsafe_majors()[dev_type]
    return [m for m in range(MKNOD_MAJOR_MAX + 1) if m not in unsafe]


def _check_request(request: Request, unsafe: dict[str, set[int]]) -> None:
    if request.type not in ("b", "c"):
        raise ValueError(f"type: {request.type!r} is not 'b' or 'c' (in {request!r})")
    if request.access not in REQUEST_MASKS:
        raise ValueError(f"access: {request.access!r} is not one of m, r, w, rw (in {request!r})")
    if not 0 <= request.major <= MKNOD_MAJOR_MAX:
        raise ValueError(f"major: {request.major} cannot be named by mknod (0..{MKNOD_MAJOR_MAX})")
    if not 0 <= request.minor <= MKNOD_MINOR_MAX:
        raise ValueError(f"minor: {request.minor} cannot be named by mknod (0..{MKNOD_MINOR_MAX})")
    if request.access != ACC_M and not _safe_to_open(request, unsafe):
        raise ValueError(
            f"refusing to open {request.type} {request.major}:{request.minor}: major has a driver "
            "(opening it could have side effects); use a driverless major or mknod"
        )


def _safe_to_open(request: Request, unsafe: dict[str, set[int]]) -> bool:
    key = (request.type, request.major, request.minor)
    return key in OPEN_ALLOWLIST or request.major not in unsafe[request.type]


def is_safe_to_open(request: Request) -> bool:
    """Whether ``probe`` may open this node: allowlisted, or its major has no driver."""
    if request.type not in ("b", "c"):
        return False
    return _safe_to_open(request, _unsafe_majors())


# --- the private tmpfs with the nodes ---------------------------------------------------------

_MS_NOSUID: Final = 0x2
_MS_NOEXEC: Final = 0x8
_MS_PRIVATE: Final = 1 << 18
_MNT_DETACH: Final = 0x2


class _NodeDir:
    """A tmpfs without nodev, mounted once per process, holding parent-made device nodes."""

    def __init__(self) -> None:
        self.path = ""
        self.owner = 0
        self.nodes: dict[tuple[str, int, int], str] = {}

    def ensure(self) -> str:
        if self.path and self.owner == os.getpid():
            return self.path
        libc = ctypes.CDLL(None, use_errno=True)
        path = tempfile.mkdtemp(prefix=f"{PROBE_MOUNT_PREFIX}{os.getpid()}-")
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
                os.mknod(path, _NODE_MODE[dev_type], os.makedev(major, minor))
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


def _unmount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(os.fsencode(path), _MNT_DETACH)
    shutil.rmtree(path, ignore_errors=True)


_node_dir = _NodeDir()
_v1_checked_pid = 0


def _check_v1_unrestricted() -> None:
    """In a hybrid layout the v1 devices controller also judges: it must allow everything here."""
    global _v1_checked_pid
    if _v1_checked_pid == os.getpid():
        return
    lines = cgroupfs.v1_devices_list(os.getpid())
    if lines is not None and lines != ["a *:* rwm"]:
        raise EnvError(
            f"this process's v1 devices cgroup restricts devices ({lines[:3]}...): probe verdicts "
            "would mix it in; run from an unrestricted v1 devices cgroup"
        )
    _v1_checked_pid = os.getpid()


# --- the probe --------------------------------------------------------------------------------


def _plan(requests: Sequence[Request]) -> list[tuple[bool, str | int, int]]:
    """Per request: (is_open, path or mknod mode, open flags or dev_t) — all work done up front."""
    unsafe = _unsafe_majors()
    for request in requests:
        _check_request(request, unsafe)
    _node_dir.ensure()
    _node_dir.trim(len(requests))
    plan: list[tuple[bool, str | int, int]] = []
    for r in requests:
        if r.access == ACC_M:
            plan.append((False, _NODE_MODE[r.type], os.makedev(r.major, r.minor)))
        else:
            plan.append(
                (True, _node_dir.node(r.type, r.major, r.minor), _OPEN_FLAGS[r.access] | _OPEN_COMMON)
            )
    return plan


def _run_child(procs_fd: int, plan: list[tuple[bool, str | int, int]], fresh: str, out_fd: int) -> None:
    """The child: join the cgroup, do every request, report errnos; never returns."""
    code = 0
    try:
        try:
            os.write(procs_fd, b"0")
        except OSError as exc:
            os.write(out_fd, struct.pack("<i", exc.errno or errno.EIO))
            code = 1
            return
        results = array("H", bytes(2 * len(plan)))
        opn, close, mknod, unlink = os.open, os.close, os.mknod, os.unlink
        for i, (is_open, target, arg) in enumerate(plan):
            try:
                if is_open:
                    close(opn(target, arg))  # type: ignore[arg-type]
                else:
                    mknod(fresh, target, arg)  # type: ignore[arg-type]
                    unlink(fresh)
            except OSError as exc:
                results[i] = exc.errno or errno.EIO
        payload = memoryview(struct.pack("<i", 0) + results.tobytes())
        while payload:
            payload = payload[os.write(out_fd, payload) :]
    except BaseException:
        code = 2
    finally:
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _verdict(request: Request, err: int) -> bool:
    if err == 0:
        return True
    if err == errno.EPERM:
        return False
    if request.access == ACC_M or err in _UNDECIDED:
        raise EnvError(f"probe of {request} gave no verdict (not success, not EPERM): {bpf.errno_text(err)}")
    return True  # ENXIO, ENODEV, EIO ...: the program allowed it, then no driver answered


def probe(cgroup_path: str, requests: Sequence[Request]) -> list[bool]:
    """The kernel's verdict (True = allowed) for each request, made from inside ``cgroup_path``.

    The verdict is the whole kernel's: every device program on the path from the cgroup2 root down
    to ``cgroup_path``.  Raises ValueError for requests it refuses to make (unsafe opens, numbers
    mknod cannot encode) before touching anything.
    """
    if not requests:
        return []
    plan = _plan(requests)
    _check_v1_unrestricted()
    try:
        procs_fd = os.open(os.path.join(cgroup_path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"cgroup {cgroup_path} not found") from None
    except PermissionError:
        raise NeedsRoot(f"moving a process into {cgroup_path} needs root") from None
    fresh = f"{_node_dir.path}/fresh-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):  # left over only if a child was killed mid-request
        os.unlink(fresh)
    try:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:  # EAGAIN/ENOMEM: no child, so nobody else will close the pipe
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(read_fd)
            _run_child(procs_fd, plan, fresh, write_fd)
        os.close(write_fd)
        try:
            data = _read_all(read_fd)
        finally:
            os.close(read_fd)
            _reap(pid)
    finally:
        os.close(procs_fd)
    return _decode(requests, data, cgroup_path)


def _reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise EnvError(f"probe child {pid} failed (wait status {status:#x})")


def _decode(requests: Sequence[Request], data: bytes, cgroup_path: str) -> list[bool]:
    if len(data) < 4:
        raise EnvError(f"probe child reported nothing for {cgroup_path}")
    (move_err,) = struct.unpack_from("<i", data)
    if move_err:
        raise EnvError(f"probe child could not join {cgroup_path}: {bpf.errno_text(move_err)}")
    errs = array("H")
    errs.frombytes(data[4:])
    if len(errs) != len(requests):
        raise EnvError(f"probe child reported {len(errs)} verdicts for {len(requests)} requests")
    return [_verdict(r, e) for r, e in zip(requests, errs, strict=True)]


# --- scratch cgroups --------------------------------------------------------------------------

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


def remove_cgroup_tree(root: str) -> None:
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
                remove_cgroup_tree(self.path)
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

    def probe(self, requests: Sequence[Request]) -> list[bool]:
        return probe(self.path, requests)


def sweep_stale_scratch(mount: str | None = None) -> list[str]:
    """Remove what killed test processes left: scratch cgroups and probe tmpfs mounts; returns them."""
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    removed = _sweep_probe_mounts()
    pattern = re.compile(rf"^{re.escape(SCRATCH_PREFIX)}(\d+)-\d+$")
    with os.scandir(base) as entries:
        names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    for name in names:
        match = pattern.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        remove_cgroup_tree(os.path.join(base, name))
        removed.append(os.path.join(base, name))
    return removed


def _sweep_probe_mounts() -> list[str]:
    pattern = re.compile(rf"/{re.escape(PROBE_MOUNT_PREFIX)}(\d+)-[^/]+$")
    removed = []
    for mount in cgroupfs.mounts():
        match = pattern.search(mount.mountpoint)
        if mount.fstype == "tmpfs" and match is not None and not _alive(int(match.group(1))):
            _unmount(mount.mountpoint)
            removed.append(mount.mountpoint)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
