"""The machine-wide lab lock: ``up``, ``down`` and container changes take it in turn."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from cgdev.errors import EnvError
from cgdev.lab.paths import LOCK_FILE, lab_timeout
from cgdev.lab.processes import wait_until

_lock_depth = 0  # how many lab_lock blocks of this process are open (the lock is re-entrant)


@contextlib.contextmanager
def lab_lock(timeout: float | None = None) -> Iterator[None]:
    """One lab per machine: ``up``, ``down`` and container changes take this lock in turn.

    Re-entrant within a process (``down`` deletes containers under the lock it holds): flock
    conflicts between two opens of the file even in one process, so a nested take would wait
    for itself until the timeout.
    """
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    limit = lab_timeout() if timeout is None else timeout
    with open(LOCK_FILE, "a+") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not wait_until(take, limit, 0.1):
            raise EnvError(f"another cgdev lab command holds {LOCK_FILE} (waited {limit:g}s)")
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)
