"""``cgdev-hook``: the OCI hook's entry point, which must cost almost nothing when it has no work.

A runtime runs the hook for every container it creates (hooks.d ``when.always``), and almost all
of them are entitled to nothing.  So this module imports nothing beyond what the interpreter has
already loaded at startup, plus ``_json`` (the C scanner behind ``json``, without ``json``'s
import of ``re``): it reads the OCI state from stdin (bounded), parses it strictly, and exits 0
unless an annotation names a device (``cdi.k8s.io/*``, ``cgdev.io/devices``) or the node's
policy file can grant by image or namespace — one ``stat`` when there is no policy file.  Only
then is ``cgdev.hook.run`` (msgspec, the CDI reader, the repair machinery) imported.

Failure policy: ``--fail closed`` (the default) exits non-zero with one line on stderr, which the
runtime puts in its log and the container does not start; ``--fail open`` prints the line as a
warning and exits 0.  Either way nothing is granted on a failure.  A usage error in the hook's
own arguments (the hooks.d file) is exit 2 under both policies.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs the hook more than the rest of its fast path
if TYPE_CHECKING:
    from typing import Any

MAX_STATE_BYTES = 1 << 20  # an OCI state is a few kB; annotations are bounded by the engines
MAX_POLICY_BYTES = 1 << 20  # = cgdev.ops.entitled.MAX_POLICY_BYTES (a larger file is refused there)
DEFAULT_POLICY_PATH = "/etc/cgdev/policy.yaml"  # = cgdev.core.node_policy.DEFAULT_POLICY_PATH
_KEYS = (b"cdi.k8s.io/", b"cgdev.io/devices")
_USAGE = (
    "usage: cgdev-hook [--fail closed|open] [--policy FILE] [--cdi-dir DIR]... [--bundle-dir DIR]... "
    "[--log FILE] [--stage STAGE]  (the OCI state on stdin)"
)


class HookInputError(Exception):
    """Hostile or malformed input: one line, then the failure policy."""

    exit_code = 2


class Options:
    """The hook's arguments (parsed by hand: argparse alone would double the hook's cost)."""

    def __init__(self) -> None:
        self.fail_open = False
        self.policy = DEFAULT_POLICY_PATH
        self.cdi_dirs: list[str] = []
        self.bundle_dirs: list[str] = []
        self.log: str | None = None
        self.stage: str | None = None


def parse_options(argv: list[str]) -> Options:
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name not in ("--fail", "--policy", "--cdi-dir", "--bundle-dir", "--log", "--stage"):
            raise ValueError(f"unknown argument {arg!r}")
        if not eq:
            i += 1
            if i >= len(argv) or argv[i].startswith("--"):
                raise ValueError(f"{name} needs a value")
            value = argv[i]
        if name == "--fail":
            if value not in ("closed", "open"):
                raise ValueError(f"--fail {value!r}: not closed or open")
            opts.fail_open = value == "open"
        elif name == "--policy":
            opts.policy = value
        elif name == "--cdi-dir":
            opts.cdi_dirs.append(value)
        elif name == "--bundle-dir":
            opts.bundle_dirs.append(value)
        elif name == "--log":
            opts.log = value
        else:
            opts.stage = value
        i += 1
    return opts


def parse_json(data: bytes, what: str) -> Any:
    """Strict JSON (RFC 8259: no NaN, no trailing data) with only the C scanner loaded: the
    wrapper runtime's reader (``core.strict_json``), its error as one hook input line."""
    from cgdev.core.strict_json import JsonError, loads

    try:
        return loads(data)
    except JsonError as err:
        raise HookInputError(f"{what}: {err}") from None


class State:
    """The OCI state's fields the hook uses, checked (runtime-spec ``state``)."""

    def __init__(self, document: Any) -> None:
        if not isinstance(document, dict):
            raise HookInputError("state: not a JSON object")
        self.id = document.get("id")
        if not isinstance(self.id, str) or not self.id or len(self.id) > 1024 or not self.id.isprintable():
            raise HookInputError(f"state: field 'id' {_short(self.id)}: not a container id")
        status = document.get("status")
        if not isinstance(status, str):
            raise HookInputError(f"state: field 'status' {_short(status)}: not a string")
        self.status: str = status
        pid = document.get("pid", 0)
        if type(pid) is not int or pid < 0:
            raise HookInputError(f"state: field 'pid' {_short(pid)}: not a process id")
        self.pid: int = pid
        bundle = document.get("bundle")
        if not isinstance(bundle, str):
            raise HookInputError(f"state: field 'bundle' {_short(bundle)}: not a path")
        self.bundle: str = bundle
        annotations = document.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise HookInputError("state: field 'annotations': not an object of strings")
        self.annotations: dict[str, str] = annotations


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_state(stream: Any) -> State:
    data = stream.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise HookInputError(f"state: larger than {MAX_STATE_BYTES} bytes on stdin")
    return State(parse_json(data, "state"))


def may_entitle(state: State, policy_path: str) -> bool:
    """False when the container can be entitled to nothing: no annotation names a device and the
    node's policy grants nothing by image or namespace (no file: one stat)."""
    if any(key.startswith(("cdi.k8s.io/", "cgdev.io/devices")) for key in state.annotations):
        return True
    try:
        with open(policy_path, "rb") as fh:
            head = fh.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # an unreadable policy is the slow path's error to report
    return len(head) > MAX_POLICY_BYTES or b"images" in head or b"namespaces" in head


def log_line(opts: Options, line: str) -> None:
    """One line to stderr (the runtime's log) and, with ``--log``, appended to that file."""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    print(line, file=sys.stderr, flush=True)
    if opts.log:
        try:
            fd = os.open(
                opts.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass


def fail(opts: Options, who: str, message: str, exit_code: int) -> int:
    if opts.fail_open:
        log_line(opts, f"cgdev-hook: {who}warning (--fail open, nothing granted): {message}")
        return 0
    log_line(opts, f"cgdev-hook: {who}{message}")
    return exit_code or 1


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(_USAGE)
        return 0
    try:
        opts = parse_options(args)
    except ValueError as err:
        print(f"cgdev-hook: {err}\n{_USAGE}", file=sys.stderr)
        return 2
    state: State | None = None
    try:
        state = read_state(sys.stdin.buffer)
        if state.status == "stopped" or not may_entitle(state, opts.policy):
            return 0
        from cgdev.hook.run import run

        return run(state, opts)
    except HookInputError as err:
        return fail(opts, _who(state), str(err), err.exit_code)
    except Exception as err:  # a CgdevError (one line by design) or a bug: never a traceback here
        from cgdev.errors import CgdevError

        if isinstance(err, CgdevError):
            return fail(opts, _who(state), err.message, err.exit_code)
        return fail(opts, _who(state), f"internal error: {type(err).__name__}: {err}", 1)


def _who(state: State | None) -> str:
    return f"{state.id}: " if state is not None else ""


def entry() -> None:
    """The ``cgdev-hook`` executable: ``main`` as a short-lived process (``cgdev.short_lived``:
    no cycle collection while the grant path imports, no teardown)."""
    from cgdev.short_lived import run

    run(main)


if __name__ == "__main__":
    entry()
