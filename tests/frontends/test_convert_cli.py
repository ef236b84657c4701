"""``cgdev convert`` through the CLI: the output read back means the input; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

from cgdev.core.rules import read_rule_text
from cgdev.core.semantics import policy_of


def _cgdev(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *argv], capture_output=True, text=True, timeout=60)


def test_v1_to_oci_and_back_is_exact() -> None:
    rules = ["deny a", "allow c 1:3 rwm", "allow c 136:* rw", "allow b 8:0 r"]
    done = _cgdev("convert", "--from", "v1", "--to", "oci", *rules)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    back = read_rule_text(done.stdout, "out").rules
    assert policy_of(back) == policy_of(read_rule_text("\n".join(rules), "in").rules, "v1")


def test_systemd_output_and_json(tmp_path: object) -> None:
    done = _cgdev("convert", "--from", "v1", "--to", "systemd", "deny a", "allow c 1:3 rw", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["output"] == {"DevicePolicy": "strict", "DeviceAllow": [["/dev/char/1:3", "rw"]]}
    assert doc["from"] == "v1" and doc["semantics"] == "v1" and doc["warnings"] == [] and "policy" in doc
    lossy = _cgdev("convert", "--from", "v1", "--to", "systemd", "deny a", "allow c *:3 rw")
    assert lossy.returncode == 0 and "warning: " in lossy.stderr and "systemd cannot express" in lossy.stderr


def test_bad_input_is_one_line_exit_2() -> None:
    for argv, words in (
        (["--from", "v1", "--to", "oci", "--semantics", "runc", "deny a"], "--semantics"),
        (["--from", "systemd", "--to", "oci", "DevicePolicy=open"], "DevicePolicy"),
        (["--from", "v1", "--to", "oci", "allow c x:3 rw"], "rule"),
    ):
        done = _cgdev("convert", *argv)
        assert done.returncode == 2 and done.stdout == "", (argv, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
