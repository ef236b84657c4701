"""Targets: runtime state files, engine-named cgroups, and resolution on real cgroups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgdev.adapters.runtime_state import (
    list_containers,
    parse_crun_status,
    parse_state_json,
    runtime_roots,
)
from cgdev.errors import InputError, NotFound
from cgdev.ops.targets import classify, resolve
from fixtures_kernel import requires_root_bpf
from scratch_node import ScratchNode, node  # noqa: F401

# -- runtime state files (formats as crun 1.x, runc 1.1.5 and youki write them) ----------------

CRUN_STATUS = b"""{
    "pid" : 4242,
    "process-start-time" : 123,
    "cgroup-path" : "/system.slice/crun-abc.scope/container",
    "scope" : "crun-abc.scope",
    "rootfs" : "/b/rootfs",
    "systemd-cgroup" : "true",
    "bundle" : "%s",
    "created" : "2026-01-01T00:00:00Z",
    "owner" : "root",
    "detached" : "true"
}
"""


def test_crun_status_with_bundle_annotations(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"annotations": {"run.oci.systemd.subgroup": ""}}))
    state = parse_crun_status("abc", CRUN_STATUS % str(tmp_path).encode())
    assert (state.runtime, state.id, state.pid) == ("crun", "abc", 4242)
    assert state.cgroup == "/system.slice/crun-abc.scope/container"
    assert state.systemd_cgroup is True
    assert state.annotations == {"run.oci.systemd.subgroup": ""}


def test_runc_state_labels_and_cgroup() -> None:
    data = {
        "id": "web",
        "init_process_pid": 77,
        "cgroup_paths": {"": "/sys/fs/cgroup/system.slice/runc-web.scope", "devices": "/x"},
        "config": {
            "labels": ["io.kubernetes.container.name=nginx", "bundle=/b"],
            "cgroups": {"name": "web", "parent": "system.slice", "Systemd": True},
        },
        "unknown_future_field": {"ignored": True},
    }
    state = parse_state_json(json.dumps(data).encode())
    assert (state.runtime, state.id, state.pid, state.bundle) == ("runc", "web", 77, "/b")
    assert state.cgroup == "/sys/fs/cgroup/system.slice/runc-web.scope"
    assert state.systemd_cgroup is True
    assert state.name == "nginx"


def test_youki_state_is_plain_oci() -> None:
    data = {"ociVersion": "1.0.2", "id": "y1", "status": "running", "pid": 9, "bundle": "/b",
            "annotations": {"nerdctl/name": "db"}, "useSystemd": False}  # fmt: skip
    state = parse_state_json(json.dumps(data).encode())
    assert (state.runtime, state.id, state.pid, state.name, state.cgroup) == ("youki", "y1", 9, "db", None)


def test_list_containers_skips_garbage(tmp_path: Path) -> None:
    root = tmp_path / "crun"
    (root / "good").mkdir(parents=True)
    (root / "good" / "status").write_bytes(CRUN_STATUS % b"/nonexistent")
    (root / "bad").mkdir()
    (root / "bad" / "status").write_text("{not json")
    (root / "empty").mkdir()
    found = list_containers([("crun", str(root)), ("runc", str(tmp_path / "missing"))])
    assert [s.id for s in found] == ["good"]


def _podman_bundle(storage: Path, container_id: str) -> Path:
    """containers/storage's layout as podman 4.3.1 writes it (``<driver>-containers/<id>/userdata``)."""
    bundle = storage / "vfs-containers" / container_id / "userdata"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"annotations": {"io.container.manager": "libpod"}}))
    return bundle


