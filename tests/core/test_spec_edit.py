"""The wrapper runtime's spec edit: a CDI resolution injected into config.json as the reference
library injects it, idempotent, and never allowing more than the resolution's own rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from cgdev.core.cdi import CdiHook, CdiMount, CdiResolution, OciDevice, OciDeviceRule
from cgdev.core.model import Request, Rule
from cgdev.core.rules import format_oci, read_oci_config
from cgdev.core.semantics import policy_of
from cgdev.core.spec_edit import apply_resolution
from cgdev.errors import InputError
from strategies import rule_lists

PATHS = ("/dev/d0", "/dev/d1", "/dev/d2", "/dev/nvidiactl")


def _node(path: str, shift: int = 0) -> tuple[str, int, int]:
    """The numbers a path has in the generated configs (``shift`` makes a conflicting node)."""
    return "c", 195 + shift, PATHS.index(path)


def resolution(
    devices: list[tuple[str, str]] = (),  # type: ignore[assignment]  # (path, permissions)
    *,
    env: tuple[str, ...] = (),
    mounts: tuple[CdiMount, ...] = (),
    hooks: tuple[CdiHook, ...] = (),
    gids: tuple[int, ...] = (),
    shift: int = 0,
) -> CdiResolution:
    nodes = []
    rules = []
    for path, perms in devices:
        t, major, minor = _node(path, shift)
        nodes.append(OciDevice(path, t, major, minor, 0o666))
        rules.append(OciDeviceRule(True, t, major, minor, perms))
    return CdiResolution(
        ("v/c=x",), ("/etc/cdi/x.json",), tuple(nodes), tuple(rules), env, mounts, hooks, gids
    )


def base_config(rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"], "args": ["sh"]},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "devices": [{"path": "/dev/d1", "type": "c", "major": 195, "minor": 1}],
            "resources": {"devices": rules if rules is not None else [{"allow": False, "access": "rwm"}]},
        },
    }


# -- properties ---------------------------------------------------------------------------------

perms = st.sampled_from(("rwm", "rw", "r", "w", "m", ""))
device_lists = st.lists(st.tuples(st.sampled_from(PATHS), perms), max_size=4)
envs = st.lists(st.sampled_from(("A=1", "A=2", "B=x", "PATH=/opt")), max_size=3).map(tuple)
mount_sets = st.lists(
    st.builds(
        CdiMount, host_path=st.sampled_from(("/h1", "/h2")), container_path=st.sampled_from(("/x", "/x/y"))
    ),
    max_size=2,
).map(tuple)
hook_sets = st.lists(
    st.builds(CdiHook, hook_name=st.sampled_from(("createRuntime", "poststart")), path=st.just("/bin/h")),
    max_size=2,
).map(tuple)


@st.composite
def cases(draw: st.DrawFn, semantics: str = "ordered") -> tuple[dict[str, Any], CdiResolution]:
    spec_rules = [format_oci(r) for r in draw(rule_lists(semantics))]
    config = base_config(spec_rules)
    res = resolution(
        draw(device_lists),
        env=draw(envs),
        mounts=draw(mount_sets),
        hooks=draw(hook_sets),
        gids=tuple(draw(st.lists(st.integers(0, 50), max_size=2))),
    )
    return config, res


@settings(max_examples=300, deadline=None)
@given(cases())
def test_applying_twice_is_applying_once(case: tuple[dict[str, Any], CdiResolution]) -> None:
    config, res = case
    once = apply_resolution(config, res)
    twice = apply_resolution(once.config, res)
    assert twice.config == once.config
    assert not twice.changed, twice


@pytest.mark.parametrize("semantics", ["ordered", "crun", "runc"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_policy_is_the_old_rules_plus_exactly_the_added_ones(semantics: str, data: st.DataObject) -> None:
    """Whatever rules the edit skips as already in place, the result reads as the old list with
    every rule of the resolution appended, under each runtime's semantics."""
    config, res = data.draw(cases(semantics))
    old = read_oci_config(config).rules
    new = read_oci_config(apply_resolution(config, res).config).rules
    added = [r for r in res.rules() if r.access]
    try:
        expected = policy_of([*old, *added], semantics)
    except InputError:  # a list this runtime refuses (runc: a deny after an allow-all, ...)
        reject()
    assert policy_of(new, semantics) == expected


