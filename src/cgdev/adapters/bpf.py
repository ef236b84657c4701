"""bpf(2) for cgroup device programs, through ctypes.

No Python binding covers what cgdev needs (CGROUP_DEVICE query with per-program flags, atomic
BPF_F_REPLACE, raw xlated dumps), and a compiled extension would cost a build step, so this is a
small typed layer of our own over the raw syscall.  It imports nothing but ctypes and the stdlib, so
the OCI hook and the pure commands can import it cheaply, without root.

Every failure becomes one ``CgdevError`` line a user can act on: EPERM/EACCES -> ``NeedsRoot``,
ENOENT -> ``NotFound`` naming the object, a rejected load -> ``VerifierError`` carrying the log,
anything else -> ``EnvError`` naming the bpf command and the errno.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from cgdev.core.isa import BPF_REG_AX
from cgdev.core.progname import kernel_program_name
from cgdev.errors import EnvError, InputError, NeedsRoot, NotFound, VerifierError

# --- constants from include/uapi/linux/bpf.h --------------------------------------------------

_SYSCALL_BPF: Final[dict[str, int]] = {"x86_64": 321, "aarch64": 280, "arm64": 280}

BPF_PROG_LOAD: Final = 5
BPF_OBJ_PIN: Final = 6
BPF_OBJ_GET: Final = 7
BPF_PROG_ATTACH: Final = 8
BPF_PROG_DETACH: Final = 9
BPF_PROG_GET_FD_BY_ID: Final = 13
BPF_OBJ_GET_INFO_BY_FD: Final = 15
BPF_PROG_QUERY: Final = 16
BPF_ENABLE_STATS: Final = 32

_COMMAND_NAMES: Final[dict[int, str]] = {
    BPF_PROG_LOAD: "BPF_PROG_LOAD",
    BPF_OBJ_PIN: "BPF_OBJ_PIN",
    BPF_OBJ_GET: "BPF_OBJ_GET",
    BPF_PROG_ATTACH: "BPF_PROG_ATTACH",
    BPF_PROG_DETACH: "BPF_PROG_DETACH",
    BPF_PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID",
    BPF_OBJ_GET_INFO_BY_FD: "BPF_OBJ_GET_INFO_BY_FD",
    BPF_PROG_QUERY: "BPF_PROG_QUERY",
    BPF_ENABLE_STATS: "BPF_ENABLE_STATS",
}

BPF_PROG_TYPE_CGROUP_DEVICE: Final = 15
BPF_CGROUP_DEVICE: Final = 6  # attach type

BPF_F_ALLOW_OVERRIDE: Final = 1
BPF_F_ALLOW_MULTI: Final = 2
BPF_F_REPLACE: Final = 4
BPF_F_QUERY_EFFECTIVE: Final = 1
BPF_STATS_RUN_TIME: Final = 0

INSN_SIZE: Final = 8
BPF_OBJ_NAME_LEN: Final = 16
_LOG_START: Final = 64 * 1024
LOG_MAX: Final = 16 * 1024 * 1024
_QUERY_START: Final = 8
_STATS_SYSCTL: Final = "/proc/sys/kernel/bpf_stats_enabled"

# --- attribute layouts (each the command's member of union bpf_attr) ---------------------------

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = (
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
    )


class _AttachAttr(ctypes.Structure):
    _fields_ = (
        ("target_fd", _u32),
        ("attach_bpf_fd", _u32),
        ("attach_type", _u32),
        ("attach_flags", _u32),
        ("replace_bpf_fd", _u32),
    )


class _QueryAttr(ctypes.Structure):
    # Laid out to the end of ``revision`` (Linux 6.17+): kernels 6.17-7.1 write that field back
    # whatever size the caller passed, so a shorter struct would let the kernel scribble past it.
    _fields_ = (
        ("target_fd", _u32),
        ("attach_type", _u32),
        ("query_flags", _u32),
        ("attach_flags", _u32),
        ("prog_ids", _u64),
        ("prog_cnt", _u32),
        ("_pad", _u32),
        ("prog_attach_flags", _u64),
        ("link_ids", _u64),
        ("link_attach_flags", _u64),
        ("revision", _u64),
    )


class _GetIdAttr(ctypes.Structure):
    _fields_ = (("id", _u32), ("next_id", _u32), ("open_flags", _u32))


class _ObjAttr(ctypes.Structure):
    _fields_ = (("pathname", _u64), ("bpf_fd", _u32), ("file_flags", _u32))


class _InfoAttr(ctypes.Structure):
    _fields_ = (("bpf_fd", _u32), ("info_len", _u32), ("info", _u64))


class _StatsAttr(ctypes.Structure):
    _fields_ = (("type", _u32),)


class _ProgInfo(ctypes.Structure):
    _fields_ = (
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad", _u32),
    )


# --- the syscall ------------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _syscall_number() -> int:
    machine = os.uname().machine
    try:
        return _SYSCALL_BPF[machine]
    except KeyError:
        raise EnvError(f"bpf(2): unsupported architecture {machine!r} (x86_64 and aarch64 only)") from None


def _raw_bpf(cmd: int, attr: ctypes.Structure) -> tuple[int, int]:
    """One bpf(2) call: (return value, errno).  The libc handle is opened on first use only."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    ret = _libc.syscall(
        ctypes.c_long(_syscall_number()),
        ctypes.c_long(cmd),
        ctypes.byref(attr),
        ctypes.c_uint(ctypes.sizeof(attr)),
    )
    return ret, (ctypes.get_errno() if ret < 0 else 0)


