"""``cgdev man``: the cgdev(1) manual page in roff, generated from the argparse tree.

Printed rather than kept as a file in the tree, so it cannot go stale: ``cgdev man > cgdev.1``
for packaging, ``cgdev man | man -l -`` to read it.  One ``.SS`` per command (sub-commands of
``lab`` included) with its description and a ``.TP`` per flag and argument, from
``cli/argtree.py``; the exit statuses of DESIGN.md §8.  No date in ``.TH``: the same tree gives the
same page (reproducible builds).
"""

from __future__ import annotations

import argparse

from cgdev.cli.argtree import CliArgument, CliCommand, CliOption, cgdev_tree

HELP = "print the cgdev(1) manual page (roff, generated from the parsers)"
DESCRIPTION = """\
Print the cgdev(1) manual page in roff, generated from the same parsers as --help and the shell
completion.

  cgdev man | man -l -
  cgdev man > /usr/local/share/man/man1/cgdev.1
"""

EXIT_STATUS = (
    ("0", "done; the device is allowed."),
    ("1", "denied, or findings (audit, check: some node denied, missing or unknown)."),
    ("2", "bad input: one line on stderr naming the field and the value; nothing was changed."),
    ("3", "environment: not root, no cgroup2, systemd unreachable, the verifier refused."),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def escape(text: str) -> str:
    """Text safe in roff: backslashes escaped, hyphens as minus signs, no line read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(f"\\&{line}" if line.startswith((".", "'")) else line for line in text.splitlines())


def _paragraphs(text: str) -> list[str]:
    """Prose as ``.PP`` paragraphs; indented lines (examples, tables) kept verbatim in ``.nf``."""
    out: list[str] = []
    block: list[str] = []
    verbatim = False

    def flush() -> None:
        if not block:
            return
        if verbatim:
            indent = min(len(line) - len(line.lstrip()) for line in block)  # keep relative indents
            out.extend([".PP", ".RS 4", ".nf", *(escape(line[indent:]) for line in block), ".fi", ".RE"])
        else:
            out.extend([".PP", escape(" ".join(line.strip() for line in block))])
        block.clear()

    for line in text.splitlines():
        indented = line.startswith("  ")
        if not line.strip() or indented != verbatim:
            flush()
            verbatim = indented
        if line.strip():
            block.append(line)
    flush()
    return out


def _summary(description: str) -> str:
    """NAME's one line: the description's first sentence, lower-cased first letter, no period."""
    first = description.strip().split("\n")[0].rstrip(".")
    return first[:1].lower() + first[1:]


def _synopsis(command: CliCommand) -> str:
    parts = [f"\\fB{escape(command.name)}\\fR"]
    if command.subcommands:
        parts.append("\\fICOMMAND\\fR")
    if len(command.options) > 1:  # more than --help
        parts.append("[\\fIOPTIONS\\fR]")
    for argument in command.arguments:
        shown = f"\\fI{escape(argument.name)}\\fR" + (" ..." if argument.repeated else "")
        parts.append(f"[{shown}]" if argument.optional else shown)
    return " ".join(parts)


def _option(option: CliOption) -> list[str]:
    flags = ", ".join(f"\\fB{escape(flag)}\\fR" for flag in option.flags)
    if option.metavar is not None:
        flags += f" \\fI{escape(option.metavar)}\\fR"
    return [".TP", flags, escape(option.help) or "(no description)"]


def _argument(argument: CliArgument) -> list[str]:
    help_text = argument.help or "(no description)"
    if argument.choices:
        help_text += f" (one of: {', '.join(argument.choices)})"
    return [".TP", f"\\fI{escape(argument.name)}\\fR", escape(help_text)]


def page(tree: CliCommand | None = None) -> str:
    """The whole manual page."""
    from cgdev import __version__

    tree = tree or cgdev_tree()
    lines = [
        f'.TH CGDEV 1 "" "cgdev {__version__}" "User Commands"',
        ".SH NAME",
        "cgdev \\- " + escape(_summary(tree.description or tree.help)),
        ".SH SYNOPSIS",
        ".B cgdev",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".br",
        ".B cgdev",
        "\\fICOMMAND\\fR \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
        *_paragraphs(tree.description or ""),
        ".SH OPTIONS",
    ]
    for option in tree.options:
        lines += _option(option)
    lines.append(".SH COMMANDS")
    for command in tree.walk():
        if command is tree:
            continue
        lines += [f'.SS "{command.name}"', ".PP", _synopsis(command)]
        lines += _paragraphs(command.description or command.help)
        for argument in command.arguments:
            lines += _argument(argument)
        for option in command.options:
            if "--help" not in option.flags:
                lines += _option(option)
    lines.append(".SH EXIT STATUS")
    for status, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{status}\\fR", escape(meaning)]
    lines += [
        ".SH SEE ALSO",
        "\\fBbpftool\\fR(8), \\fBsystemd.resource\\-control\\fR(5), \\fBsystemctl\\fR(1)",
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    print(page(), end="")
    return 0
