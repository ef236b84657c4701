"""audit on a real container-like hierarchy: every container found, each program lifted once."""

from __future__ import annotations

import json
import subprocess
import sys

from cgdev.ops.audit import audit
from fixtures_kernel import requires_root_bpf
from test_explain_helpers import ScratchNode, node  # noqa: F401


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
    missing = subprocess.run(
        [sys.executable, "-m", "cgdev", "audit", "--root", "/no/such/cgroup", "--no-systemd"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "--root" in missing.stderr
