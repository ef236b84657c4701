"""audit on a real container-like hierarchy: every container found, each program lifted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cgdev.ops.audit import audit
from cgdev.ops.targets import cgroup_pids
from fixtures_kernel import requires_root_bpf
from scratch_node import ScratchNode, node, v1_devices_group  # noqa: F401


@requires_root_bpf
def test_audit_finds_every_container_and_lifts_once(node: ScratchNode) -> None:  # noqa: F811
    double = [node.container("crio", f"{i:02x}" * 32, "sd", "crun_hook") for i in range(12)]
    agreeing = [node.container("crio", f"{i:02x}" * 32, "sd", "crun") for i in range(12, 16)]
    runc = [node.container("docker", f"{i:02x}" * 32, "runc", None, sub=False) for i in range(20, 24)]
    bare = node.container("libpod", "ee" * 32, None, None, sub=False)
    node.cgroup("system.slice/other.service")  # not a container: not reported
    result = audit(root=node.rel(node.root))
    rows = {row.target.cgroup: row for row in result.rows}
    assert set(rows) == {node.rel(p) for p in [*double, *agreeing, *runc, bare]}
    assert result.programs_lifted == 4  # sd_devices, crun's, crun's + hook, runc's: 4 distinct of 36
    codes = {cg: {f.code for f in row.findings} for cg, row in rows.items()}
    assert "allow-all" in codes[node.rel(bare)]
    assert all("double-filter" in codes[node.rel(p)] for p in double)
    assert all(not codes[node.rel(p)] for p in [*runc, *agreeing])
    finding = next(f for f in rows[node.rel(double[3])].findings if f.code == "double-filter")
    assert node.rel(double[3]).rsplit("/", 1)[0] in finding.message  # re-labelled per container
    assert result.shapes == 4


@requires_root_bpf
def test_audit_cli_json_and_exit_status(node: ScratchNode) -> None:  # noqa: F811
    node.container("crio", "ab" * 32, "sd", "crun_hook")
    out = subprocess.run(
        [sys.executable, "-m", "cgdev", "audit", "--root", node.rel(node.root), "--json", "--no-systemd"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["summary"]["containers"] == 1 and doc["summary"]["findings"] == {"double-filter": 1}
    by_host_path = subprocess.run(
        [sys.executable, "-m", "cgdev", "audit", "--root", node.root, "--json", "--no-systemd"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(by_host_path.stdout)["containers"] == doc["containers"]
    missing = subprocess.run(
        [sys.executable, "-m", "cgdev", "audit", "--root", "/no/such/cgroup", "--no-systemd"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "--root" in missing.stderr


@requires_root_bpf
def test_audit_counts_the_v1_devices_layer_on_hybrid_hosts(node: ScratchNode) -> None:  # noqa: F811
    """On a hybrid host the v1 devices.list is one more layer (as in explain): a container with no
    program but a restrictive devices.list is not 'allow-all'; one left in the v1 root is."""
    restricted = node.container("libpod", "aa" * 32, None, None, sub=False)
    open_ = node.container("libpod", "bb" * 32, None, None, sub=False)
    with v1_devices_group(["c 1:3 rwm"]) as v1_group:
        (pid,) = cgroup_pids(restricted)
        with open(os.path.join(v1_group, "cgroup.procs"), "w") as fh:
            fh.write(str(pid))
        result = audit(root=node.rel(node.root))
    codes = {row.target.cgroup: {f.code for f in row.findings} for row in result.rows}
    assert "allow-all" not in codes[node.rel(restricted)]
    assert "allow-all" in codes[node.rel(open_)]
    assert result.shapes == 2  # same programs (none), different devices.list


@requires_root_bpf
def test_audit_names_the_pod_from_kubelet_cgroups(node: ScratchNode) -> None:  # noqa: F811
    """Pods from the kubelet's cgroup names alone, both drivers (issue 10 item 4): no API server."""
    uid = "0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"
    systemd_leaf = node.cgroup(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        + uid.replace("-", "_")
        + ".slice/cri-containerd-"
        + "ab" * 32
        + ".scope"
    )
    cgroupfs_leaf = node.cgroup(f"kubepods/besteffort/pod{uid}/" + "cd" * 32)
    outside = node.cgroup("system.slice/crio-" + "ef" * 32 + ".scope")
    for leaf in (systemd_leaf, cgroupfs_leaf, outside):
        node.spawn(leaf)
    result = audit(root=node.rel(node.root))
    rows = {row.target.cgroup: row.to_json() for row in result.rows}
    assert set(rows) == {node.rel(p) for p in (systemd_leaf, cgroupfs_leaf, outside)}
    picked = [(r["runtime"], r["container_id"][:2], r["pod_uid"]) for r in rows.values()]
    assert sorted(picked, key=str) == sorted(
        [("cri-containerd", "ab", uid), ("cgroupfs", "cd", uid), ("crio", "ef", None)], key=str
    )