def test_podman_names_come_from_containers_storage_beside_the_bundle(tmp_path: Path) -> None:
    """podman puts no name annotation in the spec: its name is in containers.json (as in the lab)."""
    ids = ["a" * 64, "b" * 64]
    root = tmp_path / "crun"
    for cid in ids:
        (root / cid).mkdir(parents=True)
        bundle = _podman_bundle(tmp_path / "storage", cid)
        (root / cid / "status").write_bytes(CRUN_STATUS % str(bundle).encode())
    records = [
        {"id": ids[0], "names": ["web"], "layer": "x", "metadata": "{}"},
        {"id": "c" * 64, "names": ["o"]},
    ]
    (tmp_path / "storage" / "vfs-containers" / "containers.json").write_text(json.dumps(records))
    found = {s.id: s for s in list_containers([("crun", str(root))])}
    assert found[ids[0]].name == "web" and found[ids[0]].named("web")
    assert found[ids[1]].name is None  # not in containers.json: no name, no error
    assert found[ids[0]].annotations == {"io.container.manager": "libpod"}


def test_a_broken_containers_json_gives_no_names_and_no_error(tmp_path: Path) -> None:
    root, cid = tmp_path / "crun", "d" * 64
    (root / cid).mkdir(parents=True)
    bundle = _podman_bundle(tmp_path / "storage", cid)
    (root / cid / "status").write_bytes(CRUN_STATUS % str(bundle).encode())
    (tmp_path / "storage" / "vfs-containers" / "containers.json").write_text('[{"id": 5}')
    (state,) = list_containers([("crun", str(root))])
    assert state.name is None and state.engine_names == ()


def test_a_root_ending_in_star_is_a_directory_of_roots(tmp_path: Path) -> None:
    """containerd's runc shim keeps one runtime root per namespace: /run/containerd/runc/<ns>."""
    for namespace, cid in (("k8s.io", "c1"), ("default", "c2")):
        state_dir = tmp_path / "runc" / namespace / cid
        state_dir.mkdir(parents=True)
        data = {"id": cid, "init_process_pid": 0, "config": {"labels": [f"bundle=/b/{cid}"]}}
        (state_dir / "state.json").write_text(json.dumps(data))
    found = list_containers([("runc", f"{tmp_path}/runc/*"), ("runc", f"{tmp_path}/missing/*")])
    assert sorted((s.runtime, s.id, s.bundle) for s in found) == [
        ("runc", "c1", "/b/c1"),
        ("runc", "c2", "/b/c2"),
    ]


def test_runtime_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--runtime-root"):
        runtime_roots([str(tmp_path / "nope")])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("crio-" + "a" * 64 + ".scope", ("container", "crio", "a" * 64)),
        ("libpod-" + "b" * 64 + ".scope", ("container", "libpod", "b" * 64)),
        ("cri-containerd-" + "c" * 64 + ".scope", ("container", "cri-containerd", "c" * 64)),
        ("docker-" + "d" * 64 + ".scope", ("container", "docker", "d" * 64)),
        ("crun-my-box.scope", ("container", "crun", "my-box")),
        ("crio-conmon-" + "a" * 64 + ".scope", None),
        ("kubepods-burstable-pod12345678_1234_1234_1234_123456789abc.slice",
         ("pod", "kubepods", "12345678-1234-1234-1234-123456789abc")),
        ("e" * 64, ("container", "cgroupfs", "e" * 64)),
        ("system.slice", None),
    ],
)  # fmt: skip
def test_classify_engine_names(name: str, expected: tuple[str, str, str] | None) -> None:
    assert classify(name) == expected


# -- resolution on real cgroups ----------------------------------------------------------------


