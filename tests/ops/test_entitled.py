"""``entitled_devices``: the policy file and the node's CDI directories read for real (temporary
ones), the decision applied; nothing is granted from an annotation alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cgdev.core.node_policy import EntitlementSource
from cgdev.errors import InputError
from cgdev.ops.entitled import entitled_devices, read_node_policy

CTL_SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [
        {
            "name": "ctl",
            "containerEdits": {
                "deviceNodes": [
                    {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "permissions": "rw"}
                ]
            },
        },
        {"name": "null", "containerEdits": {"deviceNodes": [{"path": "/dev/null"}]}},
    ],
}


@pytest.fixture
def cdi_dir(tmp_path: Path) -> str:
    directory = tmp_path / "cdi"
    directory.mkdir()
    (directory / "gpu.json").write_text(json.dumps(CTL_SPEC))
    return str(directory)


def test_no_annotation_no_policy_is_empty(tmp_path: Path, cdi_dir: str) -> None:
    decision = entitled_devices({}, {}, policy_path=str(tmp_path / "none.yaml"), cdi_dirs=[cdi_dir])
    assert decision.is_empty and decision.resolution is None and decision.refusals == ()


def test_installed_cdi_name_resolves_to_its_spec(tmp_path: Path, cdi_dir: str) -> None:
    annotations = {"cdi.k8s.io/gpu": "example.com/gpu=ctl,example.com/gpu=null"}
    decision = entitled_devices(annotations, {}, policy_path=str(tmp_path / "none.yaml"), cdi_dirs=[cdi_dir])
    assert decision.resolution is not None and not decision.is_empty
    rules = [(r.type, r.major, r.minor, r.access) for r in decision.resolution.device_rules]
    assert rules == [("c", 195, 255, "rw"), ("c", 1, 3, "rwm")]  # /dev/null's numbers from the host node
    assert decision.refusals == ()


def test_unknown_cdi_name_and_annotation_alone_are_refused(tmp_path: Path, cdi_dir: str) -> None:
    annotations = {"cdi.k8s.io/gpu": "example.com/gpu=nope", "cgdev.io/devices": "c 1:1 rw"}
    decision = entitled_devices(annotations, {}, policy_path=str(tmp_path / "none.yaml"), cdi_dirs=[cdi_dir])
    assert decision.is_empty
    assert [(r.source, r.name) for r in decision.refusals] == [
        (EntitlementSource.CDI, "example.com/gpu=nope"),
        (EntitlementSource.ANNOTATION, "c 1:1 rw"),
    ]
    assert all("\n" not in line for line in decision.log_lines())


def test_policy_file_enables_the_annotation(tmp_path: Path, cdi_dir: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("annotation:\n  enabled: true\n  devices:\n    - device: c 195:255\n      access: rw\n")
    config = {"linux": {"devices": [{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}]}}
    decision = entitled_devices(
        {"cgdev.io/devices": "c 195:255 rw, c 195:255 rwm"},
        config,
        policy_path=str(policy),
        cdi_dirs=[cdi_dir],
    )
    assert decision.resolution is not None
    assert [(r.minor, r.access) for r in decision.resolution.device_rules] == [(255, "rw")]
    assert [d.path for d in decision.resolution.devices] == ["/dev/nvidiactl"]
    assert [r.name for r in decision.refusals] == ["c 195:255 rwm"]


@pytest.mark.parametrize(
    ("text", "field_part"),
    [("annotation: [1\n", "line"), ("annotation:\n  enabld: true\n", "annotation.enabld"), ("\xff", None)],
)
def test_broken_policy_file_is_an_error_not_the_default(
    tmp_path: Path, text: str, field_part: str | None
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError) as err:
        read_node_policy(str(policy))
    line = str(err.value)
    assert str(policy) in line and "\n" not in line
    if field_part:
        assert field_part in line


def test_a_spec_of_env_only_is_not_empty(tmp_path: Path) -> None:
    """The wrapper runtime injects env and mounts too: such a decision is not 'nothing'."""
    directory = tmp_path / "cdi"
    directory.mkdir()
    spec = {"cdiVersion": "0.3.0", "kind": "example.com/env", "devices": [
        {"name": "e", "containerEdits": {"env": ["VISIBLE=1"]}}]}  # fmt: skip
    (directory / "env.json").write_text(json.dumps(spec))
    decision = entitled_devices({"cdi.k8s.io/e": "example.com/env=e"}, {}, policy_path=str(tmp_path / "none"),
                                cdi_dirs=[str(directory)])  # fmt: skip
    assert not decision.is_empty
    assert decision.resolution is not None and decision.resolution.env == ("VISIBLE=1",)
    assert decision.resolution.device_rules == ()
