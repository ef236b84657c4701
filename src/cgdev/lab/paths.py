"""Where a lab lives: one fixed set of names per stack, so there is exactly one lab per stack.

A *stack* is the set of systemd, D-Bus and runtimes the lab runs: ``host`` (the machine's own
packages) or a Debian suite (``bookworm``, ``trixie``, ``sid``) run from a debootstrap root.  Labs
of different stacks run side by side; the host stack keeps the original names (``STATE_DIR``,
``VAR_DIR``, cgroup ``cgdev-lab``), another stack gets ``-<stack>`` / ``stacks/<stack>`` ones.
Every lab module asks ``current_stack()``; the CLI's ``--stack`` and the tests select one with
``using_stack`` (a context variable, so the selection is scoped and never leaks between callers).

The names differ from the bash prototype's (``realstack``) on purpose: both may run on one
machine at the same time while the D-Bus adapter is developed against the prototype.  Everything
under the state dir and the cgroup vanish with ``cgdev lab down``; the var dir keeps the crun
build, the rootfs and the memlock shim so the next ``up`` takes about a second.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
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
ROOTS_DIR: Final = VAR_DIR / "roots"
HOST_STACK: Final = "host"
# The suites a lab can be built from (debootstrap roots); ``host`` uses the machine's packages.
SUITES: Final = ("bookworm", "trixie", "sid")
STACK_NAMES: Final = (HOST_STACK, *SUITES)
# Inside the lab (its private /run): a tmpfs without nodev holding the probe nodes.
PROBE_DIR_IN_LAB: Final = "/run/cgdev-dev"
LAB_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Stack:
    """One lab's names: its state dir, var dir, lock, cgroup and (for a suite) its root."""

    name: str = HOST_STACK

    @property
    def is_host(self) -> bool:
        return self.name == HOST_STACK

    @property
    def suffix(self) -> str:
        return "" if self.is_host else f"-{self.name}"

    @property
    def state_dir(self) -> Path:
        return STATE_DIR if self.is_host else Path(f"{STATE_DIR}{self.suffix}")

    @property
    def lock_file(self) -> Path:
        return LOCK_FILE if self.is_host else Path(f"/run/cgdev-lab{self.suffix}.lock")

    @property
    def var_dir(self) -> Path:
        """Bundles, rootfs, builds; for a suite also bind-mounted at the same path inside its root."""
        return VAR_DIR if self.is_host else VAR_DIR / "stacks" / self.name

    @property
    def cgroup_name(self) -> str:
        return f"{CGROUP_NAME}{self.suffix}"

    @property
    def root_dir(self) -> Path | None:
        """The debootstrap root the lab pivots into; None: the host's own / (the host stack)."""
        return None if self.is_host else ROOTS_DIR / self.name


def check_stack(value: str) -> Stack:
    if value not in STACK_NAMES:
        raise InputError(f"--stack: {value!r} is not one of {', '.join(STACK_NAMES)}")
    return Stack(value)


_CURRENT: contextvars.ContextVar[Stack | None] = contextvars.ContextVar("cgdev_lab_stack", default=None)


def current_stack() -> Stack:
    """The stack the lab calls act on: the host's unless ``using_stack`` chose another."""
    return _CURRENT.get() or Stack()


@contextlib.contextmanager
def using_stack(stack: Stack | str) -> Iterator[Stack]:
    """Every lab call inside this block acts on ``stack``'s lab."""
    chosen = stack if isinstance(stack, Stack) else check_stack(stack)
    token = _CURRENT.set(chosen)
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)


def _current_state_dir() -> Path:
    return current_stack().state_dir


@dataclass(frozen=True, slots=True)
class StateFiles:
    """The files that describe a running lab (all on the host's /run, gone after ``down``)."""

    root: Path = field(default_factory=_current_state_dir)

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
    """Where the current stack's lab cgroup is (or would be), under the host's cgroup2 mount."""
    from cgdev.adapters.cgroupfs import cgroup2_mount

    return Path(cgroup2_mount()) / current_stack().cgroup_name
