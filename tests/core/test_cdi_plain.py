"""The cached CDI resolution (``core.cdi_plain``, no msgspec) against the full one (``core.cdi``).

What must hold: for any valid registry, any claimed names and any host nodes, resolving from the
cache (``registry_cache`` written as JSON and read back) then editing the spec gives exactly the
config.json, the same report and the same errors as ``resolve`` + ``merge`` + the edit.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core.cdi import HostNode, LoadedSpec, build_registry, parse_spec, registry_cache, resolve
from cgdev.core.cdi_plain import PlainHostNode, resolve_cached
from cgdev.core.node_policy import merge
from cgdev.core.spec_edit import apply_resolution
from cgdev.errors import CgdevError

PATHS = ["/dev/a", "/dev/b", "/dev/c", "/dev/d"]
# The host as the lookup sees it: some paths are device nodes, one a fifo, one a regular file.
HOST = {
    "/dev/a": ("c", 195, 0, 0o666),
    "/dev/b": ("b", 8, 1, 0o660),
    "/host/p": ("p", 0, 0, 0o600),
    "/host/file": ("", 0, 0, 0o644),
}

nodes = st.fixed_dictionaries(
    {"path": st.sampled_from(PATHS)},
    optional={
        "hostPath": st.sampled_from(["/dev/a", "/dev/b", "/host/p", "/host/file", "/nowhere"]),
        "type": st.sampled_from(["b", "c", "p", "u"]),
        "major": st.integers(0, 300),
        "minor": st.integers(0, 300),
        "fileMode": st.integers(0, 0o777),
        "permissions": st.sampled_from(["r", "rw", "rwm", "m", "none"]),
        "uid": st.integers(0, 2000),
        "gid": st.integers(0, 2000),
    },
)
mounts = st.fixed_dictionaries(
    {"hostPath": st.sampled_from(["/h1", "/h2"]), "containerPath": st.sampled_from(["/c", "/c/d", "/e"])},
    optional={"options": st.lists(st.sampled_from(["ro", "bind"]), max_size=2)},
)
hooks = st.fixed_dictionaries(
    {"hookName": st.sampled_from(["createRuntime", "poststart"]), "path": st.sampled_from(["/h", "/k"])},
    optional={"args": st.lists(st.sampled_from(["a", "b"]), max_size=2), "timeout": st.integers(1, 9)},
)
edits = st.fixed_dictionaries(
    {},
    optional={
        "env": st.lists(st.sampled_from(["A=1", "A=2", "B=3"]), max_size=3),
        "deviceNodes": st.lists(nodes, min_size=1, max_size=3),
        "mounts": st.lists(mounts, max_size=2),
        "hooks": st.lists(hooks, max_size=2),
        "additionalGids": st.lists(st.integers(0, 50), max_size=2),
    },
)


@st.composite
def specs(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    devices = []
    for name in draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3, unique=True)):
        dev_edits = draw(edits)
        if not any(dev_edits.values()):
            dev_edits = {"env": [f"DEV={name}"]}
        devices.append({"name": name, "containerEdits": dev_edits})
    doc: dict[str, Any] = {"cdiVersion": "0.7.0", "kind": kind, "devices": devices}
    spec_edits = draw(edits)
    if spec_edits:
        doc["containerEdits"] = spec_edits
    return doc


def full_lookup(path: str) -> HostNode | None:
    return HostNode(*HOST[path]) if path in HOST else None


def plain_lookup(path: str) -> PlainHostNode | None:
    return PlainHostNode(*HOST[path]) if path in HOST else None


def outcome(run: Any) -> Any:
    try:
        edit = run()
    except CgdevError as err:
        return ("error", type(err).__name__, err.message)
    rules = [(r.allow, r.type, r.major, r.minor, r.access) for r in edit.rules]
    return edit.config, edit.devices, rules, edit.other


CONFIG = {
    "process": {"user": {"uid": 1000, "gid": 100}, "env": ["A=0"]},
    "mounts": [{"destination": "/c", "source": "/old"}],
    "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]}},
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=specs("example.com/gpu"),
    second=specs("example.com/nic"),
    names=st.lists(
        st.sampled_from([f"example.com/{k}={n}" for k in ("gpu", "nic") for n in "xyz"]),
        min_size=1,
        max_size=4,
    ),
)
def test_the_cached_resolution_edits_exactly_as_the_full_one(
    first: dict[str, Any], second: dict[str, Any], names: list[str]
) -> None:
    loaded = [
        LoadedSpec(f"/etc/cdi/{i}.json", 0, parse_spec(doc, f"/etc/cdi/{i}.json"))
        for i, doc in enumerate((first, second))
    ]
    registry = build_registry(("/etc/cdi",), loaded)
    names = list(dict.fromkeys(n for n in names if n in registry.devices))
    if not names:
        return
    cache = json.loads(json.dumps(registry_cache(registry)))

    def full() -> Any:
        return apply_resolution(CONFIG, merge(resolve(registry, names, full_lookup), ()))  # type: ignore[arg-type]

    def cached() -> Any:
        res = resolve_cached(cache, names, plain_lookup)
        assert res is not None
        return apply_resolution(CONFIG, res)

    assert outcome(cached) == outcome(full)


def test_a_name_not_in_the_cache_is_left_to_the_full_reader() -> None:
    doc = {
        "cdiVersion": "0.5.0",
        "kind": "example.com/gpu",
        "devices": [{"name": "x", "containerEdits": {"env": ["A=1"]}}],
    }
    registry = build_registry(("/etc/cdi",), [LoadedSpec("/etc/cdi/g.json", 0, parse_spec(doc, "g"))])
    cache = registry_cache(registry)
    assert resolve_cached(cache, ["example.com/gpu=x"], plain_lookup) is not None
    assert resolve_cached(cache, ["example.com/gpu=x", "example.com/gpu=nope"], plain_lookup) is None