@requires_root_bpf
def test_resolve_pid_cgroup_and_engine_prefix(node: ScratchNode) -> None:  # noqa: F811
    cid = "0123456789abcdef" * 4
    leaf = node.container("crio", cid, "sd", "crun")
    pid = node.procs[-1].pid
    by_pid = resolve(str(pid))
    assert (by_pid.kind, by_pid.cgroup, by_pid.pid) == ("pid", node.rel(leaf), pid)
    by_path = resolve(leaf)
    assert by_path.cgroup == node.rel(leaf) and by_path.pid == pid
    by_rel = resolve(node.rel(leaf))
    assert by_rel.cgroup == node.rel(leaf)
    by_prefix = resolve(cid[:12])
    # the scope holds no process: the target descends to crun's `container` sub-cgroup
    assert (by_prefix.kind, by_prefix.runtime, by_prefix.container_id) == ("container", "crio", cid)
    assert by_prefix.cgroup == node.rel(leaf) and by_prefix.pid == pid
    by_unit = resolve(f"crio-{cid}.scope")
    assert by_unit.cgroup == node.rel(leaf)


@requires_root_bpf
def test_resolve_pod_slice_by_uid(node: ScratchNode) -> None:  # noqa: F811
    uid = "4b5c6d7e-0000-1111-2222-333344445555"
    pod = node.cgroup(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid.replace("-", "_") + ".slice"
    )
    target = resolve(uid)
    assert (target.kind, target.cgroup) == ("pod", node.rel(pod))


@requires_root_bpf
def test_ambiguous_prefix_lists_candidates(node: ScratchNode) -> None:  # noqa: F811
    node.container("libpod", "feed" + "1" * 60, None, "crun", sub=False)
    node.container("libpod", "feed" + "2" * 60, None, "crun", sub=False)
    with pytest.raises(InputError, match=r"ambiguous, matches 2 containers: .*feed1.*feed2"):
        resolve("feed")
    assert resolve("feed2").container_id == "feed" + "2" * 60


@requires_root_bpf
def test_missing_targets_are_one_line_not_found(node: ScratchNode) -> None:  # noqa: F811
    with pytest.raises(NotFound, match="no such process"):
        resolve(str(2**22 + 12345))
    with pytest.raises(NotFound, match="no such cgroup"):
        resolve(os.path.join(node.root, "nope"))
    with pytest.raises(NotFound, match="no process, cgroup, container or unit"):
        resolve("no-such-container-zz")
    with pytest.raises(InputError, match=r"'\.\.'"):
        resolve("/../etc")


# -- runtimes in another PID namespace ---------------------------------------------------------


@requires_root_bpf
def test_state_pids_of_another_pid_namespace_become_host_pids(node: ScratchNode, tmp_path: Path) -> None:  # noqa: F811
    """A root reached through /proc/<pid>/root records that namespace's pids: they are translated."""
    leaf = node.cgroup("system.slice/crun-nsbox.scope/container")
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", "sleep", "300"],
        preexec_fn=lambda: Path(leaf, "cgroup.procs").write_text("0"),
    )
    inner = None
    try:
        inner = _wait_for_child(holder.pid)
        state_dir = tmp_path / "crun" / "nsbox"
        state_dir.mkdir(parents=True)
        status = {"pid": 1, "cgroup-path": "/system.slice/crun-nsbox.scope/container", "bundle": ""}
        state_dir.joinpath("status").write_text(json.dumps(status))
        root = f"/proc/{inner}/root{tmp_path}/crun"
        [state] = list_containers([("crun", root)])
        assert (state.ns_pid, state.pid, state.cgroup) == (1, inner, node.rel(leaf))
        target = resolve("nsbox", runtime_roots=[("crun", root)])
        assert (target.kind, target.pid, target.cgroup) == ("container", inner, node.rel(leaf))
        # the same directory seen from our own namespace: pids are taken as recorded
        [plain] = list_containers([("crun", str(tmp_path / "crun"))])
        assert (plain.pid, plain.ns_pid) == (1, None)
    finally:
        if inner is not None:
            os.kill(inner, signal.SIGKILL)  # a namespace's init takes SIGKILL only from outside it
        holder.kill()
        holder.wait()
        _wait_until_empty(leaf)


def _wait_until_empty(cgroup_dir: str, timeout: float = 5.0) -> None:
    """--kill-child kills the namespace's init asynchronously; the cgroup must be empty to go."""
    deadline = time.monotonic() + timeout
    while Path(cgroup_dir, "cgroup.procs").read_text().split() and time.monotonic() < deadline:
        time.sleep(0.01)


