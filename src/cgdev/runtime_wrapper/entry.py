"""``cgdev-runtime``: a wrapper OCI runtime that puts entitled devices into the spec, then execs the
real runtime.

An engine runs its runtime binary for every step of every container (create, start, state, kill,
delete, exec...), so this entry imports nothing beyond the interpreter's own startup set and the
pure argument reader: every subcommand but ``create``/``run`` is a plain ``execv`` of the real
runtime with the engine's arguments.  On ``create``/``run`` it asks ``ops.spec_inject`` to add the
devices the node's policy entitles the container to (``linux.devices``, ``linux.resources.devices``
and the CDI edits) to the bundle's config.json, atomically, and then execs the runtime with the
same arguments: the runtime, systemd and every later reload see the devices in the spec.

Configuration (an engine passes only its own arguments): leading wrapper options, which are removed
before the exec, or the environment:

    --runtime-path PATH   CGDEV_RUNTIME_PATH   the real runtime (default: crun, else runc, on PATH)
    --policy FILE         CGDEV_POLICY         the node's policy (default /etc/cgdev/policy.yaml)
    --cdi-dir DIR...      CGDEV_CDI_DIRS (:)   CDI spec dirs (default /etc/cdi, /var/run/cdi)
    --bundle-dir DIR...   CGDEV_BUNDLE_DIRS (:) more allowed bundle roots (beside the engines')
    --fail closed|open    CGDEV_FAIL           failure policy (default closed)

Failure policy: a bundle or config.json that cannot be read safely, a broken policy or spec, or a
create whose arguments cannot be read, is one line on stderr and in the runtime's ``--log`` (in its
``--log-format``, where the engine looks for a failed create's reason); ``closed`` then exits
non-zero without running the runtime, ``open`` runs it with the spec unchanged.  A refused claim
(an annotation naming a device the policy does not trust) is not a failure: one warning line, and
nothing granted for it.
"""

from __future__ import annotations

import os
import sys

from cgdev.runtime_wrapper.oci_cli import CliError, Invocation, parse

PROG = "cgdev-runtime"
_OPTIONS = ("--runtime-path", "--policy", "--cdi-dir", "--bundle-dir", "--fail")
_DEFAULT_RUNTIMES = ("crun", "runc")


class Options:
    def __init__(self, env: dict[str, str] | os._Environ[str]) -> None:
        self.runtime_path = env.get("CGDEV_RUNTIME_PATH", "")
        self.policy = env.get("CGDEV_POLICY", "/etc/cgdev/policy.yaml")
        self.cdi_dirs = [d for d in env.get("CGDEV_CDI_DIRS", "").split(":") if d]
        self.bundle_dirs = [d for d in env.get("CGDEV_BUNDLE_DIRS", "").split(":") if d]
        fail = env.get("CGDEV_FAIL", "closed")
        if fail not in ("closed", "open"):
            raise CliError(f"CGDEV_FAIL {fail!r}: not closed or open")
        self.fail_open = fail == "open"


def split_options(argv: list[str], env: dict[str, str] | os._Environ[str]) -> tuple[Options, list[str]]:
    """The wrapper's own leading options, and the runtime's arguments after them."""
    opts = Options(env)
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name not in _OPTIONS:
            break
        if not eq:
            i += 1
            if i >= len(argv):
                raise CliError(f"{name} needs a value")
            value = argv[i]
        if name == "--runtime-path":
            opts.runtime_path = value
        elif name == "--policy":
            opts.policy = value
        elif name == "--cdi-dir":
            opts.cdi_dirs.append(value)
        elif name == "--bundle-dir":
            opts.bundle_dirs.append(value)
        elif value in ("closed", "open"):
            opts.fail_open = value == "open"
        else:
            raise CliError(f"--fail {value!r}: not closed or open")
        i += 1
    return opts, argv[i:]


