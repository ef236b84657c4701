"""Entitlements: what cgdev granted or revoked on which container, kept across runs.

One small JSON file (``/var/lib/cgdev/entitlements.json``; ``CGDEV_STATE_DIR`` moves it, for tests
and for hosts with another state root).  Why it exists: a grant is an intent that outlives the
command — the watcher (issue 8) restores it when something re-applies an older policy, and a grant
killed mid-way is finished by a rerun.  So the intent is written *before* anything is applied
(``status: pending``) and marked ``done`` after verification; a rolled-back change restores the
previous entry.

Written atomically (a temporary file in the same directory, fsync, rename) under an exclusive
``flock`` so concurrent grants never lose each other's entries.  One fsync per write, not two: the
file's fsync before the rename is what makes the rename atomic after a power loss (the old file
or the whole new one, never an empty or torn one).  The directory's fsync would only make the
rename itself survive a power loss, and a power loss also takes every change the entry is about
(programs, runtime unit properties, the container's cgroup, after which the entry is dropped);
against a killed ``cgdev`` (the crash that matters) the rename is durable once it returns.
Entries whose cgroup no longer exists (the container is gone) are dropped on every read.

One file, several views: a cgroup path means something only in the cgroup namespace it was written
from (the OCI hook of a nested systemd such as the lab, or of a node container, writes
``/machine.slice/...``; the host's ``cgdev grant`` writes ``/cgdev-lab/machine.slice/...`` for the
same container).  So each entry records its writer's namespace (``cgroup_ns``, the inode of
``/proc/self/ns/cgroup``), and a process reads, prunes and edits only the entries of its own view;
the others are kept as they are, because from here a path of another view looks gone when it is
not (the first version pruned them, and a hook's grant and a host grant kept deleting each other's
entries).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from typing import Final

import msgspec

from cgdev.errors import EnvError, InputError

DEFAULT_STATE_DIR: Final = "/var/lib/cgdev"
STATE_FILE: Final = "entitlements.json"
SCHEMA_VERSION: Final = 1


class Entitlement(msgspec.Struct, frozen=True, kw_only=True):
    """The current entitlement of one container on one device.

    ``granted`` is the access cgdev has granted on top of the runtime's policy ("" after a revoke
    of all of it); ``revoked`` what cgdev has taken away; ``change`` the last operation.
    """

    cgroup: str
    container_id: str | None
    target: str
    type: str
    major: int
    minor: int
    granted: str
    revoked: str
    change: str
    status: str  # pending | done
    when: str
    why: str = ""
    cgroup_ns: int = 0  # the writer's cgroup namespace (inode); 0: written before it was recorded

    @property
    def in_this_view(self) -> bool:
        """Whether ``cgroup`` names a path in this process's cgroup namespace (entries written
        before the namespace was recorded count as this view's, as they were then read)."""
        return self.cgroup_ns in (0, own_cgroup_ns())

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.cgroup, self.type, self.major, self.minor)


class StateFile(msgspec.Struct, frozen=True):
    version: int = SCHEMA_VERSION
    entries: list[Entitlement] = msgspec.field(default_factory=list)


def own_cgroup_ns() -> int:
    """This process's cgroup namespace (the inode of ``/proc/self/ns/cgroup``; 0 when unknown).
    Not cached: a process may unshare its cgroup namespace, and a stat costs microseconds."""
    try:
        return os.stat("/proc/self/ns/cgroup").st_ino
    except OSError:
        return 0


def state_dir() -> str:
    return os.environ.get("CGDEV_STATE_DIR", DEFAULT_STATE_DIR)


def state_path() -> str:
    return os.path.join(state_dir(), STATE_FILE)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _decode(raw: bytes, path: str) -> StateFile:
    try:
        state = msgspec.json.decode(raw, type=StateFile)
    except msgspec.DecodeError as err:
        raise InputError(f"is not a cgdev entitlements file: {err}", field="state", value=path) from None
    if state.version != SCHEMA_VERSION:
        raise InputError(
            f"has schema version {state.version}, expected {SCHEMA_VERSION}", field="state", value=path
        )
    return state


def read(alive: Callable[[str], bool] | None = None, *, every_view: bool = False) -> list[Entitlement]:
    """This view's entries, without those whose cgroup ``alive`` says is gone; with
    ``every_view`` the other namespaces' entries too (never pruned: their paths are not ours)."""
    path = state_path()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return []
    except PermissionError:
        raise EnvError(f"reading {path} needs root") from None
    entries = _decode(raw, path).entries
    return [
        e
        for e in entries
        if (e.in_this_view and (alive is None or alive(e.cgroup))) or (every_view and not e.in_this_view)
    ]


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    directory = state_dir()
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(
            os.path.join(directory, ".entitlements.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
    except PermissionError:
        raise EnvError(f"writing cgdev's state under {directory} needs root") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(entries: list[Entitlement]) -> None:
    path = state_path()
    tmp = f"{path}.tmp-{os.getpid()}"
    data = msgspec.json.format(msgspec.json.encode(StateFile(SCHEMA_VERSION, entries)), indent=2)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def update(
    change: Callable[[dict[tuple[str, str, int, int], Entitlement]], None],
    alive: Callable[[str], bool] | None = None,
) -> None:
    """Read, let ``change`` edit this view's entries (keyed by cgroup and device), write back
    atomically with the other views' entries as they were."""
    with _locked():
        every = read(alive, every_view=True)
        entries = {e.key: e for e in every if e.in_this_view}
        change(entries)
        _write([e for e in every if not e.in_this_view] + list(entries.values()))


def to_json(entries: list[Entitlement]) -> list[dict[str, object]]:
    return [msgspec.to_builtins(e) for e in entries]


def current(target: str | None = None) -> list[Entitlement]:
    """The entitlements of containers that still exist (gone ones of this view are dropped as they
    are read; other views' are listed as they are), only those of ``target`` (a container id or
    unique prefix, a target as given, or a cgroup)."""
    import os

    from cgdev.adapters import cgroupfs

    def alive(cgroup: str) -> bool:
        return os.path.isdir(cgroupfs.cgroup_path(cgroup))

    entries = read(alive, every_view=True)
    if target:
        entries = [
            e
            for e in entries
            if target in (e.container_id, e.target, e.cgroup) or (e.container_id or "").startswith(target)
        ]
    return entries