def _wait_for_child(parent: int, timeout: float = 5.0) -> int:
    """The pid (ours) of the first child of ``parent``: unshare's forked init of the namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError(f"unshare {parent} forked no child within {timeout}s")


# -- what review found: stale pids, '..', underscores, slices, unprintable specs ---------------


@requires_root_bpf
def test_a_recorded_pid_now_used_by_another_process_is_not_trusted(node: ScratchNode, tmp_path: Path) -> None:  # noqa: F811
    """A stopped container's pid reused by a stranger (here: this test process) must not make the
    target the stranger's cgroup: the recorded cgroup wins and the pid is dropped."""
    scope = node.cgroup("system.slice/runc-stale.scope")
    root = tmp_path / "runc"
    (root / "stale").mkdir(parents=True)
    state = {"id": "stale", "init_process_pid": os.getpid(), "cgroup_paths": {"": scope}, "config": {}}
    (root / "stale" / "state.json").write_text(json.dumps(state))
    target = resolve("stale", runtime_roots=[("runc", str(root))])
    assert target.cgroup == node.rel(scope) and target.pid is None
    # the same state with the container's real process is trusted
    pid = node.spawn(scope)
    state["init_process_pid"] = pid
    (root / "stale" / "state.json").write_text(json.dumps(state))
    live = resolve("stale", runtime_roots=[("runc", str(root))])
    assert live.cgroup == node.rel(scope) and live.pid == pid


@requires_root_bpf
def test_cgroup_specs_cannot_leave_the_mount_and_ids_keep_their_underscores(node: ScratchNode) -> None:  # noqa: F811
    mount = node.mount.rstrip("/")
    with pytest.raises((InputError, NotFound)):
        resolve(f"{mount}/../../../etc")
    with pytest.raises(InputError, match="not printable"):
        resolve("abc\rdef")
    leaf = node.container("crun", "my_ctr", None, "crun", sub=False)
    assert resolve("my_ctr").cgroup == node.rel(leaf)


@requires_root_bpf
def test_a_slice_target_is_the_slice_not_its_only_child(node: ScratchNode) -> None:  # noqa: F811
    slice_ = node.cgroup("cgdev-test.slice")
    child = node.cgroup("cgdev-test.slice/only-child.scope")
    node.spawn(child)
    target = resolve(node.rel(slice_))
    assert target.cgroup == node.rel(slice_)
    assert resolve("cgdev-test.slice").cgroup == node.rel(slice_)


@requires_root_bpf
def test_resolved_targets_carry_the_pod_from_cgroup_names(node: ScratchNode) -> None:  # noqa: F811
    """A PID, a path and a pod UID all name the pod from the kubelet's cgroup names (issue 10)."""
    uid = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
    cid = "7e" * 32
    pod = f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    leaf = node.cgroup(f"{pod}/crio-{cid}.scope/container")
    pid = node.spawn(leaf)
    by_pid = resolve(str(pid))
    assert (by_pid.kind, by_pid.pod_uid, by_pid.runtime, by_pid.container_id) == ("pid", uid, "crio", cid)
    assert resolve(leaf).pod_uid == uid
    by_uid = resolve(uid)  # the pod of one container resolves to it
    assert (by_uid.cgroup, by_uid.pod_uid, by_uid.container_id) == (node.rel(leaf), uid, cid)
    outside = node.container("crio", "8f" * 32, None, None)
    assert resolve(outside).pod_uid is None
    shown = subprocess.run([sys.executable, "-m", "cgdev", "explain", str(pid), "--device", "/dev/null",
                            "--no-systemd"], capture_output=True, text=True)  # fmt: skip
    assert f"(pod {uid})" in shown.stdout.splitlines()[0], shown.stdout + shown.stderr
