"""The machine-wide lab lock: ``up``, ``down`` and container changes take it in turn."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from cgdev.errors import EnvError
from cgdev.lab.paths import current_stack, lab_timeout
from cgdev.lab.processes import wait_until

_lock_depth = 0  # how many lab_lock blocks of this process are open (the lock is re-entrant)


@contextlib.contextmanager
def lab_lock(timeout: float | None = None) -> Iterator[None]:
    """One lab per stack: ``up``, ``down`` and container changes take this lock in turn.

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
    lock_file = current_stack().lock_file
    with open(lock_file, "a+") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not wait_until(take, limit, 0.1):
            raise EnvError(f"another cgdev lab command holds {lock_file} (waited {limit:g}s)")
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)
