"""Which device nodes are safe to open: the kernel probe must never run a driver's open.

Opening a node whose major has a driver runs that driver's open (char 10:130 arms a hardware
watchdog that reboots the machine; 1:1 is /dev/mem).  Opens are therefore refused for every
(type, major) registered in /proc/devices (or loadable as a module), except a tiny allowlist of
nodes whose open has no effect.  mknod never reaches a driver and is always safe.
"""

from __future__ import annotations

import os
import re
from typing import Final

from cgdev.core.model import ACC_M, MKNOD_MAJOR_MAX, MKNOD_MINOR_MAX, REQUEST_MASKS, DevType, Request

# Nodes whose open is free of side effects even though a driver exists: null, zero, full, random,
# urandom, and /dev/tty (with O_NOCTTY it only re-opens an existing controlling tty, else ENXIO).
# Deliberately not: 5:1 console and other ttys (an open/close pair can toggle modem lines or hang up
# a line), 5:2 ptmx (allocates a pty pair), 1:1/1:4 memory and ports, 10:* misc (the watchdog).
OPEN_ALLOWLIST: Final[frozenset[tuple[str, int, int]]] = frozenset(
    {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0)}
)

PROC_DEVICES: Final = "/proc/devices"


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


def unsafe_majors() -> dict[str, set[int]]:
    registered = registered_majors()
    autoload = autoload_majors()
    return {t: registered[t] | autoload[t] for t in ("c", "b")}


def driverless_majors(dev_type: DevType) -> list[int]:
    """Majors (0..4095) with no driver and no auto-loadable module: any minor is safe to open."""
    if dev_type not in ("b", "c"):
        raise ValueError(f"type: {dev_type!r} is not 'b' or 'c'")
    unsafe = unsafe_majors()[dev_type]
    return [m for m in range(MKNOD_MAJOR_MAX + 1) if m not in unsafe]


def check_request(request: Request, unsafe: dict[str, set[int]]) -> None:
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
    """Whether the kernel probe may open this node: allowlisted, or its major has no driver."""
    if request.type not in ("b", "c"):
        return False
    return _safe_to_open(request, unsafe_majors())
