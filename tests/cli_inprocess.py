"""Run ``cgdev.cli.main.main`` in this process with stdout and stderr captured.

For tests that call the command line thousands of times (the fuzz harness) or need its exact
output at a given terminal width: a child process per call costs ~150 ms.  What is under test is
the CLI's own handling (its exception mapping, exit codes), so nothing is caught here except
argparse's ``SystemExit`` (its usage errors, exit 2), which is the CLI's documented path too.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str


class _Stream(io.TextIOWrapper):
    """A text stream with the ``.buffer`` ``print_json`` writes to, and a fixed isatty()."""

    def __init__(self, tty: bool = False, errors: str = "strict") -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def text(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode("utf-8", "replace")


def run_main(argv: Sequence[str], *, tty: bool = False) -> Ran:
    from cgdev.cli.main import main

    out, err = _Stream(tty), _Stream(errors="backslashreplace")  # as Python's own streams
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: usage errors (2), --help/--version (0)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        finally:
            sys.stdout.flush()
    return Ran(code, out.text(), err.text())
