"""Verdicts as a user reads them, through the real command line on real scratch cgroups carrying the
captured crun/systemd programs (issue 12): unknown reads as unknown in every view, notes are said
once, several containers behind one target each get their verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
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


def _attach(scratch: ScratchNode, path: str, code: bytes, name: str) -> object:
    from cgdev.adapters import bpf

    fd = bpf.prog_load(code, name=name)
    scratch.fds.append(fd)
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
    # bpftool's listing of the same program names the call itself: lift --text keeps that name
    listing = subprocess.run(["bpftool", "prog", "dump", "xlated", "pinned", pin], capture_output=True,
                             text=True, check=False)  # fmt: skip
    if listing.returncode != 0:
        return  # no bpftool here: the kernel's own path above is the one that must work
    dump = Path(bpffs_dir).parent / f"{Path(bpffs_dir).name}.txt"
    dump.write_text(listing.stdout)
    try:
        status, doc = _json("lift", "--text", str(dump), "--check", "c 1:3 rw")
    finally:
        dump.unlink()
    assert status == 1 and "helper call bpf_get_current_uid_gid#" in doc["programs"][0]["opaque"]


def test_a_pod_uid_is_explained_for_each_container(node: ScratchNode) -> None:  # noqa: F811
    """Item 1: a pod UID was answered for the pod slice alone ("allow", exit 0) while one of its
    two containers got EPERM.  Now each container is answered, and the pod is denied."""
    from cgdev.adapters.kernel_probe import kernel_verdicts
    from scratch_node import NVIDIACTL_RW

    denied = _pod_container(node, "a5" * 32, "sd", "crun_hook")  # systemd's filter on the scope denies
    allowed = _pod_container(node, "a6" * 32, None, "crun_hook")
    kernel = kernel_verdicts(denied, [NVIDIACTL_RW]) + kernel_verdicts(allowed, [NVIDIACTL_RW])
    assert kernel == [False, True]
    status, doc = _json("explain", POD_UID, "--device", "c 195:255", "--no-systemd")
    assert status == 1 and doc["allowed"] is False
    assert doc["target"] == {"spec": POD_UID, "kind": "pod"}
    assert doc["request"] == {"type": "c", "major": 195, "minor": 255, "access": "rw"}
    by_cgroup = {c["cgroup"]: c["allowed"] for c in doc["containers"]}
    assert by_cgroup == {node.rel(denied): False, node.rel(allowed): True}
    assert all(c["target"]["kind"] == "container" for c in doc["containers"])
    human = _run("explain", POD_UID, "--device", "c 195:255", "--no-systemd")
    assert human.returncode == 1
    last = human.stdout.strip().splitlines()[-1]
    assert last == f"pod {POD_UID}, 2 containers: verdict now: DENY (crio {'a5' * 6})", last
    # the pod's only-allowed request: every container allows /dev/null
    status, doc = _json("explain", POD_UID, "--device", "c 1:3", "--no-systemd")
    assert status == 0 and doc["allowed"] is True and len(doc["containers"]) == 2


def test_a_pod_of_several_containers_is_ambiguous_where_one_is_needed(
    node: ScratchNode,  # noqa: F811
    tmp_path: Any,
) -> None:
    """Item 1: show, snapshot and grant act on one container: a pod of two is refused, listed."""
    _pod_container(node, "a7" * 32, "sd", "crun_hook")
    _pod_container(node, "a8" * 32, None, "crun_hook")
    for argv in (
        ("show", POD_UID, "--no-systemd"),
        ("snapshot", POD_UID, "-o", str(tmp_path / "s.json"), "--no-systemd"),
        ("grant", POD_UID, "c 195:255", "--dry-run", "--no-systemd"),
    ):
        done = _run(*argv)
        assert done.returncode == 2 and done.stdout == "", done
        (line,) = done.stderr.strip().splitlines()
        assert "ambiguous, a pod of 2 containers" in line and f"crio {'a7' * 6}" in line, line
        assert f"crio {'a8' * 6}" in line
    assert not (tmp_path / "s.json").exists()


def test_a_pod_of_one_container_is_that_container(node: ScratchNode) -> None:  # noqa: F811
    leaf = _pod_container(node, "a9" * 32, "sd", "crun_hook")
    status, doc = _json("show", POD_UID, "--no-systemd")
    assert doc["target"]["kind"] == "container" and doc["cgroup"] == node.rel(leaf)
    status, doc = _json("explain", POD_UID, "--device", "c 195:255", "--no-systemd")
    assert status == 1 and doc["allowed"] is False and doc["cgroup"] == node.rel(leaf)
