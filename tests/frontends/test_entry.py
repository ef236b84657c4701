"""The ``cgdev`` executable's fast exit (cli.main.entry): exit statuses and output survive
``os._exit``.  Run as real processes, because what is tested is the process's end.  That the exit
handlers still run is tested where one exists: tests/lab/test_lab_repair.py (the probe's tmpfs)."""

from __future__ import annotations

import subprocess
import sys


def _cgdev(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *argv], capture_output=True, text=True, timeout=60)


def test_exit_statuses_and_output_survive_the_fast_exit() -> None:
    helped = _cgdev("--help")
    assert helped.returncode == 0 and "usage: cgdev" in helped.stdout
    assert _cgdev("no-such-command").returncode == 2
    compiled = _cgdev("compile", "allow c 1:3 rw", "--json")
    assert compiled.returncode == 0 and compiled.stdout.rstrip().endswith("}")  # flushed in full
    bad = _cgdev("compile", "allow c 1:3 rx")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_a_closed_pipe_is_not_a_traceback() -> None:
    # the reader goes away before cgdev writes: no BrokenPipeError traceback, no hang
    shell = f"{sys.executable} -m cgdev man | head -c 1 >/dev/null"
    done = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr


def test_options_may_come_between_positionals() -> None:
    """``cgdev grant CTR --dry-run DEV`` once read CTR as all of ``TARGET DEVICE...`` and refused
    DEV; options between positionals must be read as users of every other CLI expect."""
    split = _cgdev("compile", "allow c 1:3 rw", "--json", "allow c 1:5 r")
    joined = _cgdev("compile", "--json", "allow c 1:3 rw", "allow c 1:5 r")
    assert split.returncode == 0, split.stderr
    assert split.stdout == joined.stdout
    # a command with nested sub-commands keeps argparse's own order rules
    assert _cgdev("lab", "--help").returncode == 0


SHORT_LIVED = """
import atexit, gc, sys
from cgdev.short_lived import run
atexit.register(lambda: print("handler ran"))
def main():
    print("collector on:", gc.isenabled())
    sys.stdout.write("x" * 100000)  # more than one buffer: all of it must be flushed
    print()
    if sys.argv[1:] == ["exit-text"]:
        sys.exit("a reason")
    return int(sys.argv[1])
run(main)
"""


def test_short_lived_processes_keep_status_output_and_exit_handlers() -> None:
    """``cgdev.short_lived.run`` (the end of cgdev, cgdev-hook and cgdev-runtime) leaves with
    ``os._exit``: the status, every byte of buffered output and the exit handlers must survive."""
    done = subprocess.run(
        [sys.executable, "-c", SHORT_LIVED, "7"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == "collector on: False\n" + "x" * 100000 + "\nhandler ran\n"
    text = subprocess.run(
        [sys.executable, "-c", SHORT_LIVED, "exit-text"], capture_output=True, text=True, timeout=60
    )
    assert text.returncode == 1 and text.stderr == "a reason\n" and text.stdout.endswith("handler ran\n")


def test_help_follows_the_width_in_columns() -> None:
    """The parser reads the terminal width itself (argparse's way, without importing shutil)."""
    import os

    def help_lines(columns: str) -> list[str]:
        env = {**os.environ, "COLUMNS": columns}
        argv = [sys.executable, "-m", "cgdev", "grant", "--help"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env).stdout.splitlines()

    narrow, wide = help_lines("50"), help_lines("200")
    prose = [line for line in narrow if "[" not in line]  # a usage group is never broken
    assert max(len(line) for line in wide) > 50 >= max(len(line) for line in prose)
    assert len(narrow) > len(wide)