@settings(max_examples=300, deadline=None)
@given(cases())
def test_nothing_is_widened_beyond_the_resolutions_devices(
    case: tuple[dict[str, Any], CdiResolution],
) -> None:
    config, res = case
    before = policy_of(read_oci_config(config).rules)
    after = policy_of(read_oci_config(apply_resolution(config, res).config).rules)
    named = policy_of([Rule(True, d.type, d.major, d.minor, 7) for d in res.devices])
    assert before.issubset(after)
    assert after.minus(before).issubset(named)
    for rule in res.rules():  # and each rule's own access is there
        for req in (Request(rule.type, rule.major, rule.minor, bit) for bit in (1, 2, 4)):  # type: ignore[arg-type]
            if rule.access & req.access:
                assert after.allows(req)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_one_node_per_path_and_the_input_left_alone(case: tuple[dict[str, Any], CdiResolution]) -> None:
    config, res = case
    snapshot = repr(config)
    edited = apply_resolution(config, res).config
    assert repr(config) == snapshot  # pure: the caller's document is not touched
    paths = [d["path"] for d in edited["linux"]["devices"]]
    assert len(paths) == len(set(paths))
    for dev in res.devices:
        assert {"path": dev.path, "type": "c", "major": dev.major, "minor": dev.minor, "fileMode": 0o666} in (
            edited["linux"]["devices"]
        )


# -- the reference's behaviour, case by case ----------------------------------------------------


def test_device_and_rule_added_at_the_end() -> None:
    edit = apply_resolution(base_config(), resolution([("/dev/nvidiactl", "rw")]))
    linux = edit.config["linux"]
    assert linux["devices"][-1] == {
        "path": "/dev/nvidiactl",
        "type": "c",
        "major": 195,
        "minor": 3,
        "fileMode": 0o666,
    }
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 195, "minor": 3, "access": "rw"},
    ]
    assert edit.devices == ("/dev/nvidiactl",) and len(edit.rules) == 1


def test_a_conflicting_node_is_an_input_error_naming_the_entry() -> None:
    with pytest.raises(InputError) as err:
        apply_resolution(base_config(), resolution([("/dev/d1", "rw")], shift=1))
    assert err.value.field == "config: linux.devices[0].path" and err.value.value == "/dev/d1"
    assert "c 195:1" in str(err.value) and "c 196:1" in str(err.value)


def test_the_same_node_already_there_is_kept_once() -> None:
    config = base_config()
    edit = apply_resolution(config, resolution([("/dev/d1", "rw")]))
    assert [d["path"] for d in edit.config["linux"]["devices"]] == ["/dev/d1"]


def test_none_permission_gives_the_node_and_no_rule() -> None:
    edit = apply_resolution(base_config(), resolution([("/dev/d2", "")]))
    assert edit.config["linux"]["devices"][-1]["path"] == "/dev/d2"
    assert edit.config["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_a_rule_taken_back_by_a_later_deny_is_added_again() -> None:
    rule = {"allow": True, "type": "c", "major": 195, "minor": 0, "access": "rw"}
    config = base_config([rule, {"allow": False, "access": "rwm"}])
    edit = apply_resolution(config, resolution([("/dev/d0", "rw")]))
    assert edit.config["linux"]["resources"]["devices"][-1] == rule and len(edit.rules) == 1


def test_node_owner_follows_a_non_root_process_user() -> None:
    config = base_config()
    config["process"]["user"] = {"uid": 1000, "gid": 100}
    dev = apply_resolution(config, resolution([("/dev/d0", "rw")])).config["linux"]["devices"][-1]
    assert (dev["uid"], dev["gid"]) == (1000, 100)


def test_env_mounts_hooks_and_gids() -> None:
    res = resolution(
        env=("PATH=/opt", "X=1"),
        mounts=(CdiMount("/h", "/x/y", ["ro"]), CdiMount("/h", "/a")),
        hooks=(CdiHook("createRuntime", "/bin/h", ["h", "x"]),),
        gids=(0, 44),
    )
    edit = apply_resolution(base_config(), res)
    doc = edit.config
    assert doc["process"]["env"] == ["PATH=/opt", "X=1"]
    assert [m["destination"] for m in doc["mounts"]] == ["/a", "/proc", "/x/y"]
    assert doc["hooks"] == {"createRuntime": [{"path": "/bin/h", "args": ["h", "x"]}]}
    assert doc["process"]["user"]["additionalGids"] == [44]
    assert set(edit.other) == {
        "env PATH",
        "env X",
        "mount /x/y",
        "mount /a",
        "hook createRuntime /bin/h",
        "gid 44",
    }


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"linux": []}, "config: linux"),
        ({"linux": {"devices": {}}}, "config: linux.devices"),
        ({"linux": {"devices": ["x"]}}, "config: linux.devices[0]"),
        ({"linux": {"resources": {"devices": 3}}}, "config: linux.resources.devices"),
        ({"process": "sh"}, "config: process"),
    ],
)
def test_a_section_of_the_wrong_type_is_named(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as err:
        apply_resolution(config, resolution([("/dev/d0", "rw")]))
    assert err.value.field == field


def test_an_empty_resolution_changes_nothing() -> None:
    config = base_config()
    edit = apply_resolution(config, resolution())
    assert edit.config == config and not edit.changed
