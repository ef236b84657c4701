"""DEVICE arguments and printed fixes through the CLI as a user types them (``--lab``), in the lab.

Every command that takes a DEVICE reads CDI names and refuses numbers no dev_t holds in one line
(issue 9 item 1, the CLI review); explain's printed fixes carry the host flags the user gave, so
they run as printed.  Containers are named ``fx-*`` and deleted after each test.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cgdev.lab import presets, scenario
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

CDI_SPEC = {
    "cdiVersion": "0.6.0",
    "kind": "fx.example.com/gpu",
    "devices": [
        {"name": "ctl", "containerEdits": {"deviceNodes": [
            {"path": "/dev/fx-ctl", "type": "c", "major": 195, "minor": 255}]}},
        {"name": "all", "containerEdits": {"deviceNodes": [
            {"path": "/dev/fx-gpu0", "type": "c", "major": 195, "minor": 0},
            {"path": "/dev/fx-ctl", "type": "c", "major": 195, "minor": 255}]}},
    ],
}  # fmt: skip


def cgdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def cdi_dir(tmp_path: Path) -> str:
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "fx.json").write_text(json.dumps(CDI_SPEC))
    return str(tmp_path / "cdi")


@contextlib.contextmanager
def container(lab: LabHandle, preset_name: str, name: str) -> Iterator[Any]:
    preset = presets.get(preset_name)
    reason = scenario.skip_reason(preset, lab.runtimes)
    if reason:
        pytest.skip(reason)
    started = lab.run(preset.name, name=name)
    try:
        yield started
    finally:
        lab.delete(started.id)


def one_line(done: subprocess.CompletedProcess[str], status: int, words: str) -> None:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_cdi_name_is_a_device_for_grant_and_explain(lab: LabHandle, cdi_dir: str) -> None:
    with container(lab, "runc-sd", "fx-cdi") as ctr:
        planned = cgdev("grant", "--lab", "--dry-run", "--json", ctr.id, "fx.example.com/gpu=all",
                        "--access", "r", "--cdi-dir", cdi_dir)  # fmt: skip
        assert planned.returncode == 0, planned.stderr
        wanted = json.loads(planned.stdout)["devices"]
        assert [(d["type"], d["major"], d["minor"], d["access"]) for d in wanted] == [
            ("c", 195, 0, "r"), ("c", 195, 255, "r")]  # fmt: skip
        one = cgdev(
            "explain", "--lab", ctr.id, "--device", "fx.example.com/gpu=ctl", "--cdi-dir", cdi_dir, "-q"
        )
        assert one.returncode == 1 and "DENY" in one.stdout, one.stderr  # runc-sd denies 195:255
        every = ("--device", "fx.example.com/gpu=all", "--cdi-dir", cdi_dir)
        one_line(cgdev("explain", "--lab", ctr.id, *every),
                 2, "names 2 device nodes (/dev/fx-gpu0 (c 195:0), /dev/fx-ctl (c 195:255))")  # fmt: skip
        one_line(cgdev("grant", "--lab", "--dry-run", ctr.id, "fx.example.com/gpu=9", "--cdi-dir", cdi_dir),
                 2, "DEVICE 'fx.example.com/gpu=9': no such CDI device")  # fmt: skip
    one_line(cgdev("cdi", "show", "fx.example.com/gpu=9", "--spec-dir", cdi_dir), 2,
             "NAME 'fx.example.com/gpu=9': no such CDI device")  # fmt: skip


@pytest.mark.parametrize(("text", "why"), [("195:1048576", "minor 1048576 out of range 0..1048575"),
                                           ("4096:1", "major 4096 out of range 0..4095")])  # fmt: skip
def test_numbers_out_of_range_are_one_line_for_every_device_reader(
    lab: LabHandle, text: str, why: str
) -> None:
    with container(lab, "runc-sd", "fx-range") as ctr:
        for command in ("grant", "revoke"):
            one_line(cgdev(command, "--lab", ctr.id, text, "--dry-run"), 2, f"DEVICE {text!r}: {why}")
        one_line(cgdev("explain", "--lab", ctr.id, "--device", text), 2, f"--device {text!r}: {why}")


def test_a_wider_entry_refusal_names_only_the_covering_entries(lab: LabHandle) -> None:
    with container(lab, "runc-sd", "fx-wide") as ctr:
        done = cgdev("revoke", "--lab", ctr.id, "c 136:3", "--dry-run")
        one_line(done, 2, "through a wider entry (char-pts rwm)")
        assert "/dev/char/1:3" not in done.stderr


def program_ids(lab: LabHandle, ctr: Any) -> list[list[int]]:
    from cgdev.adapters import bpf, cgroupfs

    out = []
    for path in cgroupfs.ancestors(str(lab.cgroup_root) + ctr.cgroup):
        with bpf.open_cgroup(path) as fd:
            out.append(bpf.prog_query(fd).ids)
    return out


def test_explains_fix_commands_run_as_printed_under_lab(lab: LabHandle) -> None:
    """The printed commands carry --lab, and systemctl runs through `cgdev lab exec --`: each one,
    run exactly as printed, succeeds, and the kernel then lets the container open the device."""
    with container(lab, "crun-sd", "fx-fix") as ctr:
        assert scenario.apply_step(lab.running, "hook", ctr)
        shown = cgdev("explain", "--lab", ctr.id, "--device", "/dev/nvidiactl", "--color", "never")
        assert shown.returncode == 1, shown.stderr
        commands = [line.strip()[2:] for line in shown.stdout.splitlines() if line.strip().startswith("$ ")]
        grants = [c for c in commands if c.startswith("cgdev grant ")]
        systemctls = [c for c in commands if "systemctl " in c]
        assert grants and systemctls, shown.stdout
        assert all(shlex.split(c)[-1] == "--lab" for c in grants), grants
        assert all(c.startswith("cgdev lab exec -- systemctl ") for c in systemctls), systemctls
        for command in (systemctls[0], grants[0]):
            done = subprocess.run([sys.executable, "-m", *shlex.split(command)], capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert lab.probe(ctr)["nvidiactl"] in ("ok", "ENXIO")


def test_a_grant_without_systemd_on_a_systemd_path_is_refused_before_anything(lab: LabHandle) -> None:
    """Without --lab the lab's systemd is not reachable: the grant used to replace the programs,
    fail its reload check and roll back (exit 1); it is now refused up front (exit 3)."""
    with container(lab, "runc-sd", "fx-nosd") as ctr:
        before = program_ids(lab, ctr)
        done = cgdev("grant", ctr.id, "c 10:229")
        one_line(done, 3, "could not be made durable")
        assert "--bus" in done.stderr and "--lab" in done.stderr and "--ns-pid" in done.stderr
        assert program_ids(lab, ctr) == before