def errno_text(err: int) -> str:
    """``EPERM (Operation not permitted)``: the symbol for grep, the text for humans."""
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def _fail(cmd: int, err: int, what: str) -> Exception:
    """The one-line typed error for a failed bpf command on ``what``."""
    name = _COMMAND_NAMES.get(cmd, f"cmd {cmd}")
    if err in (errno.EPERM, errno.EACCES):
        return NeedsRoot(f"bpf({name}) on {what} needs root (CAP_SYS_ADMIN/CAP_BPF): {errno_text(err)}")
    if err == errno.ENOENT:
        return NotFound(f"{what} not found (bpf({name}): {errno_text(err)})")
    return EnvError(f"bpf({name}) on {what} failed: {errno_text(err)}")


def _call(cmd: int, attr: ctypes.Structure, what: str) -> int:
    ret, err = _raw_bpf(cmd, attr)
    if ret < 0:
        raise _fail(cmd, err, what)
    return ret


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


def _as_int(fd: Fd | int) -> int:
    return fd.fileno() if isinstance(fd, Fd) else int(fd)


# --- loading ----------------------------------------------------------------------------------


def _load_attr(
    insns_buf: ctypes.Array[ctypes.c_char], count: int, name: bytes, lic: ctypes.Array[ctypes.c_char]
) -> _ProgLoadAttr:
    attr = _ProgLoadAttr()
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE
    attr.expected_attach_type = BPF_CGROUP_DEVICE
    attr.insn_cnt = count
    attr.insns = ctypes.addressof(insns_buf)
    attr.license = ctypes.addressof(lic)
    attr.prog_name = name
    return attr