def find_runtime(opts: Options) -> str:
    """The real runtime's path; never this wrapper itself (an engine may call it ``runc``)."""
    me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    wanted = [opts.runtime_path] if opts.runtime_path else list(_DEFAULT_RUNTIMES)
    for name in wanted:
        dirs = [""] if "/" in name else os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":")
        for directory in dirs:
            path = os.path.join(directory, name) if directory else name
            if os.path.isfile(path) and os.access(path, os.X_OK) and os.path.realpath(path) != me:
                return os.path.abspath(path)
    if opts.runtime_path:
        raise OSError(f"--runtime-path {opts.runtime_path!r}: not an executable file")
    raise OSError("no crun or runc on PATH (give the real runtime with --runtime-path or CGDEV_RUNTIME_PATH)")


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _json_string(text: str) -> str:
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def log(inv: Invocation | None, level: str, line: str, *, stderr: bool = True) -> None:
    """One line to stderr and, when the runtime has a ``--log`` file, to it in its format."""
    line = _one_line(line)
    if stderr:
        print(f"{PROG}: {line}", file=sys.stderr, flush=True)
    if inv is None or not inv.log:
        return
    import time

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    msg = f"{PROG}: {line}"
    if inv.log_format == "json":
        record = f'{{"level":"{level}","msg":{_json_string(msg)},"time":"{now}"}}\n'
    else:
        record = f'time="{now}" level={level} msg={_json_string(msg)}\n'
    try:
        fd = os.open(inv.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, record.encode(errors="replace"))
        finally:
            os.close(fd)
    except OSError:
        pass  # the line is on stderr; a log we cannot write must not change the outcome


def failure(opts: Options, inv: Invocation | None, message: str, exit_code: int) -> int | None:
    """The failure policy: closed -> the exit status (no exec); open -> None (exec unchanged)."""
    if opts.fail_open:
        log(inv, "warning", f"{message} (--fail open: running the runtime with the spec unchanged)")
        return None
    log(inv, "error", message)
    return exit_code or 1


def prepare(opts: Options, inv: Invocation) -> int | None:
    """Edit the bundle of a create/run; None to go on and exec, an exit status to stop."""
    who = f"{inv.command} {inv.container_id}: "
    bundle = inv.bundle
    if not bundle.startswith("/"):  # relative to the runtime's working directory; ".." stays and is refused
        while bundle.startswith("./"):
            bundle = bundle[2:]
        bundle = os.getcwd() if bundle in ("", ".") else os.path.join(os.getcwd(), bundle)
    try:
        from cgdev.ops.spec_inject import inject_entitled

        done = inject_entitled(
            bundle,
            policy_path=opts.policy,
            cdi_dirs=opts.cdi_dirs,
            bundle_dirs=opts.bundle_dirs,
        )
    except Exception as err:  # a CgdevError is one line by design; anything else is a bug, still one line
        from cgdev.errors import CgdevError

        if isinstance(err, CgdevError):
            return failure(opts, inv, who + err.message, err.exit_code)
        return failure(opts, inv, f"{who}internal error: {type(err).__name__}: {err}", 1)
    for line in done.refusals:
        log(inv, "warning", who + line)
    if done.written:
        log(inv, "info", who + done.summary(), stderr=False)
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    inv: Invocation | None = None
    try:
        opts, runtime_args = split_options(args, os.environ)
    except CliError as err:
        log(None, "error", str(err))
        return 2
    try:
        inv = parse(runtime_args)
    except CliError as err:
        code = failure(opts, inv, str(err), 2)
        if code is not None:
            return code
    if inv is not None and inv.edits_bundle:
        code = prepare(opts, inv)
        if code is not None:
            return code
    try:
        real = find_runtime(opts)
        os.execv(real, [real, *runtime_args])
    except OSError as err:
        log(inv, "error", str(err) if not err.errno else f"cannot run the runtime: {err.strerror}")
        return 3
    return 3  # not reached: execv does not return


def entry() -> None:
    """The ``cgdev-runtime`` executable: ``main`` as a short-lived process (``cgdev.short_lived``).
    A create or run usually ends in ``execv``, which replaces the process; what the collector is
    spared is its passes over the claim path's imports before that, and an early exit (an error,
    the failure policy) skips the teardown."""
    from cgdev.short_lived import run

    run(main)


if __name__ == "__main__":
    entry()
