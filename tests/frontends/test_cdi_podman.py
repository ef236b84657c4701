"""podman's own CDI injection and cgdev's reading of the same spec give the same devices and rules.

podman (>= 4.1) injects ``--device vendor/class=name`` with the CDI reference library; its OCI
``config.json`` is caught by a stand-in runtime that copies the bundle's config.json on ``create``
and fails, so no container runs and no cgroup is touched.  podman runs in a private mount
namespace whose /run is a fresh tmpfs holding the spec (/var/run/cdi is where podman looks) and
podman's runroot (which must be short); the host's own /run is never written, and the storage is
in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cgdev.ops.cdi_names import resolve_cdi_names

FAKE_RUNTIME = """#!/bin/sh
bundle=""
prev=""
for a in "$@"; do
  [ "$prev" = "--bundle" ] && bundle="$a"
  prev="$a"
done
case " $* " in
  *" create "*) cp "$bundle/config.json" {out}; echo "stand-in runtime: config.json kept" >&2; exit 1;;
esac
exit 0
"""


def _podman_or_skip() -> str:
    podman = shutil.which("podman")
    if podman is None:
        from capabilities import skip_unless_ci

        skip_unless_ci("podman is not installed (scripts/bootstrap installs it)")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /run")
    return podman


def test_podman_cdi_injection_matches_cgdev(tmp_path: Path) -> None:
    podman = _podman_or_skip()
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    os.mknod(nodes / "nvidiactl", 0o666 | stat.S_IFCHR, os.makedev(195, 254))
    spec = {
        "cdiVersion": "0.5.0",
        "kind": "cgdev-test.example.com/gpu",
        "containerEdits": {"deviceNodes": [{"path": "/dev/zero", "permissions": "m"}]},
        "devices": [
            {"name": "null", "containerEdits": {"deviceNodes": [{"path": "/dev/null"}]}},
            {
                "name": "ctl",
                "containerEdits": {
                    "deviceNodes": [
                        {"path": "/dev/nvidiactl", "hostPath": str(nodes / "nvidiactl"), "permissions": "rw"}
                    ]
                },
            },
            {
                "name": "fixed",
                "containerEdits": {
                    "deviceNodes": [
                        {"path": "/dev/fake-fixed", "type": "c", "major": 240, "minor": 7, "permissions": "r"}
                    ]
                },
            },
        ],
    }
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    (spec_dir / "cgdev-test.json").write_text(json.dumps(spec))
    names = [f"cgdev-test.example.com/gpu={n}" for n in ("null", "ctl", "fixed")]

    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/true", rootfs / "bin" / "true")
    out = tmp_path / "config.json"
    runtime = tmp_path / "stand-in-runtime"
    runtime.write_text(FAKE_RUNTIME.replace("{out}", str(out)))
    runtime.chmod(0o755)
    base = (
        f"{podman} --root {tmp_path}/storage --runroot /run/pr --tmpdir /run/pt "
        f"--storage-driver vfs --cgroup-manager cgroupfs --events-backend none --runtime {runtime}"
    )
    devices = " ".join(f"--device {n}" for n in names)
    script = (
        f"set -e; mount -t tmpfs tmpfs /run; mkdir /run/cdi; cp {spec_dir}/cgdev-test.json /run/cdi/; "
        f"tar -C {rootfs} -c . | {base} import - localhost/cgdev-cdi-test:1 >/dev/null; "
        f"{base} run --network none --user 0:0 {devices} localhost/cgdev-cdi-test:1 /bin/true || true"
    )
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.exists(), f"podman did not reach the runtime: {run.stderr[-2000:]}"
    config = json.loads(out.read_text())

    ours = resolve_cdi_names(names, [str(spec_dir)])
    wanted = {d.path for d in ours.devices}
    # fileMode is left out: podman 4.3's copy of the reference predates filling it from the host.
    podman_devices = [
        (d["path"], d["type"], d["major"], d["minor"])
        for d in config["linux"].get("devices") or []
        if d["path"] in wanted
    ]
    assert podman_devices == [(d.path, d.type, d.major, d.minor) for d in ours.devices]  # same order too
    assert ("/dev/nvidiactl", "c", 195, 254) in podman_devices
    podman_rules = [
        (r["allow"], r.get("type"), r.get("major"), r.get("minor"), "".join(sorted(r.get("access", ""))))
        for r in config["linux"]["resources"]["devices"]
        if r.get("allow")
    ]
    cgdev_rules = [(r.allow, r.type, r.major, r.minor, "".join(sorted(r.access))) for r in ours.device_rules]
    assert podman_rules == cgdev_rules
    assert len(cgdev_rules) == 4
