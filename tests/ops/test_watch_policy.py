"""The watcher trusts what the node policy trusts (ops.watch.node_policy_trust): the hook's decision
for a running container, never an annotation alone, nothing on a policy it cannot read; the
decision is made once per container and policy version."""

from __future__ import annotations

import json
import os
from pathlib import Path

from test_entitled import CTL_SPEC

from cgdev.ops.reconcile import Wanted, WantedSource
from cgdev.ops.targets import Target, TargetKind
from cgdev.ops.watch import node_policy_trust


def _target(annotations: dict[str, str], name: str = "c1") -> Target:
    return Target(name, TargetKind.CONTAINER, f"/system.slice/{name}.scope", container_id=name,
                  annotations=annotations)  # fmt: skip


def _cdi(tmp_path: Path) -> str:
    directory = tmp_path / "cdi"
    directory.mkdir()
    (directory / "gpu.json").write_text(json.dumps(CTL_SPEC))
    return str(directory)


def test_an_installed_cdi_name_is_wanted_and_an_annotation_alone_is_not(tmp_path: Path) -> None:
    trusted = node_policy_trust(str(tmp_path / "no-policy.yaml"), [_cdi(tmp_path)])
    assert list(trusted(_target({"cdi.k8s.io/gpu": "example.com/gpu=ctl"}))) == [
        Wanted(("c", 195, 255), 6, WantedSource.POLICY)  # the spec's "rw", nothing wider
    ]
    assert trusted(_target({"cgdev.io/devices": "c 1:1 rw"}, "c2")) == ()
    assert trusted(_target({"cdi.k8s.io/gpu": "example.com/gpu=nope"}, "c3")) == ()
    assert trusted(_target({}, "c4")) == ()


def test_an_unreadable_policy_entitles_nothing_and_a_new_one_is_read(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nannotation: {enabled: maybe}\n")  # not a valid policy
    trusted = node_policy_trust(str(policy), [_cdi(tmp_path)])
    claim = _target({"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
    assert trusted(claim) == ()
    policy.write_text("version: 1\n")
    os.utime(policy, (1, 1))  # another version of the file: decided again
    assert [w.key for w in trusted(claim)] == [("c", 195, 255)]
