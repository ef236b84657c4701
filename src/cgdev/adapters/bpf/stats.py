"""Run-time statistics of device programs (run_time_ns, run_cnt), switched on for a block."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import Final

from cgdev.adapters.bpf.abi import (
    BPF_ENABLE_STATS,
    BPF_STATS_RUN_TIME,
    StatsAttr,
    bpf_error,
    errno_text,
    raw_bpf,
)
from cgdev.adapters.bpf.fd import Fd
from cgdev.errors import EnvError, NeedsRoot

STATS_SYSCTL: Final = "/proc/sys/kernel/bpf_stats_enabled"


@contextlib.contextmanager
def bpf_stats(enabled: bool = True) -> Iterator[None]:
    """Turn run-time statistics (run_time_ns, run_cnt) on or off for the duration.

    BPF_ENABLE_STATS holds them on for as long as its fd is open and restores itself even if we
    crash; only when it is unavailable (or to turn stats off) is the sysctl written and restored.
    """
    if enabled:
        attr = StatsAttr()
        attr.type = BPF_STATS_RUN_TIME
        ret, err = raw_bpf(BPF_ENABLE_STATS, attr)
        if ret >= 0:
            with Fd(ret):
                yield
            return
        if err in (errno.EPERM, errno.EACCES):
            raise bpf_error(BPF_ENABLE_STATS, err, "run-time statistics")
    with _sysctl(STATS_SYSCTL, "1" if enabled else "0"):
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
