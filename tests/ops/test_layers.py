"""Layers read from the real kernel: attribution per cgroup, lift-once cache, effective = kernel."""

from __future__ import annotations

from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.core.policy import Policy
from cgdev.ops.collect import collect
from cgdev.ops.layers import (
    Inspection,
    Layer,
    LiftCache,
    ProgramRecord,
    analyse_layers,
    devices_list_policy,
    effective_policy,
)
from cgdev.ops.targets import resolve
from fixtures_kernel import ALLOW_ALL, requires_root_bpf
from scratch_node import ScratchNode, node, program_bytes, sample_requests  # noqa: F401


@requires_root_bpf
def test_layers_attribute_programs_to_their_cgroup(node: ScratchNode) -> None:  # noqa: F811
    leaf = node.container("crio", "ab" * 32, "sd", "crun")
    inspection = collect(resolve(leaf))
    assert inspection.layers[0].cgroup == "/" and inspection.layers[-1].cgroup == node.rel(leaf)
    with_programs = [
        (layer.cgroup, [p.name for p in layer.programs]) for layer in inspection.layers if layer.programs
    ]
    scope = node.rel(leaf).rsplit("/", 1)[0]
    assert with_programs[-2:] == [(scope, ["sd_devices"]), (node.rel(leaf), [""])]
    sd = inspection.layers[-2].programs[-1]
    assert sd.xlated == program_bytes("sd") and len(sd.tag) == 16


@requires_root_bpf
def test_effective_policy_equals_kernel_on_sampled_requests(node: ScratchNode) -> None:  # noqa: F811
    leaf = node.container("crio", "cd" * 32, "sd", "crun_hook")
    views = analyse_layers(collect(resolve(leaf)))
    effective = effective_policy(views)
    assert effective is not None
    requests = sample_requests()
    assert len(requests) >= 100 and {r.type for r in requests} == {"b", "c"}
    assert [effective.allows(r) for r in requests] == kernel_verdicts(leaf, requests)


def test_lift_cache_lifts_each_distinct_program_once() -> None:
    raw = program_bytes("crun")
    layers = tuple(Layer(f"/c{i}", (ProgramRecord(i, "", "t", 2, raw),)) for i in range(50))
    cache = LiftCache()
    views = analyse_layers(Inspection(resolve_stub(), layers), cache)
    assert cache.lifted == 1
    assert len({id(v.programs[0].lifted) for v in views}) == 1


def test_withheld_program_is_opaque_not_guessed() -> None:
    view = LiftCache().view(ProgramRecord(1, "x", "t", 0, b""))
    assert view.opaque is not None and view.policy is None
    assert effective_policy([]) == Policy.allow_all()


def test_v1_devices_list_policy() -> None:
    assert devices_list_policy(("a *:* rwm",)) == Policy.allow_all()
    policy = devices_list_policy(("c 1:3 rwm", "c 136:* rw"))
    assert policy is not None and policy.verdict("c", 1, 3, 6) and not policy.verdict("c", 1, 5, 2)
    assert policy.verdict("c", 136, 9, 6) and not policy.verdict("c", 136, 9, 1)
    assert devices_list_policy(None) is None


def test_allow_all_program_lifts_to_allow_all() -> None:
    view = LiftCache().view(ProgramRecord(1, "", "t", 0, ALLOW_ALL))
    assert view.policy == Policy.allow_all()


def resolve_stub():  # type: ignore[no-untyped-def]
    from cgdev.ops.targets import Target

    return Target("x", "cgroup", "/c0")
