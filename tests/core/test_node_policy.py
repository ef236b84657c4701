"""The node's entitlement policy (a security boundary): strict parsing, one line per bad field, and
a decision that never grants more than the policy or a CDI spec lists, whatever the annotations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core.cdi import CdiResolution, OciDevice, OciDeviceRule
from cgdev.core.node_policy import (
    DEVICES_ANNOTATION,
    EntitlementSource,
    NodePolicy,
    decide,
    merge,
    parse_grant,
    parse_node_policy,
)
from cgdev.errors import InputError

NVIDIACTL_SPEC = CdiResolution(
    names=("nvidia.com/gpu=ctl",),
    spec_paths=("/etc/cdi/nvidia.json",),
    devices=(OciDevice("/dev/nvidiactl", "c", 195, 255),),
    device_rules=(OciDeviceRule(True, "c", 195, 255, "rw"),),
)
INSTALLED = {"nvidia.com/gpu=ctl": NVIDIACTL_SPEC}


def installed(name: str) -> CdiResolution | str:
    return INSTALLED.get(name, "no such CDI device in /etc/cdi, /var/run/cdi")


ENABLED = parse_node_policy(
    {
        "annotation": {
            "enabled": True,
            "devices": [
                {"device": "c 195:255", "access": "rw", "path": "/dev/nvidiactl"},
                {"device": "c 10:200"},
            ],
        }
    },
    "policy.yaml",
)


@pytest.mark.parametrize(
    ("document", "field", "value"),
    [
        ({"versoin": 1}, "policy.yaml: versoin", None),
        ({"version": 2}, "policy.yaml: version", 2),
        ({"annotation": {"enabled": "yes"}}, "policy.yaml: annotation.enabled", None),
        (
            {"annotation": {"devices": [{"device": "c 195:*"}]}},
            "policy.yaml: annotation.devices[0].device",
            "c 195:*",
        ),
        ({"annotation": {"devices": [{"device": "a"}]}}, "policy.yaml: annotation.devices[0].device", "a"),
        (
            {"annotation": {"devices": [{"device": "c 195:255", "access": "rwx"}]}},
            "policy.yaml: annotation.devices[0].device",
            "c 195:255",
        ),
        (
            {"annotation": {"devices": [{"device": "c 195:255 rw"}]}},
            "policy.yaml: annotation.devices[0].device",
            "c 195:255 rw",
        ),
        (
            {"annotation": {"devices": [{"device": "c 195:255", "path": "nvidiactl"}]}},
            "policy.yaml: annotation.devices[0].path",
            "nvidiactl",
        ),
        (
            {"annotation": {"devices": [{"device": "c 99999:1"}]}},
            "policy.yaml: annotation.devices[0].device",
            None,
        ),
        ({"images": [{"image": "x"}]}, "policy.yaml: images[0].devices", None),
        (
            {"images": [{"image": "x", "devices": [{"device": "u 1:1"}]}]},
            "policy.yaml: images[0].devices[0].device",
            None,
        ),
        ({"namespaces": [{"namespace": 3, "devices": []}]}, "policy.yaml: namespaces[0].namespace", None),
        ({"cdi": {"kinds": ["nvidia.com"]}}, "policy.yaml: cdi.kinds[0]", "nvidia.com"),
        ({"bundle_dirs": ["relative"]}, "policy.yaml: bundle_dirs[0]", "relative"),
        ([1, 2], "policy.yaml: (document)", None),
    ],
)
def test_bad_policy_is_one_line_naming_file_and_field(document: Any, field: str, value: Any) -> None:
    with pytest.raises(InputError) as err:
        parse_node_policy(document, "policy.yaml")
    assert err.value.field == field
    if value is not None:
        assert err.value.value == value
    assert "\n" not in str(err.value)


def test_empty_policy_is_the_default() -> None:
    assert parse_node_policy(None, "p") == NodePolicy()
    assert NodePolicy().annotation.enabled is False
    assert NodePolicy().cdi.enabled is True


def test_installed_cdi_name_is_granted() -> None:
    decision = decide(NodePolicy(), {"cdi.k8s.io/gpu": "nvidia.com/gpu=ctl"}, installed)
    assert decision.cdi_names == ("nvidia.com/gpu=ctl",)
    assert decision.refusals == ()


@pytest.mark.parametrize(
    ("annotations", "source"),
    [
        ({"cdi.k8s.io/x": "nvidia.com/gpu=nope"}, EntitlementSource.CDI),
        ({"cdi.k8s.io/x": "/dev/mem"}, EntitlementSource.CDI),
        ({DEVICES_ANNOTATION: "b 8:0 rwm"}, EntitlementSource.ANNOTATION),
        ({DEVICES_ANNOTATION: "c 1:1 rw"}, EntitlementSource.ANNOTATION),
        ({DEVICES_ANNOTATION: "c 195:*"}, EntitlementSource.ANNOTATION),
    ],
)
def test_untrusted_claims_are_refused_with_default_policy(annotations: dict[str, str], source: str) -> None:
    decision = decide(NodePolicy(), annotations, installed)
    assert decision.cdi_names == () and decision.grants == ()
    assert [r.source for r in decision.refusals] == [source]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("b 8:0 rwm", "not a device the node's policy lists"),
        ("c 1:1 rw", "not a device the node's policy lists"),
        ("c 1:11 rw", "not a device the node's policy lists"),  # /dev/kmsg
        ("c 195:*", "wildcards are never granted"),
        ("a", "wildcards are never granted"),
        ("c 195:255 rwm", "at most 'rw'"),
        ("c 10:200 rwm", "at most 'rw'"),
        ("/dev/nvidiactl", "not 'TYPE MAJOR:MINOR"),
    ],
)
def test_enabled_annotation_refuses_what_the_policy_does_not_list(entry: str, why: str) -> None:
    decision = decide(ENABLED, {DEVICES_ANNOTATION: entry}, installed)
    assert decision.grants == ()
    (refusal,) = decision.refusals
    assert why in refusal.why and refusal.name == entry


def test_enabled_annotation_grants_listed_device_with_its_path() -> None:
    decision = decide(ENABLED, {DEVICES_ANNOTATION: "c 195:255 r, c 195:255 rw"}, installed)
    assert [(g.major, g.minor, g.access, g.path) for g in decision.grants] == [
        (195, 255, "r", "/dev/nvidiactl"),
        (195, 255, "rw", "/dev/nvidiactl"),
    ]


def test_cdi_kinds_restrict_trusted_specs() -> None:
    policy = parse_node_policy({"cdi": {"kinds": ["example.com/fpga"]}}, "p")
    decision = decide(policy, {"cdi.k8s.io/a": "nvidia.com/gpu=ctl"}, installed)
    assert decision.cdi_names == () and "kinds" in decision.refusals[0].why
    off = parse_node_policy({"cdi": {"enabled": False}}, "p")
    assert decide(off, {"cdi.k8s.io/a": "nvidia.com/gpu=ctl"}, installed).cdi_names == ()


def test_image_and_namespace_come_only_from_engine_keys() -> None:
    policy = parse_node_policy(
        {
            "images": [{"image": "nvcr.io/*", "devices": [{"device": "c 195:255"}]}],
            "namespaces": [{"namespace": "gpu", "devices": [{"device": "c 195:254", "access": "r"}]}],
        },
        "p",
    )
    engine = {"io.kubernetes.cri.image-name": "nvcr.io/cuda:12", "io.kubernetes.pod.namespace": "gpu"}
    granted = decide(policy, engine, installed).grants
    assert [(g.minor, g.access) for g in granted] == [(255, "rw"), (254, "r")]
    user = {"image": "nvcr.io/cuda:12", "namespace": "gpu", "io.kubernetes.cri.image-name": "busybox"}
    assert decide(policy, user, installed).grants == ()


def test_merge_adds_rules_and_nodes_once() -> None:
    grants = (parse_grant("c 195:255 rw", "x", path="/dev/nvidiactl"), parse_grant("c 10:200", "x"))
    merged = merge(NVIDIACTL_SPEC, grants)
    assert merged is not None
    assert [d.path for d in merged.devices] == ["/dev/nvidiactl"]
    assert [(r.major, r.minor, r.access) for r in merged.device_rules] == [(195, 255, "rw"), (10, 200, "rw")]
    assert merge(None, ()) is None


# ---------------------------------------------------------------------------------------------
# The property: whatever the annotations say, every granted rule is a policy-listed device with at
# most its access, or a rule of an installed CDI spec.

_entries = st.one_of(
    st.sampled_from(
        [
            "c 195:255 rw",
            "c 195:255 rwm",
            "c 195:255 r",
            "b 8:0 rwm",
            "c 1:1 rw",
            "c 195:*",
            "c 10:200",
            "c 10:200 m",
            "a",
            "c 1:11 rw",
            "",
            " , ",
        ]
    ),
    st.builds(
        lambda t, ma, mi, acc: f"{t} {ma}:{mi} {acc}",
        st.sampled_from("bcu"),
        st.integers(0, 300),
        st.integers(0, 300),
        st.sampled_from(["r", "w", "m", "rw", "rwm", "wr", "mmr", "x"]),
    ),
    st.text(max_size=20),
)
_names = st.one_of(
    st.sampled_from(["nvidia.com/gpu=ctl", "nvidia.com/gpu=all", "x/y=z", "/dev/mem"]), st.text(max_size=20)
)
_annotations = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                "cdi.k8s.io/a",
                "cdi.k8s.io/b",
                DEVICES_ANNOTATION,
                "io.kubernetes.pod.namespace",
                "io.kubernetes.cri.image-name",
            ]
        ),
        st.text(max_size=10),
    ),
    st.one_of(
        st.lists(_entries, max_size=4).map(", ".join),
        st.lists(_names, max_size=3).map(",".join),
        st.sampled_from(["gpu", "nvcr.io/x", "default"]),
    ),
    max_size=5,
)
_policies = st.builds(
    lambda enabled, kinds, listed, with_image: parse_node_policy(
        {
            "annotation": {"enabled": enabled, "devices": listed},
            "cdi": {"kinds": kinds},
            "images": [{"image": "nvcr.io/*", "devices": [{"device": "c 195:254", "access": "r"}]}]
            if with_image
            else [],
            "namespaces": [{"namespace": "gpu", "devices": [{"device": "c 195:253", "access": "m"}]}],
        },
        "p",
    ),
    st.booleans(),
    st.sampled_from([[], ["nvidia.com/gpu"], ["x/y"]]),
    st.lists(
        st.builds(
            lambda minor, acc: {"device": f"c 195:{minor}", "access": acc},
            st.integers(250, 255),
            st.sampled_from(["r", "rw", "rwm", "m"]),
        ),
        max_size=3,
    ),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(_policies, _annotations)
def test_no_decision_is_wider_than_the_policy_or_the_spec(
    policy: NodePolicy, annotations: dict[str, str]
) -> None:
    decision = decide(policy, annotations, installed)
    allowed: list[tuple[str, int, int, str]] = []
    if policy.annotation.enabled:
        allowed += [(g.type, g.major, g.minor, g.access) for g in _grants(policy.annotation.devices)]
    for entry in [*policy.images, *policy.namespaces]:
        allowed += [(g.type, g.major, g.minor, g.access) for g in _grants(entry.devices)]
    for g in decision.grants:
        assert any(
            (t, ma, mi) == (g.type, g.major, g.minor) and set(g.access) <= set(acc)
            for t, ma, mi, acc in allowed
        ), (g, allowed)
    for name in decision.cdi_names:
        assert name in INSTALLED
        assert not policy.cdi.kinds or name.split("=")[0] in policy.cdi.kinds
    merged = merge(INSTALLED[decision.cdi_names[0]] if decision.cdi_names else None, decision.grants)
    for rule in merged.device_rules if merged else ():
        in_spec = rule in NVIDIACTL_SPEC.device_rules and bool(decision.cdi_names)
        in_policy = any(
            (t, ma, mi) == (rule.type, rule.major, rule.minor) and set(rule.access) <= set(acc)
            for t, ma, mi, acc in allowed
        )
        assert in_spec or in_policy
    # Every claim is either granted or refused: nothing is dropped silently.
    if DEVICES_ANNOTATION in annotations and not policy.annotation.enabled:
        assert any(r.source == EntitlementSource.ANNOTATION for r in decision.refusals)


def _grants(devices: Any) -> list[Any]:
    from cgdev.core.node_policy import policy_grants

    return policy_grants(devices)
