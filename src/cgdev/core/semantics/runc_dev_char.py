"""Which spec devices runc drops from systemd's ``DeviceAllow``, by runc and systemd version.

runc under the systemd driver passes each allowed device to systemd as ``/dev/char/M:m`` (or
``/dev/block/M:m``).  Some releases first check that the path exists on the host and silently
skip the device when it does not ("skipping device /dev/char/195:255 for systemd"): systemd then
has no entry for it, and the next ``daemon-reload`` or ``set-property`` attaches a program that
denies it although it is in the spec (NVIDIA's nodes have no ``/dev/char`` links by default).

- runc < 1.1.3: no check (every device is passed);
- runc 1.1.3-1.1.4: skipped unless ``/dev/char/M:m`` exists;
- runc 1.1.5-1.1.6: skipped unless ``/dev/char/M:m`` or ``/sys/dev/char/M:m`` exists (reproduced
  in the lab with runc 1.1.5 + systemd 252);
- runc >= 1.1.7: the 1.1.5 check only when systemd < 240 (newer systemd parses the path itself).
  Measured: runc 1.3.6 + systemd 262 and runc 1.1.15 + systemd 257 keep ``/dev/char/195:255`` with
  neither path present, and the device survives a reload (tests/test_lab_stacks.py).

Unknown versions give ``None``: unknown, never assumed to keep the device.
"""

from __future__ import annotations

import enum
import re

from cgdev.core.semantics.systemd import systemd_major


class DevCharCheck(enum.Enum):
    """What runc checks on the host before passing a device to systemd."""

    NONE = "none"  # passed whatever exists
    DEV_CHAR = "dev-char"  # skipped unless /dev/char/M:m exists
    DEV_CHAR_OR_SYS = "dev-char-or-sys"  # skipped unless /dev/char/M:m or /sys/dev/char/M:m exists


SYSTEMD_PARSES_DEV_CHAR = 240  # from this systemd on, runc >= 1.1.7 no longer checks


def runc_version_tuple(version: str | None) -> tuple[int, ...] | None:
    """``1.1.5`` / ``1.3.6+ds1`` / ``runc version 1.1.15`` -> (1, 1, 5) / (1, 3, 6) / (1, 1, 15)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if match is None:
        return None
    return tuple(int(part) for part in match.groups(default="0"))


def dev_char_check(runc_version: str | None, systemd_version: str | None) -> DevCharCheck | None:
    """The check this runc makes under this systemd; None when either version needed is unknown."""
    runc = runc_version_tuple(runc_version)
    if runc is None:
        return None
    if runc < (1, 1, 3):
        return DevCharCheck.NONE
    if runc < (1, 1, 5):
        return DevCharCheck.DEV_CHAR
    if runc < (1, 1, 7):
        return DevCharCheck.DEV_CHAR_OR_SYS
    systemd = systemd_major(systemd_version)
    if systemd is None:
        return None
    return DevCharCheck.NONE if systemd >= SYSTEMD_PARSES_DEV_CHAR else DevCharCheck.DEV_CHAR_OR_SYS


def runc_passes_device(
    check: DevCharCheck | None, dev_char_exists: bool, sys_dev_char_exists: bool
) -> bool | None:
    """Whether runc puts the device into systemd's DeviceAllow (None: the check is unknown)."""
    if check is None:
        return None
    if check is DevCharCheck.NONE:
        return True
    if check is DevCharCheck.DEV_CHAR:
        return dev_char_exists
    return dev_char_exists or sys_dev_char_exists
