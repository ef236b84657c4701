"""The ``cgdev`` command line as plain data, read from the argparse parsers themselves.

Shell completion and the man page are generated from this one tree, so they can never list a flag
or a ``--shape`` value that the parser does not accept, or miss one it does: adding an argument
to a command module is all it takes.  Reads argparse's documented action attributes
(``option_strings``, ``nargs``, ``choices``, ``help``, ``metavar``) and, for sub-commands, the
sub-parsers action's ``choices`` and ``_choices_actions`` (argparse has no public accessor for
sub-command help).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CliOption:
    """A flag: every spelling, its help, the value's metavar (None: takes no value), its choices."""

    flags: tuple[str, ...]
    help: str
    metavar: str | None
    choices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CliArgument:
    """A positional argument (``RULE``, ``DEVICE``, ``bash|zsh``): how it is shown, its choices."""

    name: str
    help: str
    choices: tuple[str, ...]
    repeated: bool
    optional: bool


@dataclass(frozen=True, slots=True)
class CliCommand:
    """One parser: ``path`` is ``("cgdev",)`` for the top, ``("cgdev", "lab", "up")`` below."""

    path: tuple[str, ...]
    help: str
    description: str
    options: tuple[CliOption, ...]
    arguments: tuple[CliArgument, ...]
    subcommands: tuple[CliCommand, ...]

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def walk(self) -> Iterator[CliCommand]:
        """This command and every command below it, depth first, in the parsers' order."""
        yield self
        for sub in self.subcommands:
            yield from sub.walk()


def _choices(action: argparse.Action) -> tuple[str, ...]:
    return tuple(str(c) for c in action.choices) if action.choices else ()


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices:
        return "{" + ",".join(_choices(action)) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def command_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("cgdev",), help: str = ""
) -> CliCommand:
    """The tree under ``parser`` (hidden actions, ``help=argparse.SUPPRESS``, left out)."""
    options: list[CliOption] = []
    arguments: list[CliArgument] = []
    subcommands: list[CliCommand] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helps:  # aliases share the parser; list each command once
                    subcommands.append(command_tree(sub, (*path, name), helps[name]))
            continue
        text = action.help or ""
        if action.option_strings:
            takes_value = action.nargs != 0
            metavar = _metavar(action) if takes_value else None
            options.append(CliOption(tuple(action.option_strings), text, metavar, _choices(action)))
        else:
            repeated = action.nargs in ("*", "+", argparse.REMAINDER)
            optional = action.nargs in ("*", "?")
            arguments.append(CliArgument(_metavar(action), text, _choices(action), repeated, optional))
    return CliCommand(
        path, help, parser.description or help, tuple(options), tuple(arguments), tuple(subcommands)
    )


def cgdev_tree() -> CliCommand:
    """The whole ``cgdev`` command line (imports every command module)."""
    from cgdev.cli.main import build_parser

    return command_tree(build_parser())
