"""``cgdev man`` (issue 12 item 18): the man page generated from the parsers, rendered by groff.

The roff structure is checked always (.TH, the sections, one .SS per command, every flag of every
command); where groff is installed it must render the page with every warning enabled and none
printed, and ``man -l`` must show every command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cgdev.cli.argtree import cgdev_tree
from cgdev.cli.man_cmd import escape


@pytest.fixture(scope="module")
def page() -> str:
    done = subprocess.run([sys.executable, "-m", "cgdev", "man"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_structure(page: str) -> None:
    lines = page.splitlines()
    assert lines[0].startswith(".TH CGDEV 1 ")
    sections = [line for line in lines if line.startswith(".SH ")]
    assert sections[:5] == [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH COMMANDS"]
    assert ".SH EXIT STATUS" in sections
    tree = cgdev_tree()
    subsections = [line for line in lines if line.startswith(".SS ")]
    assert subsections == [f'.SS "{c.name}"' for c in tree.walk() if c is not tree]
    assert {'.SS "cgdev check"', '.SS "cgdev completion"', '.SS "cgdev lab up"'} <= set(subsections)
    for command in tree.walk():
        for option in command.options:
            for flag in option.flags:
                assert f"\\fB{escape(flag)}\\fR" in page, (command.name, flag)
    # no text line is read as a request (a description line starting with "." or "'")
    requests = {line.split()[0] for line in lines if line[:1] in ".'"}
    assert requests <= {".TH", ".SH", ".SS", ".PP", ".TP", ".RS", ".RE", ".nf", ".fi", ".B", ".br"}


def test_escape() -> None:
    assert escape(".hidden\n'quote\nback\\slash -x") == "\\&.hidden\n\\&'quote\nback\\eslash \\-x"


def test_groff_renders_without_warnings(page: str, tmp_path: Path) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed: only the roff structure was checked")
    source = tmp_path / "cgdev.1"
    source.write_text(page)
    done = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z", str(source)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    man = shutil.which("man")
    if man is None:
        return
    shown = subprocess.run(
        [man, "-l", str(source)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"},
    )
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert "cgdev compile [OPTIONS] [RULE ...]" in shown.stdout
    assert "EXIT STATUS" in shown.stdout and "cgdev check [OPTIONS] DEVICE ..." in shown.stdout
