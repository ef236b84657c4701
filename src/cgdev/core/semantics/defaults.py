"""The devices each runtime forces into every container, whatever the spec says.

Kept as data, in each runtime's own source order, because the order is visible: crun tests its
list (reversed) before the spec's rules, runc appends its list after them, so neither lets a spec
deny take a default device away (anchors §1.1, §2.1, (c).2).
"""

from __future__ import annotations

from typing import Final

from cgdev.core.model import ACC_ALL, ACC_M, Rule


def _dev(major: int, minor: int | None) -> Rule:
    return Rule(True, "c", major, minor, ACC_ALL)


_MKNOD_ANY: Final = (Rule(True, "c", None, None, ACC_M), Rule(True, "b", None, None, ACC_M))

# crun 1.21 ``default_devices[]`` (cgroup-resources.c): null, random, full, tty, zero, urandom,
# console, pts, ptmx, tun.  Confirmed by the real crun 1.21 program in the reference evidence.
CRUN_DEFAULTS: Final[tuple[Rule, ...]] = (
    *_MKNOD_ANY,
    _dev(1, 3),
    _dev(1, 8),
    _dev(1, 7),
    _dev(5, 0),
    _dev(1, 5),
    _dev(1, 9),
    _dev(5, 1),
    _dev(136, None),
    _dev(5, 2),
    _dev(10, 200),
)

# crun 1.8.1 (Debian 12's package) predates the tun default and the sentinel below: its programs
# are crun 1.21's without both (the captured crun181 programs and the lab's crun 1.8.1 agree).
CRUN_1_8_DEFAULTS: Final[tuple[Rule, ...]] = CRUN_DEFAULTS[:-1]

# crun walks ``default_devices[]`` backwards starting at its ``{0,0,0,NULL}`` terminator, which
# becomes a dead block "char 0:0, access must be 0 -> allow" (the kernel never checks rdev 0).
CRUN_SENTINEL: Final = Rule(True, "c", 0, 0, 0)

# runc 1.1.5 ``AllowedDevices`` (specconv): no console 5:1; with the device path of each entry,
# because runc drops a default whose path the spec's ``linux.devices`` also lists.
RUNC_DEFAULTS: Final[tuple[tuple[str | None, Rule], ...]] = (
    (None, _MKNOD_ANY[0]),
    (None, _MKNOD_ANY[1]),
    ("/dev/null", _dev(1, 3)),
    ("/dev/random", _dev(1, 8)),
    ("/dev/full", _dev(1, 7)),
    ("/dev/tty", _dev(5, 0)),
    ("/dev/zero", _dev(1, 5)),
    ("/dev/urandom", _dev(1, 9)),
    (None, _dev(136, None)),
    (None, _dev(5, 2)),
    (None, _dev(10, 200)),
)


def forced_defaults(semantics: str) -> tuple[Rule, ...]:
    """The devices a runtime allows whatever the spec says (none for ordered, systemd, v1): what
    a runtime may add to a rule list without that being a surprise."""
    if semantics == "runc":
        return tuple(rule for _path, rule in RUNC_DEFAULTS)
    return {"crun": CRUN_DEFAULTS, "crun-1.8": CRUN_1_8_DEFAULTS}.get(semantics, ())
