"""The one error hierarchy of cgdev.

Every error a user can cause or meet carries the exit status it maps to (DESIGN.md §8), so a front
end can print one line and exit without a traceback: 2 for bad input, 3 for an environment that
cannot do what was asked (no root, no cgroup2, systemd unreachable).

Errors about an input name the input by its *field* (``device``, ``access``, ``runtime_root``…)
and carry the offending *value*, not a command-line flag: the same operation is called by the CLI,
the OCI hook and the node daemon, and each front end spells the field its own way
(``with_flags`` does it for the CLI).
"""

from __future__ import annotations

TYPE_CHECKING = False  # collections.abc is not free, and the wrapper runtime imports this module
if TYPE_CHECKING:
    from collections.abc import Mapping


class CgdevError(Exception):
    """Base class: a one-line message a user can act on, and an exit status.

    ``CgdevError(message)`` is a plain message; ``CgdevError(why, field=..., value=...)`` reads
    ``field 'value': why`` (``value`` shown with repr, as a user must see spaces and quotes).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.why = message
        self.field = field
        self.value = value

    @property
    def message(self) -> str:
        return self.render()

    def render(self, field_names: Mapping[str, str] | None = None) -> str:
        """The one line, with ``field`` spelled as ``field_names`` says (a front end's flags)."""
        if self.field is None:
            return self.why
        name = (field_names or {}).get(self.field, self.field)
        if self.value is None:
            return f"{name}: {self.why}"
        return f"{name} {self.value!r}: {self.why}"

    def __str__(self) -> str:
        return self.render()


class InputError(CgdevError):
    """Bad input: malformed rules, JSON, programs, targets.  Exit status 2."""

    exit_code = 2


class ProgramError(InputError):
    """A byte string that is not a well-formed device program (decoder, interpreter, lifter)."""


class NotFound(InputError):
    """A named object (cgroup, program id, pin, container, unit) does not exist."""


class EnvError(CgdevError):
    """The environment cannot do what was asked (privileges, kernel, systemd).  Exit status 3."""

    exit_code = 3


class NeedsRoot(EnvError):
    """EPERM/EACCES from bpf(2) or cgroupfs: the caller lacks CAP_SYS_ADMIN/CAP_BPF."""


class SystemdError(EnvError):
    """systemd answered with a D-Bus error, or a job failed; carries systemd's own message."""


class BusUnreachable(EnvError):
    """No D-Bus system bus at the expected address."""


class VerifierError(EnvError):
    """The kernel refused to load a program; carries the verifier log.

    An environment error only when the program is one the kernel should accept (a well-formed
    device program of cgdev's or a runtime's shape): a malformed program is a ``ProgramError``.
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class LifterDisagreement(CgdevError):
    """The lifter and the interpreter disagree on a request: a bug in cgdev, never a verdict.

    Exit status 3, not 1, so that no script reads a bug as "denied".
    """

    exit_code = 3


def with_flags(err: CgdevError, flags: Mapping[str, str]) -> str:
    """The error's line with its field written as the command-line flag that set it."""
    return err.render(flags)
