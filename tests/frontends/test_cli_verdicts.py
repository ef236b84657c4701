"""Verdicts as a user reads them, through the real command line on real scratch cgroups carrying the
captured crun/systemd programs (issue 12): unknown reads as unknown in every view, notes are said
once, several containers behind one target each get their verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from fixtures_kernel import requires_root_bpf
from scratch_node import ScratchNode, node  # noqa: F401

pytestmark = requires_root_bpf


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *argv], capture_output=True, text=True, timeout=60)


def _json(*argv: str) -> tuple[int, Any]:
    done = _run(*argv, "--json")
    assert "Traceback" not in done.stderr and done.stdout, done
    return done.returncode, json.loads(done.stdout)


POD_UID = "0b5e2c4a-1f7d-4c3e-9a6b-8d2f1e0c7a93"
POD = f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice"


def _pod_container(scratch: ScratchNode, cid: str, scope_key: str | None, leaf_key: str | None) -> str:
    """``<pod slice>/crio-<cid>.scope/container`` as crun 1.21 + systemd lays it out."""
    scope = scratch.cgroup(f"{POD}/crio-{cid}.scope")
    leaf = scratch.cgroup(f"{POD}/crio-{cid}.scope/container")
    if scope_key:
        scratch.attach(scope, scope_key)
    if leaf_key:
        scratch.attach(leaf, leaf_key)
    scratch.spawn(leaf)
    return leaf


def test_no_systemd_note_is_said_once_and_short(node: ScratchNode) -> None:  # noqa: F811
    """Item 14: a 250-character note per slice, advising --bus to someone who passed --no-systemd."""
    leaf = _pod_container(node, "a1" * 32, "sd", "crun_hook")
    for argv in (("explain", node.rel(leaf), "--device", "c 195:255"), ("show", node.rel(leaf))):
        _, doc = _json(*argv, "--no-systemd")
        notes = doc["after_reload"]["notes"]
        assert len(notes) == 1, notes
        assert len(notes[0]) <= 100 and "--bus" not in notes[0] and "root" not in notes[0], notes
        assert "--no-systemd" in notes[0] and "unknown" in notes[0]


def test_unknown_after_reload_reads_unknown_in_human_and_json(node: ScratchNode) -> None:  # noqa: F811
    """Item 6: show said "unchanged" and explain's JSON ``changed: true`` where both are unknown."""
    leaf = _pod_container(node, "a2" * 32, "sd", "crun_hook")
    target = node.rel(leaf)
    status, doc = _json("explain", target, "--device", "c 1:3", "--no-systemd")
    assert status == 0 and doc["allowed"] is True
    assert doc["after_reload"]["allowed"] is None and doc["after_reload"]["changed"] is None
    human = _run("explain", target, "--device", "c 1:3", "--no-systemd").stdout
    assert "verdict after reload: unknown" in human, human
    _, shown = _json("show", target, "--no-systemd")
    assert shown["after_reload"]["changed"] is None
    human = _run("show", target, "--no-systemd").stdout
    line = next(line for line in human.splitlines() if line.startswith("after the next"))
    assert "unknown" in line and "unchanged" not in line, human


def test_lift_check_on_a_leaf_says_parents_are_not_considered(node: ScratchNode) -> None:  # noqa: F811
    """Item 15: ``lift --cgroup LEAF --check`` said "allowed" while the scope above denies."""
    leaf = node.container("crio", "a3" * 32, "sd", "crun_hook")
    target = node.rel(leaf)
    done = _run("lift", "--cgroup", target, "--check", "c 195:255 rw")
    assert done.returncode == 0 and "overall" not in done.stdout  # the leaf's own program allows
    note = next(line for line in done.stdout.splitlines() if line.startswith("note: "))
    assert "parent cgroups are not considered" in note and "(1 device program there)" in note
    assert f"cgdev explain {target} --device" in note
    _, doc = _json("lift", "--cgroup", target, "--check", "c 195:255 rw")
    assert doc["checks"] == [{"request": "c 195:255 rw", "allowed": True}]
    assert doc["notes"] == [note.removeprefix("note: ")]
    status, explained = _json("explain", target, "--device", "c 195:255", "--no-systemd")
    assert status == 1 and explained["allowed"] is False  # what the note points to: the real verdict


def _uid_program() -> bytes:
    """``call bpf_get_current_uid_gid; r0 = 1; exit``: what it decides is the helper's business."""
    from fixtures_kernel import EXIT, insn

    return insn(0x85, imm=15) + insn(0xB7, 0, imm=1) + insn(EXIT)


def _attach(node: ScratchNode, path: str, code: bytes, name: str) -> object:  # noqa: F811
    from cgdev.adapters import bpf

    fd = bpf.prog_load(code, name=name)
    node.fds.append(fd)
    with bpf.open_cgroup(path) as cg:
        bpf.prog_attach(cg, fd)
    return fd


def test_opaque_program_verdict_is_unknown_live_and_from_a_snapshot(node: ScratchNode, tmp_path: Any) -> None:  # noqa: F811
    """Item 2: explain exited 2 "helper calls are not modelled" with no output."""
    scope = node.cgroup("system.slice/docker-" + "a4" * 32 + ".scope")
    _attach(node, scope, _uid_program(), "uidcheck")
    node.spawn(scope)
    target = node.rel(scope)
    snapshot = tmp_path / "snap.json"
    assert _run("snapshot", target, "-o", str(snapshot), "--no-systemd").returncode == 0
    for source in ((target, "--no-systemd"), ("--snapshot", str(snapshot))):
        status, doc = _json("explain", *source, "--device", "c 1:3")
        assert status == 1 and doc["allowed"] is None, doc  # unknown: never exit 0
        (program,) = [p for layer in doc["layers"] for p in layer["programs"]]
        assert program["allowed"] is None and "bpf_get_current_uid_gid#" in program["opaque"]
        (finding,) = [f for f in doc["findings"] if f["code"] == "opaque-program"]
        assert "helper call bpf_get_current_uid_gid#" in finding["message"]
        human = _run("explain", *source, "--device", "c 1:3")
        assert human.returncode == 1 and "verdict now: unknown" in human.stdout, human
    # another layer that denies decides: the AND is known
    _attach(node, node.cgroup("system.slice"), bytes.fromhex("b7000000000000009500000000000000"), "deny")
    status, doc = _json("explain", target, "--device", "c 1:3", "--no-systemd")
    assert status == 1 and doc["allowed"] is False


def test_lift_check_of_an_opaque_pinned_program_is_unknown(node: ScratchNode, bpffs_dir: str) -> None:  # noqa: F811
    """Item 2: ``lift --pinned P --check`` exited 2 with no output."""
    from cgdev.adapters import bpf

    fd = bpf.prog_load(_uid_program(), name="uidcheck")
    node.fds.append(fd)
    pin = f"{bpffs_dir}/uidcheck"
    bpf.obj_pin(fd, pin)
    done = _run("lift", "--pinned", pin, "--check", "c 1:3 rw")
    assert done.returncode == 1, done
    assert "opaque: instruction 0: helper call bpf_get_current_uid_gid#" in done.stdout, done.stdout
    assert "check c 1:3 rw: unknown" in done.stdout
    status, doc = _json("lift", "--pinned", pin, "--check", "c 1:3 rw")
    assert status == 1 and doc["checks"] == [{"request": "c 1:3 rw", "allowed": None}]
