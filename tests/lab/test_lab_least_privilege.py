"""The DaemonSet's capabilities are enough, and each one it adds (but NET_ADMIN) is needed (issue 10
item 4: "the least privilege that works (say which capabilities and why)").

The watcher audits, explains and repairs through the same operations as ``cgdev audit``, ``explain``
and ``grant``/``revoke``; here they run as root with the capability bounding set cut down to the
set deploy/kubernetes/daemonset.yaml adds (``setpriv``), against the lab's real systemd, runtimes
and kernel, and once more with each capability taken away.  NET_ADMIN is kept for kernels before
6.9 (BPF_PROG_QUERY and BPF_PROG_ATTACH on a cgroup asked for it); this kernel accepts SYS_ADMIN.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

DAEMONSET = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "daemonset.yaml"
CID = "cap-runc"


def _added_capabilities() -> set[str]:
    spec = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
    return set(spec["containers"][0]["securityContext"]["capabilities"]["add"])


def _cgdev(caps: set[str], args: list[str], state: Path) -> subprocess.CompletedProcess[str]:
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in sorted(caps))])
    env = {**os.environ, "CGDEV_STATE_DIR": str(state)}
    argv = ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--", sys.executable, "-m", "cgdev"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_daemonset_capabilities_suffice_and_each_is_needed(lab: LabHandle, tmp_path: Path) -> None:
    caps = _added_capabilities()
    assert caps == {"SYS_ADMIN", "NET_ADMIN", "MKNOD", "SYS_PTRACE"}
    container = lab.run("runc-sd", name=CID)
    try:
        audit = _cgdev(caps, ["audit", "--lab", "-q"], tmp_path)
        assert audit.returncode in (0, 1), audit.stderr
        explain = _cgdev(caps, ["explain", "--lab", CID, "--device", "/dev/null", "--json"], tmp_path)
        assert explain.returncode == 0, explain.stderr
        grant = _cgdev(caps, ["grant", "--lab", CID, "c 195:255"], tmp_path)
        assert grant.returncode == 0, grant.stderr
        assert lab.probe(container)["nvidiactl"] == "ENXIO"  # allowed: the kernel's own answer
        revoke = _cgdev(caps, ["revoke", "--lab", CID, "c 195:255"], tmp_path)
        assert revoke.returncode == 0, revoke.stderr
        assert lab.probe(container)["nvidiactl"] == "EPERM"

        # each capability the manifest names is needed by one of those, NET_ADMIN aside (see above)
        no_ptrace = _cgdev(caps - {"SYS_PTRACE"}, ["audit", "--lab", "-q"], tmp_path)
        assert no_ptrace.returncode != 0 and "/proc/" in no_ptrace.stderr  # another process's /root
        no_admin = _cgdev(caps - {"SYS_ADMIN"} | {"BPF", "PERFMON"}, ["audit", "--lab", "-q"], tmp_path)
        assert no_admin.returncode == 3 and "BPF_PROG_GET_FD_BY_ID" in no_admin.stderr
        no_mknod = _cgdev(caps - {"MKNOD"}, ["grant", "--lab", CID, "c 195:255"], tmp_path)
        assert no_mknod.returncode == 3 and "rolled back" in no_mknod.stderr
        assert lab.probe(container)["nvidiactl"] == "EPERM"  # nothing left behind
    finally:
        lab.delete(CID)
