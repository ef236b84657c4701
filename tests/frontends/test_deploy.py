"""The packaging for a node (issue 10 item 4): the Kubernetes manifests validate offline against
the Kubernetes schema in strict mode, and keep the least privilege they document; the systemd unit
passes systemd's own checker."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "deploy" / "systemd" / "cgdev-watch.service"
MANIFESTS = sorted(KUBE.glob("*.yaml"))

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the dev extra's kubernetes-validate")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        with path.open() as fh:
            out += [(path.name, doc) for doc in yaml.safe_load_all(fh) if doc]
    return out


def _daemonset() -> dict[str, Any]:
    return next(doc for _, doc in _documents() if doc["kind"] == "DaemonSet")


def test_every_kind_the_issue_names_is_there() -> None:
    kinds = {doc["kind"] for _, doc in _documents()}
    assert {"DaemonSet", "ServiceAccount", "Service"} <= kinds


@pytest.mark.parametrize(("name", "doc"), _documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_validates_strictly(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The check above could fail: one unknown field in the DaemonSet is refused."""
    broken = copy.deepcopy(_daemonset())
    broken["spec"]["template"]["spec"]["hostPid"] = True  # the real field is hostPID
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_daemonset_is_a_node_agent_with_least_privilege() -> None:
    pod = _daemonset()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["hostPID"] is True
    assert pod.get("hostNetwork") is not True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/sys/fs/cgroup", "/sys/fs/bpf", "/run/systemd", "/run/dbus", "/run/crun", "/run/runc",
            "/run/containerd", "/var/lib/cgdev"} <= mounts  # fmt: skip
    security = container["securityContext"]
    assert security["privileged"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == {"SYS_ADMIN", "NET_ADMIN", "MKNOD", "SYS_PTRACE"}
    assert security["readOnlyRootFilesystem"] is True
    assert "allowPrivilegeEscalation" not in security  # the API refuses false beside SYS_ADMIN
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert pod["automountServiceAccountToken"] is False  # no API server access needed
    assert "--metrics-address=$(POD_IP)" in container["args"]  # not every interface of the pod


def test_service_is_scrapable_by_annotation_and_servicemonitor() -> None:
    service = next(doc for _, doc in _documents() if doc["kind"] == "Service")
    daemonset = _daemonset()
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert service["spec"]["selector"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    port = service["spec"]["ports"][0]
    assert (port["name"], port["targetPort"]) == ("metrics", "metrics")
    assert str(port["port"]) == service["metadata"]["annotations"]["prometheus.io/port"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd's own checker accepts the unit (its ExecStart pointed at a binary that exists here,
    since verify insists on one)."""
    unit = tmp_path / UNIT.name
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/cgdev watch --repair" in text
    unit.write_text(text.replace("/usr/local/bin/cgdev", shutil.which("true") or "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (0, "")  # it exits 0 on warnings: none may be printed
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(broken)], capture_output=True, text=True
    )
    assert "stricter" in done.stderr  # so a misspelt setting would have been seen