def _summary(log: str) -> str:
    """The verifier's reason: the last log line that is not a statistics trailer."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("processed ", "verification time", "stack depth")):
            return line
    return ""


def _raise_memlock() -> bool:
    """Kernels before 5.11 charge programs to RLIMIT_MEMLOCK; lift it once (as crun/runc do)."""
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        return False
    return True


def prog_load(insns: bytes, *, name: str = "", license: str = "GPL") -> Fd:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program.

    The first try runs without a log (the common case must be fast); only a failure is retried
    with a log, grown on ENOSPC up to 16 MiB, so the error carries the verifier's reason.  ``name``
    is made legal first (``kernel_program_name``): an illegal name is EINVAL, not a program error.
    """
    if not insns or len(insns) % INSN_SIZE:
        raise VerifierError(f"program length {len(insns)} is not a positive multiple of {INSN_SIZE} bytes")
    encoded_name = kernel_program_name(name).encode()
    insns_buf = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    count = len(insns) // INSN_SIZE
    attr = _load_attr(insns_buf, count, encoded_name, lic)
    ret, err = _raw_bpf(BPF_PROG_LOAD, attr)
    if ret < 0 and err == errno.EPERM and _raise_memlock():
        ret, err = _raw_bpf(BPF_PROG_LOAD, attr)
    if ret >= 0:
        return Fd(ret)
    if err == errno.EPERM:
        raise _fail(BPF_PROG_LOAD, err, "a cgroup device program")
    fd, log, err = _load_with_log(insns_buf, count, encoded_name, lic)
    if fd is not None:  # a transient failure (e.g. EAGAIN): the retry loaded it
        return fd
    if not log and err in (errno.EPERM, errno.EACCES):
        raise _fail(BPF_PROG_LOAD, err, "a cgroup device program")
    reason = _summary(log)
    suffix = f": {reason}" if reason else ""
    raise VerifierError(
        f"the kernel refused the device program ({count} instructions): {errno_text(err)}{suffix}", log=log
    )


def _load_with_log(
    insns_buf: ctypes.Array[ctypes.c_char], count: int, name: bytes, lic: ctypes.Array[ctypes.c_char]
) -> tuple[Fd | None, str, int]:
    """Retry a failed load with the verifier log: (fd if it loaded after all, log text, errno)."""
    size = _LOG_START
    while True:
        log_buf = ctypes.create_string_buffer(size)
        attr = _load_attr(insns_buf, count, name, lic)
        attr.log_level = 1
        attr.log_size = size
        attr.log_buf = ctypes.addressof(log_buf)
        ret, err = _raw_bpf(BPF_PROG_LOAD, attr)
        if ret >= 0:
            return Fd(ret), "", 0
        if err == errno.ENOSPC and size < LOG_MAX:
            size = min(size * 4, LOG_MAX)
            continue
        log = log_buf.value.decode(errors="replace")
        if err == errno.ENOSPC:  # the log outgrew LOG_MAX: ENOSPC is about the log, not the program
            retry = _load_attr(insns_buf, count, name, lic)
            ret, err = _raw_bpf(BPF_PROG_LOAD, retry)
            if ret >= 0:
                return Fd(ret), "", 0
            log += f"\n(verifier log truncated at {LOG_MAX} bytes)"
        return None, log, err


# --- attaching --------------------------------------------------------------------------------


def prog_attach(
    cgroup_fd: Fd | int, prog_fd: Fd | int, *, multi: bool = True, replace: Fd | int | None = None
) -> None:
    """Attach a device program to a cgroup.

    ``replace`` swaps an attached program for ``prog_fd`` atomically (BPF_F_REPLACE): there is
    never a moment with neither, nor with both — the only safe way to change a live filter.
    """
    attr = _AttachAttr()
    attr.target_fd = _as_int(cgroup_fd)
    attr.attach_bpf_fd = _as_int(prog_fd)
    attr.attach_type = BPF_CGROUP_DEVICE
    attr.attach_flags = BPF_F_ALLOW_MULTI if multi else 0
    what = f"cgroup fd {attr.target_fd}"
    if replace is not None:
        attr.attach_flags |= BPF_F_REPLACE
        attr.replace_bpf_fd = _as_int(replace)
        what = f"the program to replace (fd {attr.replace_bpf_fd}) on cgroup fd {attr.target_fd}"
    _call(BPF_PROG_ATTACH, attr, what)


def prog_detach(cgroup_fd: Fd | int, prog_fd: Fd | int) -> None:
    """Detach one device program from a cgroup (NotFound if it is not attached there)."""
    attr = _AttachAttr()
    attr.target_fd = _as_int(cgroup_fd)
    attr.attach_bpf_fd = _as_int(prog_fd)
    attr.attach_type = BPF_CGROUP_DEVICE
    _call(
        BPF_PROG_DETACH, attr, f"attachment of program fd {attr.attach_bpf_fd} to cgroup fd {attr.target_fd}"
    )


