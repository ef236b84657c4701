"""The one error hierarchy of cgdev.

Every error a user can cause or meet carries the exit status it maps to (DESIGN.md §8), so the
CLI can print one line and exit without a traceback: 2 for bad input, 3 for an environment that
cannot do what was asked (no root, no cgroup2, systemd unreachable).
"""

from __future__ import annotations


class CgdevError(Exception):
    """Base class: a one-line message a user can act on, and an exit status."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(CgdevError):
    """Bad input: malformed rules, JSON, programs, targets.  Exit status 2."""

    exit_code = 2


class ProgramError(InputError):
    """A byte string that is not a well-formed device program (decoder, interpreter, lifter)."""


class EnvError(CgdevError):
    """The environment cannot do what was asked (privileges, kernel, systemd).  Exit status 3."""

    exit_code = 3


class NeedsRoot(EnvError):
    """EPERM/EACCES from bpf(2) or cgroupfs: the caller lacks CAP_SYS_ADMIN/CAP_BPF."""


class NotFound(InputError):
    """A named object (cgroup, program id, pin, container, unit) does not exist."""


class VerifierError(CgdevError):
    """The kernel refused to load a program; carries the verifier log."""

    exit_code = 3

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class SystemdError(EnvError):
    """systemd answered with a D-Bus error, or a job failed; carries systemd's own message."""


class BusUnreachable(EnvError):
    """No D-Bus system bus at the expected address."""
