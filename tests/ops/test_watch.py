"""The watcher's I/O (``ops.watch``) and the whole ``cgdev watch`` process on real cgroups and programs.

No systemd here (``--no-systemd``): the programs are the captured crun 1.21 + systemd 252 ones
after the NVIDIA hook (the scope's ``sd_devices`` denies /dev/nvidiactl, the hooked leaf allows it);
the lab tests (tests/lab/test_lab_watch.py) do the same against a real systemd.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from cgdev.adapters import bpf
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.ops import entitlements
from cgdev.ops.inspect import HostView
from cgdev.ops.reconcile import WantedSource
from cgdev.ops.watch import Watch
from fixtures_kernel import requires_root_bpf
from scratch_node import NULL_RW, NVIDIACTL_RW, ScratchNode, node  # noqa: F401
from watch_process import WatchProcess

KEY = ("c", 195, 255)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path / "state"))
    return str(tmp_path / "state")


def entitle(cgroup: str, *, granted: str = "rw", status: str = "done", minor: int = 255) -> None:
    def add(entries: dict[Any, entitlements.Entitlement]) -> None:
        e = entitlements.Entitlement(cgroup=cgroup, container_id=None, target=cgroup, type="c", major=195,
                                     minor=minor, granted=granted, revoked="", change="grant", status=status,
                                     when=entitlements.now(), why="test")  # fmt: skip
        entries[e.key] = e

    entitlements.update(add)


def hooked(node: ScratchNode) -> tuple[str, str]:  # noqa: F811
    """A crun + systemd container after the hook: (leaf path, leaf cgroup)."""
    leaf = node.container("crio", "7c" * 32, "sd", "crun_hook")
    return leaf, node.rel(leaf)


@requires_root_bpf
def test_an_entitled_cgroup_is_watched_and_its_denying_layer_named(node: ScratchNode) -> None:  # noqa: F811
    leaf, cgroup = hooked(node)
    entitle(cgroup)
    entitle(cgroup, granted="rw", status="pending", minor=254)  # not done: not (yet) wanted
    entitle(cgroup, granted="", minor=253)  # all revoked: not wanted
    watch = Watch(HostView(systemd=False, runtime_roots=(), systemd_root=node.rel(node.root)))
    found = watch.discover()
    assert list(found) == [cgroup]
    wanted = watch.wanted(found[cgroup])
    assert [(w.key, w.source) for w in wanted] == [(KEY, WantedSource.ENTITLEMENT)]
    seen = watch.observe(found[cgroup], wanted)
    state = seen.devices[KEY]
    assert state.allowed is False and kernel_verdicts(leaf, [NVIDIACTL_RW]) == [False]  # the kernel agrees
    assert state.layer == os.path.dirname(cgroup)  # the scope, not the hooked leaf
    assert state.program is not None and state.program.startswith("sd_devices ")
    assert "systemd re-applied" in state.cause and "double-filter" in seen.codes


@requires_root_bpf
def test_program_ids_change_when_a_program_is_replaced(node: ScratchNode) -> None:  # noqa: F811
    leaf, cgroup = hooked(node)
    entitle(cgroup)
    watch = Watch(HostView(systemd=False, runtime_roots=(), systemd_root=node.rel(node.root)))
    target = watch.discover()[cgroup]
    before = watch.program_ids([target])[cgroup]
    assert before is not None and len(before[-1]) == 1
    with bpf.open_cgroup(leaf) as cg, bpf.prog_fd_by_id(before[-1][0]) as old:
        new = bpf.prog_load(bpf.prog_info(old).xlated, name="replaced")
        node.fds.append(new)
        bpf.prog_attach(cg, new, replace=old)
    after = watch.program_ids([target])[cgroup]
    assert after is not None and after[:-1] == before[:-1] and after[-1] != before[-1]


@requires_root_bpf
def test_forget_drops_a_gone_containers_entitlements_only(node: ScratchNode) -> None:  # noqa: F811
    """A container missing from view while its cgroup still exists (a grant's pending entry, a
    runtime's state file rewritten) keeps its entitlements; one whose cgroup is gone loses them."""
    leaf, cgroup = hooked(node)
    other = node.rel(node.container("crio", "8d" * 32, "sd", "crun_hook"))
    entitle(cgroup)
    entitle(other)
    watch = Watch(HostView(systemd=False, runtime_roots=(), systemd_root=node.rel(node.root)))
    watch.discover()
    watch.forget(cgroup)  # still there
    assert sorted(e.cgroup for e in entitlements.read()) == sorted([cgroup, other])
    proc = node.procs.pop(0)
    proc.kill()
    proc.wait()
    os.rmdir(leaf)
    watch.forget(cgroup)
    assert [e.cgroup for e in entitlements.read()] == [other]


@requires_root_bpf
def test_watch_reports_a_loss_and_sees_the_fix_by_polling(node: ScratchNode) -> None:  # noqa: F811
    """Without --repair: the loss is reported once with its layer; when the denying program goes
    (nothing announces it), the poll notices and reports the device restored."""
    leaf, cgroup = hooked(node)
    entitle(cgroup)
    w = WatchProcess("--no-systemd", "--interval", "0.2", "--only", cgroup)
    try:
        lost = w.event("lost")
        assert (lost["device"], lost["cgroup"], lost["source"]) == ("c 195:255 rw", cgroup, "entitlement")
        scope = os.path.dirname(leaf)
        with bpf.open_cgroup(scope) as cg:
            (sd_id,) = bpf.prog_query(cg).ids
            with bpf.prog_fd_by_id(sd_id) as sd:
                bpf.prog_detach(cg, sd)
        restored = w.event("restored")
        assert restored["device"] == "c 195:255 rw" and restored["reaction_s"] >= 0
        assert kernel_verdicts(leaf, [NVIDIACTL_RW]) == [True]
    finally:
        status = w.stop()
    assert status == 0 and w.seen[-1]["event"] != "lost"
    assert not [e for e in w.seen if e["event"] == "repairing"]


@requires_root_bpf
def test_a_repair_grant_refuses_is_reported_once_and_changes_nothing(node: ScratchNode) -> None:  # noqa: F811
    """Without systemd a grant on a systemd unit's cgroups cannot be made durable, so grant refuses
    before changing anything: the watcher reports ``repair-failed`` (the cause is grant's), leaves
    the kernel as it was and does not loop on it.  (Successful repairs against a real systemd:
    tests/lab/test_lab_watch.py.)"""
    leaf = node.container("crio", "9e" * 32, "runc", None, sub=False)
    cgroup = node.rel(leaf)
    entitle(cgroup)
    w = WatchProcess("--no-systemd", "--interval", "0.2", "--repair", "--only", cgroup)
    try:
        w.event("lost")
        w.event("repairing")
        failed = w.event("repair-failed")
        assert "nothing changed" in failed["cause"]
        assert kernel_verdicts(leaf, [NVIDIACTL_RW, NULL_RW]) == [False, True]  # as it was
        w.proc.send_signal(signal.SIGHUP)  # look again: the same loss, not a new one
        w.event("full-scan")
    finally:
        assert w.stop() == 0
    assert [e["event"] for e in w.seen].count("lost") == 1, w.seen


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--repair-limit", "ten/60"),
        ("--repair-limit", "0/60"),
        ("--metrics-port", "70000"),
        ("--interval", "0"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(flag: str, value: str) -> None:
    argv = [sys.executable, "-m", "cgdev", "watch", flag, value]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and flag in done.stderr and value in done.stderr


@requires_root_bpf
def test_a_kubelet_named_container_without_state_or_entitlement_is_discovered(node: ScratchNode) -> None:  # noqa: F811
    """A node agent may not see a runtime's state (no /run/containerd mounted): the cgroup names
    kubelet and the engine gave are enough to watch the container, with its pod."""
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    pod = f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    leaf = node.cgroup(f"{pod}/cri-containerd-{'ab' * 32}.scope")
    node.spawn(leaf)
    watch = Watch(HostView(systemd=False, runtime_roots=(), systemd_root=node.rel(node.root)))
    found = watch.discover()
    target = found[node.rel(leaf)]
    assert (target.container_id, target.pod_uid) == ("ab" * 32, uid)
    assert watch.wanted(target) == ()  # nothing entitled: watched, never repaired
