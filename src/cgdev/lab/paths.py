"""Where the lab lives: one fixed set of names, so there is exactly one lab per machine.

The names differ from the bash prototype's (``realstack``) on purpose: both may run on one
machine at the same time while the D-Bus adapter is developed against the prototype.  Everything
under ``STATE_DIR`` and the cgroup vanish with ``cgdev lab down``; ``VAR_DIR`` keeps the crun
build, the rootfs and the memlock shim so the next ``up`` takes about a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cgdev.errors import InputError

CGROUP_NAME: Final = "cgdev-lab"
# The leaf cgroup that ``exec`` moves its caller into before entering the namespaces: a process
# left in the namespace's root cgroup would see its own cgroup as "/.." from inside.
ADMIN_CGROUP: Final = "cgdev-admin"
STATE_DIR: Final = Path("/run/cgdev-lab")
LOCK_FILE: Final = Path("/run/cgdev-lab.lock")
VAR_DIR: Final = Path("/var/lib/cgdev/lab")
# Inside the lab (its private /run): a tmpfs without nodev holding the probe nodes.
PROBE_DIR_IN_LAB: Final = "/run/cgdev-dev"
LAB_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class StateFiles:
    """The files that describe a running lab (all on the host's /run, gone after ``down``)."""

    root: Path = STATE_DIR

    @property
    def launcher_pid(self) -> Path:
        return self.root / "launcher.pid"

    @property
    def unshare_pid(self) -> Path:
        return self.root / "unshare.pid"

    @property
    def pid1(self) -> Path:
        return self.root / "pid1"

    @property
    def cgroup_root(self) -> Path:
        return self.root / "cgroup-root"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def containers(self) -> Path:
        return self.root / "containers"


def lab_timeout() -> float:
    """The bound on every wait (``CGDEV_LAB_TIMEOUT``, seconds): a hung step fails, never hangs."""
    raw = os.environ.get("CGDEV_LAB_TIMEOUT", "")
    if not raw:
        return LAB_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"CGDEV_LAB_TIMEOUT: {raw!r} is not a number of seconds") from None
    if value <= 0:
        raise InputError(f"CGDEV_LAB_TIMEOUT: {raw!r} must be positive")
    return value


def lab_cgroup() -> Path:
    """Where the lab's cgroup is (or would be): ``CGROUP_NAME`` under the host's cgroup2 mount."""
    from cgdev.adapters.cgroupfs import cgroup2_mount

    return Path(cgroup2_mount()) / CGROUP_NAME
