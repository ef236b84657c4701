"""How the short-lived executables (``cgdev``, ``cgdev-hook``, ``cgdev-runtime``) run and end.

Why: each of them is a whole process on someone's critical path (a grant is waited for, the hook
and the wrapper run for every container an engine creates), and two fixed costs of an ordinary
Python process are pure waste for them (measured as CPU time over a grant: ~13-20 ms):

- the cycle collector running again and again while a few hundred modules are imported: their
  objects are not garbage, and reference counting frees what is;
- the interpreter's teardown freeing every module and object one by one before the process ends
  anyway.

So ``run`` turns the collector off (a command that may run for long turns it back on itself, as
``cgdev lab`` does), calls ``main``, runs the exit handlers (the kernel probe's tmpfs is unmounted
by one), flushes stdout and stderr and leaves with ``os._exit``.  Non-daemon threads are not
joined: none of the short-lived paths starts one (the D-Bus hello thread is a daemon).  An
uncaught exception other than ``SystemExit`` is a bug: it propagates, with its traceback, into the
interpreter's ordinary exit.

This module is imported by the hook before it knows whether it has any work, so it imports only
what the interpreter has loaded at start-up anyway (``gc``, ``atexit``, ``os``, ``sys``).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

TYPE_CHECKING = False  # typing itself would cost the hook's fast path more than this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def run(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` with the collector off and end the process with its status, without teardown."""
    gc.disable()
    try:
        status = main()
    except SystemExit as stop:  # argparse's --help and usage errors, sys.exit in a command
        code = stop.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (contextlib is not loaded on the hook's fast path)
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: what could be said was said
            pass
    os._exit(status)
