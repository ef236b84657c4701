"""The OCI runtime command line as crun and runc take it, read just enough to wrap it.

The wrapper passes the engine's arguments to the real runtime unchanged; it only needs to know the
subcommand, and for ``create``/``run`` the bundle, the container id and where the runtime logs
(``--log``, ``--log-format``: the engine reads a failed create's reason from there).  Grammar:

    RUNTIME [GLOBAL OPTION...] COMMAND [OPTION...] [ID] [ARG...]

Global options come before the command (runc's urfave/cli also takes ``-root``, one dash); the
options of ``create``/``run`` may come before or after the id (crun's argp permutes; runc's parser
stops at the id, but engines put options first).  An option this reader does not know is read as
a flag without a value when written without ``=``; if that leaves the command or the id uncertain,
the invocation is refused (one line), never guessed: a ``create`` that slipped past the wrapper
would start a container without the devices it is entitled to.

Pure: no I/O, and nothing imported (the wrapper's plain-exec path must stay cheap).
"""

from __future__ import annotations

GLOBAL_VALUE = frozenset(
    {"--root", "--log", "--log-format", "--log-level", "--criu", "--rootless", "--cgroup-manager"}
)
GLOBAL_FLAG = frozenset(
    {"--debug", "--systemd-cgroup", "--help", "-h", "--version", "-v", "-V", "-?", "--usage"}
)
CREATE_VALUE = frozenset(
    {"--bundle", "-b", "--console-socket", "--pid-file", "--preserve-fds", "--pidfd-socket", "--config", "-f"}
)
CREATE_FLAG = frozenset({"--no-pivot", "--no-new-keyring", "--detach", "-d", "--keep", "--no-subreaper"})
EDITING = ("create", "run")  # the subcommands that read a bundle's config.json
_HELP = ("--help", "-h", "-?", "--usage")


class CliError(Exception):
    """The runtime arguments cannot be read with certainty; the message is one line."""


class Invocation:
    """What the wrapper needs from the runtime's arguments."""

    def __init__(self) -> None:
        self.command: str | None = None
        self.log: str | None = None
        self.log_format = "text"
        self.bundle = "."
        self.container_id: str | None = None
        self.help = False

    @property
    def edits_bundle(self) -> bool:
        """True for a ``create``/``run`` of a container (not its ``--help``)."""
        return self.command in EDITING and not self.help


def _long(name: str) -> str:
    """``-root`` (urfave/cli's one-dash spelling) -> ``--root``; short options unchanged."""
    if len(name) > 2 and name[0] == "-" and name[1] != "-":
        return "-" + name
    return name


def parse(argv: list[str]) -> Invocation:
    """Read ``argv`` (without the program name); ``CliError`` when a create cannot be read."""
    inv = Invocation()
    unknown: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        name = _long(name)
        if name in GLOBAL_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise CliError(f"global option {name} needs a value")
                value = argv[i]
            if name == "--log":
                inv.log = value
            elif name == "--log-format":
                inv.log_format = value
        elif name in _HELP:
            inv.help = True
        elif name not in GLOBAL_FLAG and not eq and unknown is None:
            unknown = name
        i += 1
    rest = argv[i:]
    if not rest:
        return inv
    if unknown is not None and any(a in EDITING for a in rest):
        raise CliError(f"unknown global option {unknown}: cannot tell whether {rest[0]!r} is its value")
    inv.command = rest[0]
    if inv.command in EDITING:
        _parse_create(inv, rest[1:])
    return inv


def _parse_create(inv: Invocation, argv: list[str]) -> None:
    positional: list[str] = []
    unknown: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional += argv[i + 1 :]
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if _long(name) in CREATE_VALUE or _long(name) in CREATE_FLAG:
            name = _long(name)  # runc's -bundle
        elif name[:2] in ("-b", "-f") and len(name) > 2 and not eq:  # crun's -bDIR
            name, eq, value = name[:2], "=", name[2:]
        if name in CREATE_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise CliError(f"{inv.command} option {name} needs a value")
                value = argv[i]
            if name in ("--bundle", "-b"):
                inv.bundle = value
            elif name in ("--config", "-f"):
                raise CliError(
                    f"{inv.command} {name} {value!r}: the wrapper edits the bundle's config.json only"
                )
        elif name in _HELP:
            inv.help = True
        elif name not in CREATE_FLAG and not eq:
            unknown.append(name)
        i += 1
    if inv.help:
        return
    if len(positional) != 1:
        hint = f" (unknown option {unknown[0]} may take a value)" if unknown else ""
        raise CliError(f"{inv.command}: expected one container id, got {len(positional)}{hint}")
    inv.container_id = positional[0]
