"""The JSON documented in docs/json-schema.md is what the commands print: the documented fields,
with their documented types, on real cgroups carrying the captured crun/systemd/hook programs.
There is no systemd here (--no-systemd); a layer's systemd fields are checked against a real unit
in test_explain_lab.py."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from fixtures_kernel import requires_root_bpf
from scratch_node import ScratchNode, node  # noqa: F401

REQUEST = {"type": str, "major": int, "minor": int, "access": str}
PROGRAM = {"id": int, "name": str, "tag": str, "generator": str, "allowed": bool, "rule": (str, type(None))}
FINDING = {"code": str, "message": str, "fix": list}


def _cgdev(*argv: str) -> tuple[int, Any]:
    done = subprocess.run([sys.executable, "-m", "cgdev", *argv], capture_output=True, text=True, timeout=60)
    assert len(done.stderr.strip().splitlines()) <= 1, done.stderr
    return done.returncode, json.loads(done.stdout)


def _has(doc: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    for key, kind in shape.items():
        assert key in doc, f"{where}: no {key!r}"
        assert isinstance(doc[key], kind), f"{where}.{key}: {type(doc[key]).__name__}"


@requires_root_bpf
def test_explain_show_audit_json_follow_the_documented_schema(node: ScratchNode) -> None:  # noqa: F811
    node.container("crio", "7c" * 32, "sd", "crun_hook")
    status, doc = _cgdev(
        "explain", "7c7c7c7c", "--device", "c 195:255", "--access", "rw", "--json", "--no-systemd"
    )
    assert status == 1  # the scope's sd_devices denies what the hooked leaf allows
    _has(doc, {"target": dict, "cgroup": str, "request": dict, "allowed": bool, "layers": list}, "explain")
    _has(doc, {"after_reload": dict, "findings": list, "denied_by": list}, "explain")
    _has(doc["request"], REQUEST, "request")
    assert doc["request"] == {"type": "c", "major": 195, "minor": 255, "access": "rw"}
    assert doc["allowed"] is False
    programs = [p for layer in doc["layers"] for p in layer["programs"]]
    assert len(programs) == 2
    for layer in doc["layers"]:
        _has(layer, {"cgroup": str, "programs": list}, "layer")
        assert "systemd" in layer and (layer["systemd"] is None or isinstance(layer["systemd"], dict))
        for program in layer["programs"]:
            _has(program, PROGRAM, "program")
    assert [p["allowed"] for p in programs] == [False, True]
    # --no-systemd: what a reload attaches on the scope is unknown, and explain says so
    assert doc["after_reload"]["allowed"] is None
    assert any("systemd was not asked" in note for note in doc["after_reload"]["notes"])
    assert {f["code"] for f in doc["findings"]} >= {"double-filter"}
    for finding in doc["findings"]:
        _has(finding, FINDING, "finding")
        assert all({"action", "tradeoff"} <= set(fix) for fix in finding["fix"])

    status, shown = _cgdev("show", "7c7c7c7c", "--json", "--no-systemd")
    _has(
        shown, {"target": dict, "cgroup": str, "layers": list, "after_reload": dict, "findings": list}, "show"
    )
    assert shown["effective"]["rules"] and all(isinstance(r, str) for r in shown["effective"]["rules"])

    status, audited = _cgdev("audit", "--root", node.rel(node.root), "--json", "--no-systemd")
    assert status == 1
    _has(audited, {"containers": list, "summary": dict, "errors": list}, "audit")
    (container,) = audited["containers"]
    _has(container, {"cgroup": str, "findings": list, "programs": int}, "audit container")
