"""Every spelling of a device reads as the same request in every command that takes one (issue 12,
item 7 of the review): ``c 195:255``, ``195:255``, ``/dev/char/195:255`` and a path (``/dev/null``
is ``c 1:3`` on every Linux host), through ``explain --device`` (live on a real scratch cgroup and
from its snapshot), ``grant``/``revoke --dry-run --snapshot`` and ``lift --check``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures_kernel import ALLOW_C_1_3_R, requires_root_bpf
from scratch_node import ScratchNode, node  # noqa: F401

pytestmark = requires_root_bpf

SPELLINGS = [
    ("c 195:255", {"type": "c", "major": 195, "minor": 255}),
    ("195:255", {"type": "c", "major": 195, "minor": 255}),
    ("/dev/char/195:255", {"type": "c", "major": 195, "minor": 255}),
    ("/dev/null", {"type": "c", "major": 1, "minor": 3}),
]


def _json(*argv: str) -> tuple[int, Any]:
    done = subprocess.run([sys.executable, "-m", "cgdev", *argv, "--json"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert "Traceback" not in done.stderr and done.stdout, done
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def target(node: ScratchNode, tmp_path: Path) -> tuple[str, str, str]:  # noqa: F811
    """A crio container under systemd's filter (real programs, a real process), its snapshot, and
    a program file: what each command reads."""
    leaf = node.container("crio", "e7" * 32, "sd", "crun_hook")
    snapshot = tmp_path / "snap.json"
    done = subprocess.run([sys.executable, "-m", "cgdev", "snapshot", node.rel(leaf), "-o", str(snapshot),
                           "--no-systemd"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    program = tmp_path / "c13r.bin"
    program.write_bytes(ALLOW_C_1_3_R)
    return node.rel(leaf), str(snapshot), str(program)


@pytest.mark.parametrize(("spelling", "device"), SPELLINGS, ids=[s for s, _ in SPELLINGS])
def test_each_spelling_is_the_same_request_everywhere(
    target: tuple[str, str, str], spelling: str, device: dict[str, Any]
) -> None:
    cgroup, snapshot, program = target
    request = {**device, "access": "rw"}
    seen = []
    for source in ((cgroup, "--no-systemd"), ("--snapshot", snapshot)):
        _, doc = _json("explain", *source, "--device", spelling, "--access", "rw")
        seen.append(("explain", source[0], doc["request"]))
    for change in ("grant", "revoke"):
        status, doc = _json(change, "--snapshot", snapshot, spelling, "--dry-run")
        assert status == 0, doc
        (planned,) = doc["devices"]
        seen.append((change, "--snapshot", planned))
    status, doc = _json("lift", program, "--check", f"{spelling} rw")
    dev_type, numbers, access = doc["checks"][0]["request"].split()  # lift prints 'c 1:3 rw'
    major, minor = numbers.split(":")
    seen.append(("lift", "--check", {"type": dev_type, "major": int(major), "minor": int(minor),
                                     "access": access}))  # fmt: skip
    assert all(got == request for _, _, got in seen), seen


def test_lift_check_refuses_what_explain_refuses(tmp_path: Path) -> None:
    """A path that is no device, a missing one, a bad access: one line naming --check, exit 2."""
    program = tmp_path / "c13r.bin"
    program.write_bytes(ALLOW_C_1_3_R)
    for check, words in (
        ("/etc/hostname r", ["--check", "not a character or block device"]),
        ("/dev/no-such-node r", ["--check", "no such device node on the host"]),
        ("/dev/null rwx", ["--check", "access 'rwx'"]),
        ("c 1:3", ["--check", "expected 'DEVICE ACCESS'"]),
    ):
        done = subprocess.run([sys.executable, "-m", "cgdev", "lift", str(program), "--check", check],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2 and done.stdout == "", (check, done)
        (line,) = done.stderr.strip().splitlines()
        assert all(w in line for w in words), (check, line)
