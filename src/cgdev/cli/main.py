"""The ``cgdev`` command: a table of sub-commands, each in its own module, imported on demand.

Only the module of the sub-command being run is imported, so ``cgdev compile`` never pays for
rich, jeepney or the lab.  Each command module exposes ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``.  Errors derived from ``CgdevError`` become one line on stderr and their
exit status (DESIGN.md §8); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# name -> module (or ``module:ATTR`` for one of several commands a module defines); the order is
# the order of ``cgdev --help``.
COMMANDS: dict[str, str] = {
    "compile": "cgdev.cli.compile_cmd",
    "convert": "cgdev.cli.convert_cmd",
    "lift": "cgdev.cli.lift_cmd",
    "disasm": "cgdev.cli.disasm_cmd",
    "lab": "cgdev.cli.lab_cmd",
    "explain": "cgdev.cli.explain_cmd",
    "show": "cgdev.cli.show_cmd",
    "audit": "cgdev.cli.audit_cmd",
    "snapshot": "cgdev.cli.snapshot_cmd",
    "grant": "cgdev.cli.grant_cmd:GRANT",
    "revoke": "cgdev.cli.grant_cmd:REVOKE",
    "grants": "cgdev.cli.grant_cmd:GRANTS",
    "attach": "cgdev.cli.attach_cmd:ATTACH",
    "detach": "cgdev.cli.attach_cmd:DETACH",
    "check": "cgdev.cli.check_cmd",
    "watch": "cgdev.cli.watch_cmd",
    "completion": "cgdev.cli.completion_cmd",
    "man": "cgdev.cli.man_cmd",
    "cdi": "cgdev.cli.cdi_cmd",
    "links": "cgdev.cli.links_cmd",
    "hook": "cgdev.hook.command",
    "runtime": "cgdev.runtime_wrapper.command",
}


# error field -> how the command line spells it (errors name fields, front ends name flags)
FLAGS: dict[str, str] = {
    "target": "TARGET",
    "device": "--device",
    "access": "--access",
    "snapshot": "--snapshot",
    "host_root": "--host-root",
    "ns_pid": "--ns-pid",
    "runtime_root": "--runtime-root",
    "bus": "--bus",
    "systemd_root": "--systemd-root",
    "systemd_fs_root": "--systemd-fs-root",
    "root": "--root",
    "output": "-o",
    "check": "--check",
    "config": "--config",
    "rules_file": "--rules",
    "semantics": "--semantics",
    "id": "--id",
    "text": "--text",
    "cgroup": "--cgroup",
    "format": "--format",
    "program": "PROGRAM|RULES",
    "replace": "--replace",
    "program_id": "ID",
    "attach_cgroup": "CGROUP",
    "from": "--from",
    "to": "--to",
    "dir": "--dir",
    "variant": "--variant",
    "hook_path": "--hook-path",
    "stage": "--stage",
    "policy": "--policy",
    "cdi_dir": "--cdi-dir",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with options allowed between positionals and usage errors on one line.

    Plain argparse takes a command's positionals in one go: ``cgdev grant CTR --dry-run DEV`` read
    ``CTR`` as the whole of ``TARGET DEVICE...`` and refused ``DEV``.  A parser without
    sub-commands or a remainder argument therefore parses intermixed (options anywhere), as users
    of every other CLI expect.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[Any, list[str]]:
        if self._intermixing or not self._can_intermix():
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _can_intermix(self) -> bool:
        """argparse refuses to intermix around sub-commands, remainders and grouped positionals."""
        if any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._actions):
            return False
        grouped = (a for g in self._mutually_exclusive_groups for a in g._group_actions)
        return all(a.option_strings for a in grouped)

    def _get_formatter(self) -> argparse.HelpFormatter:
        """argparse's formatter imports ``shutil`` (with bz2, lzma and zlib: ~2 ms of every
        command) only to read the terminal's width, and ``add_argument`` makes one per option:
        the width is read here instead, as ``shutil.get_terminal_size`` reads it."""
        width = _terminal_columns() - 2  # the margin argparse takes off
        # every formatter cgdev uses is an argparse.HelpFormatter, which takes the width
        return self.formatter_class(prog=self.prog, width=width)  # type: ignore[call-arg]

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's is NoReturn; exit() is
        self.exit(2, one_line(f"{self.prog}: error: {message}") + "\n")


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS`` if positive, else the width of the
    terminal on stdout, else 80."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def one_line(text: str) -> str:
    """``text`` with control characters and line separators escaped (``\\r``, ``\\x1c``,
    ``\\u2028``): an error echoes the value it refuses, and a value read from a file or argv may
    hold any of them; the message must stay one line (and not move a terminal's cursor)."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _load(name: str) -> ModuleType:
    module_name, _, attr = COMMANDS[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with ``only`` set, import and register just that sub-command."""
    parser = _Parser(
        prog="cgdev",
        description="Control, explain and repair which devices a Linux container may open.",
        epilog="Exit status: 0 done/allowed, 1 denied/findings, 2 bad input, 3 environment error.",
    )
    from cgdev import __version__

    parser.add_argument("--version", action="version", version=f"cgdev {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        if only is not None and name != only:
            # not even a stub: each parser costs ~0.4 ms (argparse asks gettext for catalogues on
            # disk), and with ``only`` given the other names cannot be the command
            continue
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


# commands that may run for minutes or forever: the cycle collector stays on for them (see entry)
LONG_RUNNING: frozenset[str] = frozenset({"lab", "watch"})


def main(argv: Sequence[str] | None = None) -> int:
    from cgdev.errors import CgdevError, with_flags

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["runtime"] and args_list[1:] not in (["-h"], ["--help"]):
        # an OCI runtime's arguments (``--root R create ...``): argparse must not read them
        from cgdev.runtime_wrapper.entry import main as runtime_main

        return runtime_main(args_list[1:])
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(args_list)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    if args.command in LONG_RUNNING:
        gc.enable()
    try:
        return int(module.run(args))
    except CgdevError as err:
        print(one_line(f"cgdev {args.command}: {with_flags(err, FLAGS)}"), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    """The ``cgdev`` executable: ``main()`` run as a short-lived process (collector off, no
    teardown: see ``cgdev.short_lived``); ``main`` turns the collector back on for the
    ``LONG_RUNNING`` commands."""
    from cgdev.short_lived import run

    run(main)


if __name__ == "__main__":
    entry()
