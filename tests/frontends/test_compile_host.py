"""``compile`` reads systemd syntax that names this host's devices (issue 12 item 8): a device
path is stat()ed and a driver name looked up in /proc/devices on the host, and what cannot be
resolved is one line, exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cgdev.core.model import Request
from cgdev.core.policy import Policy
from cli_inprocess import run_main


def _run(*argv: str) -> tuple[int, str, str]:
    ran = run_main(argv)
    return ran.code, ran.out, ran.err


def _pts_major() -> int:
    lines = Path("/proc/devices").read_text().splitlines()
    return next(int(line.split()[0]) for line in lines if line.split()[1:] == ["pts"])


def test_host_paths_and_driver_names_resolve(tmp_path: Path) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("char-pts rw\n/dev/null rwm\n")
    code, out, err = _run("compile", "--rules", str(rules), "--json")
    assert code == 0, err
    policy = Policy.from_json(json.loads(out)["policy"])
    null = os.stat("/dev/null").st_rdev
    assert (os.major(null), os.minor(null)) == (1, 3)
    assert policy.allows(Request.parse("c 1:3 rw")) and policy.allows(Request.parse("c 1:3 m"))
    assert policy.allows(Request.parse(f"c {_pts_major()}:7 rw"))
    assert not policy.allows(Request.parse(f"c {_pts_major()}:7 m"))
    assert not policy.allows(Request.parse("c 1:5 r"))
    # the same on the command line
    code, out, err = _run("compile", "char-pts rw", "/dev/null rwm", "--json")
    assert code == 0, err
    assert Policy.from_json(json.loads(out)["policy"]) == policy


def test_unresolvable_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for rule, words in (
        (f"{missing} rw", [str(missing), "no character or block device"]),
        ("char-nosuchdriver rw", ["char-nosuchdriver", "/proc/devices"]),
        (f"{tmp_path} rw", [str(tmp_path), "no character or block device"]),  # a directory
    ):
        code, out, err = _run("compile", rule)
        assert code == 2 and out == "", (rule, out)
        assert len(err.strip().splitlines()) == 1, err
        assert all(w in err for w in words), err
