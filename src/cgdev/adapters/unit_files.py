"""The device settings a ``systemctl daemon-reload`` would load for one unit, read from its files.

Why: a unit with ``NeedDaemonReload=yes`` has files on disk newer than what systemd loaded, and a
daemon-reload reads them before it rebuilds the unit's device program (issue 8 item 5).  Every
runc scope shows it — runc writes ``DevicePolicy`` before ``DeviceAllow`` (runc #4612) — although
the drop-ins it leaves hold exactly the loaded values; reading them turns "the prediction holds
for set-property only" into an exact prediction, and the need-daemon-reload finding into noise
that can be dropped.

What systemd loads: the fragment (``FragmentPath``), then every drop-in ``NAME.d/*.conf`` in file
name order (``DropInPaths``, plus any drop-in written since the load in the runtime directories
systemd and runtimes write: ``/run/systemd/transient`` and ``*/system.control``; a name in a
higher-priority directory masks the same name in a lower one).  In them, ``DevicePolicy=`` sets,
``DeviceAllow=`` appends one entry and an empty ``DeviceAllow=`` resets the list.  Type-level
(``scope.d``) and prefix drop-ins are not read: a unit with one is reported as unknown.

Paths are systemd's; ``fs_root`` is where its filesystem is seen from here (``/proc/PID/root``
in the lab).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

import msgspec

# systemd's unit search path for the system manager, highest priority first (systemd.unit(5)).
_DROPIN_DIRS: Final = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)
_ACCESS_ORDER: Final = "rwm"


class UnitFileDevices(msgspec.Struct, frozen=True):
    """``DevicePolicy``/``DeviceAllow`` as the unit's files on disk give them, and the files read."""

    device_policy: str
    device_allow: tuple[tuple[str, str], ...]
    files: tuple[str, ...]


def normal_access(access: str) -> str:
    """systemd's spelling of an access string: letters in ``rwm`` order, empty meaning ``rwm``."""
    letters = set(access) & set(_ACCESS_ORDER)
    return "".join(c for c in _ACCESS_ORDER if c in letters) or _ACCESS_ORDER


def _logical_lines(text: str) -> list[str]:
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def apply_unit_text(text: str, policy: str, allow: list[tuple[str, str]]) -> str:
    """Apply one unit file's device settings to ``policy``/``allow`` (edited in place); returns
    the policy.  Pure: systemd's reading of the two keys, in any section."""
    for line in _logical_lines(text):
        if line.startswith("[") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key == "DevicePolicy":
            policy = value or "auto"
        elif key == "DeviceAllow":
            if not value:
                allow.clear()
                continue
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            path, _, access = value.partition(" ")
            allow.append((path, normal_access(access.strip())))
    return policy


def _dropins(fs_root: str, unit: str, listed: Sequence[str]) -> list[str]:
    """Drop-ins by file name (systemd's order), each name from its highest-priority directory."""
    by_name: dict[str, tuple[int, str]] = {}
    rank = {d: i for i, d in enumerate(_DROPIN_DIRS)}
    candidates = list(listed)
    for directory in _DROPIN_DIRS:
        here = os.path.join(fs_root, directory.lstrip("/"), f"{unit}.d")
        try:
            names = os.listdir(here)
        except OSError:
            continue
        candidates.extend(os.path.join(directory, f"{unit}.d", n) for n in names if n.endswith(".conf"))
    for path in candidates:
        priority = rank.get(os.path.dirname(os.path.dirname(path)), len(_DROPIN_DIRS))
        name = os.path.basename(path)
        if name not in by_name or priority < by_name[name][0]:
            by_name[name] = (priority, path)
    return [by_name[name][1] for name in sorted(by_name)]


def read_unit_devices(
    fs_root: str, unit: str, fragment: str, dropins: Sequence[str]
) -> UnitFileDevices | None:
    """What a daemon-reload would load, or None when a file cannot be read (unknown, never a guess)."""
    files = ([fragment] if fragment else []) + _dropins(fs_root, unit, dropins)
    policy = "auto"
    allow: list[tuple[str, str]] = []
    for path in files:
        try:
            with open(os.path.join(fs_root, path.lstrip("/")), encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            if path == fragment:
                return None  # a transient unit whose file is gone is not reloaded as it is
            continue
        except OSError:
            return None
        policy = apply_unit_text(text, policy, allow)
    return UnitFileDevices(policy, tuple(allow), tuple(files))