# --- querying ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """The device programs of one cgroup, in the kernel's run order.

    ``prog_flags`` holds per-program attach flags where the kernel reports them (Linux 6.0+,
    non-effective queries only); otherwise ``None``.  ``revision`` is 0 before Linux 6.6.
    """

    ids: list[int]
    attach_flags: int
    prog_flags: list[int] | None
    revision: int
    effective: bool


def prog_query(cgroup_fd: Fd | int, *, effective: bool = False) -> Query:
    """List the device programs attached to a cgroup (``effective``: also those inherited)."""
    capacity = _QUERY_START
    while True:
        ids = (_u32 * capacity)()
        flags = (_u32 * capacity)()
        attr = _QueryAttr()
        attr.target_fd = _as_int(cgroup_fd)
        attr.attach_type = BPF_CGROUP_DEVICE
        attr.query_flags = BPF_F_QUERY_EFFECTIVE if effective else 0
        attr.prog_ids = ctypes.addressof(ids)
        attr.prog_cnt = capacity
        if not effective:  # the kernel refuses per-program flags for effective queries
            attr.prog_attach_flags = ctypes.addressof(flags)
        ret, err = _raw_bpf(BPF_PROG_QUERY, attr)
        if ret < 0 and err == errno.ENOSPC:
            capacity = max(capacity * 2, attr.prog_cnt)
            continue
        if ret < 0:
            raise _fail(BPF_PROG_QUERY, err, f"cgroup fd {attr.target_fd}")
        count = attr.prog_cnt
        # Kernels before 6.0 ignore prog_attach_flags and leave it zero: then there is no report.
        per_prog = list(flags[:count]) if not effective and any(flags[:count]) else None
        return Query(
            ids=list(ids[:count]),
            attach_flags=attr.attach_flags,
            prog_flags=per_prog,
            revision=attr.revision,
            effective=effective,
        )


def prog_fd_by_id(prog_id: int) -> Fd:
    """Open a program by its id (NotFound once it has been freed)."""
    attr = _GetIdAttr()
    attr.id = prog_id
    return Fd(_call(BPF_PROG_GET_FD_BY_ID, attr, f"bpf program id {prog_id}"))


@dataclass(frozen=True, slots=True)
class ProgInfo:
    """What the kernel says about a loaded program.

    ``xlated`` is exactly what ``bpftool prog dump xlated id N file F`` writes (8 bytes per
    instruction); ``xlated_readable`` is False when the kernel withheld it (JIT constant blinding
    or kptr restrictions leave it empty or zeroed) — cgdev must then say so, never guess.
    ``blinded`` is True when the readable instructions are the JIT-hardened rewrite (constants
    split through the verifier's hidden AX register), not what the loader wrote.
    """

    id: int
    type: int
    name: str
    tag: str
    load_time: int
    created_by_uid: int
    xlated: bytes
    xlated_readable: bool
    blinded: bool
    xlated_len: int
    jited_len: int
    run_time_ns: int
    run_cnt: int
    nr_map_ids: int
    btf_id: int
    gpl_compatible: bool
    verified_insns: int

    @property
    def insn_count(self) -> int:
        return self.xlated_len // INSN_SIZE


def _uses_aux_register(xlated: bytes) -> bool:
    regs = xlated[1::INSN_SIZE]
    return any((r & 0x0F) == BPF_REG_AX or (r >> 4) == BPF_REG_AX for r in regs)


def _get_info(fd: int, info: _ProgInfo) -> None:
    attr = _InfoAttr()
    attr.bpf_fd = fd
    attr.info_len = ctypes.sizeof(info)
    attr.info = ctypes.addressof(info)
    _call(BPF_OBJ_GET_INFO_BY_FD, attr, f"bpf object fd {fd}")


def prog_info(fd: Fd | int) -> ProgInfo:
    """Two passes: the first sizes the xlated buffer, the second fills it."""
    raw_fd = _as_int(fd)
    sizing = _ProgInfo()
    _get_info(raw_fd, sizing)
    xlated_len = sizing.xlated_prog_len
    xlated = b""
    info = sizing
    if xlated_len:
        buf = ctypes.create_string_buffer(xlated_len)
        info = _ProgInfo()
        info.xlated_prog_len = xlated_len
        info.xlated_prog_insns = ctypes.addressof(buf)
        _get_info(raw_fd, info)
        # The kernel clears the pointer when it refuses the raw dump; the length may have grown.
        if info.xlated_prog_insns:
            xlated = buf.raw[: min(xlated_len, info.xlated_prog_len)]
    readable = bool(xlated) and any(xlated)
    return ProgInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(),
        load_time=info.load_time,
        created_by_uid=info.created_by_uid,
        xlated=xlated if readable else b"",
        xlated_readable=readable,
        blinded=readable and _uses_aux_register(xlated),
        xlated_len=sizing.xlated_prog_len,
        jited_len=info.jited_prog_len,
        run_time_ns=info.run_time_ns,
        run_cnt=info.run_cnt,
        nr_map_ids=info.nr_map_ids,
        btf_id=info.btf_id,
        gpl_compatible=bool(info.gpl_compatible & 1),
        verified_insns=info.verified_insns,
    )


# --- pins, cgroups, stats ---------------------------------------------------------------------


def obj_pin(fd: Fd | int, path: str) -> None:
    """Pin a program in a bpffs (systemd's BPFProgram= and crun read pins)."""
    encoded = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr()
    attr.pathname = ctypes.addressof(encoded)
    attr.bpf_fd = _as_int(fd)
    ret, err = _raw_bpf(BPF_OBJ_PIN, attr)
    if ret < 0:
        if err == errno.EEXIST:
            raise EnvError(f"bpf(BPF_OBJ_PIN): pin {path} already exists")
        if err == errno.EPERM and os.geteuid() == 0:
            raise NeedsRoot(
                f"bpf(BPF_OBJ_PIN) refused {path}: {errno_text(err)} (is it on a bpf filesystem?)"
            )
        raise _fail(BPF_OBJ_PIN, err, f"pin directory of {path}")


def obj_get(path: str) -> Fd:
    """Open a pinned object."""
    encoded = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr()
    attr.pathname = ctypes.addressof(encoded)
    ret, err = _raw_bpf(BPF_OBJ_GET, attr)
    if ret < 0 and err in (errno.EACCES, errno.EPERM) and os.geteuid() == 0 and os.path.exists(path):
        # root is refused only for a file that is not a pin (or not on a bpf filesystem)
        raise InputError(f"pin {path}: not a pinned BPF object ({errno_text(err)})")
    if ret < 0:
        raise _fail(BPF_OBJ_GET, err, f"pin {path}")
    return Fd(ret)


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


@contextlib.contextmanager
def bpf_stats(enabled: bool = True) -> Iterator[None]:
    """Turn run-time statistics (run_time_ns, run_cnt) on or off for the duration.

    BPF_ENABLE_STATS holds them on for as long as its fd is open and restores itself even if we
    crash; only when it is unavailable (or to turn stats off) is the sysctl written and restored.
    """
    if enabled:
        attr = _StatsAttr()
        attr.type = BPF_STATS_RUN_TIME
        ret, err = _raw_bpf(BPF_ENABLE_STATS, attr)
        if ret >= 0:
            with Fd(ret):
                yield
            return
        if err in (errno.EPERM, errno.EACCES):
            raise _fail(BPF_ENABLE_STATS, err, "run-time statistics")
    with _sysctl(_STATS_SYSCTL, "1" if enabled else "0"):
        yield


@contextlib.contextmanager
def _sysctl(path: str, value: str) -> Iterator[None]:
    try:
        with open(path) as fh:
            previous = fh.read().strip()
        with open(path, "w") as fh:
            fh.write(value)
    except PermissionError:
        raise NeedsRoot(f"writing {path} needs root") from None
    except OSError as exc:
        raise EnvError(f"cannot set {path}: {errno_text(exc.errno or errno.EIO)}") from None
    try:
        yield
    finally:
        with open(path, "w") as fh:
            fh.write(previous)
