"""The reproduced runtime shapes: byte-equal to programs captured from the real runtimes, and
semantically equal to engineer A's semantics for the same rule list (interpreter and lifter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cgdev.core import interp
from cgdev.core.fingerprint import is_cgdev_program
from cgdev.core.isa import decode, encode
from cgdev.core.model import Rule
from cgdev.core.policy import Policy
from cgdev.core.rules import parse_oci_devices
from cgdev.core.semantics import policy_of
from cgdev.core.shapes import shape_program, systemd_properties_program
from cgdev.errors import InputError
from evidence import EVIDENCE
from policy_samples import OCI_DEFAULT, probe_points

PROC_DEVICES = "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n\nBlock devices:\n  8 sd\n"


def _evidence(path: str) -> Path:
    full = EVIDENCE / path
    if not full.exists():
        pytest.skip(f"reference capture {full} is not on this machine")
    return full


def spec_rules(case: str) -> list[Rule]:
    config = json.loads(_evidence(f"per-case/{case}/config.json").read_text())
    return parse_oci_devices(config["linux"]["resources"]["devices"])


def unit_properties(case: str, show: str) -> tuple[str, list[tuple[str, str]]]:
    policy, allow = "", []
    for line in _evidence(f"per-case/{case}/{show}").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "DevicePolicy":
            policy = value
        elif key == "DeviceAllow":
            path, _, access = value.rpartition(" ")
            allow.append((path, access))
    return policy, allow


def captured(name: str) -> bytes:
    return _evidence(f"programs/{name}").read_bytes()


# -- byte equality with the real runtimes ------------------------------------------------------

RUNTIME_CAPTURES = [
    ("runc", "runc-fs", "runc-fs-default--hc-runc-fs-default--unnamed.bin"),
    ("runc", "runc-sd", "runc-sd-default--system.slice_runc-hc-runc-sd-default.scope--unnamed.bin"),
    ("crun", "crun-fs", "crun121-fs-default--hc-crun121-fs-default--unnamed.bin"),
    (
        "crun",
        "crun-sd",
        "crun121-sd-default--system.slice_crun-hc-crun121-sd-default.scope_container--unnamed.bin",
    ),
    ("crun-1.8", "crun181-fs", "crun181-fs-default--hc-crun181-fs-default--unnamed.bin"),
    (
        "crun-1.8",
        "crun181-sd",
        "crun181-sd-default--system.slice_crun-hc-crun181-sd-default.scope_container--unnamed.bin",
    ),
]


@pytest.mark.parametrize(
    ("shape", "case", "capture"), RUNTIME_CAPTURES, ids=[c[2][:24] for c in RUNTIME_CAPTURES]
)
def test_runtime_shape_is_byte_equal_to_the_real_program(shape: str, case: str, capture: str) -> None:
    program = shape_program(spec_rules(case), shape)
    real = captured(capture)
    assert encode(program) == real, f"first difference at {_first_diff(program, real)}"


SYSTEMD_CAPTURES = [
    # The unit's list as `systemctl show` printed it when the program was built.
    (
        "crun-sd",
        "scope-show.txt",
        "crun121-sd-default--system.slice_crun-hc-crun121-sd-default.scope--sd_devices.bin",
    ),
    (
        "crun-sd",
        "scope-show.txt",
        "crun121-sd-default_hook--system.slice_crun-hc-crun121-sd-default.scope--sd_devices.bin",
    ),
    # After daemon-reload systemd re-reads its drop-in, prepending each entry: the list reverses.
    (
        "runc-sd",
        "scope-show-end.txt",
        "runc-sd-default_hook_reload--system.slice_runc-hc-runc-sd-default.scope--sd_devices.bin",
    ),
]


@pytest.mark.parametrize(
    ("case", "show", "capture"), SYSTEMD_CAPTURES, ids=["crun-sd", "crun-sd-hook", "runc-reload"]
)
def test_systemd_shape_is_byte_equal_to_the_real_program(case: str, show: str, capture: str) -> None:
    device_policy, allow = unit_properties(case, show)
    program = systemd_properties_program(device_policy, allow, PROC_DEVICES)
    real = captured(capture)
    assert encode(program) == real, f"first difference at {_first_diff(program, real)}"


def _first_diff(program: tuple, real: bytes) -> int:
    theirs = decode(real)
    for pc, (a, b) in enumerate(zip(program, theirs, strict=False)):
        if a != b:
            return pc
    return min(len(program), len(theirs))


def test_reference_sizes() -> None:
    """DESIGN.md §6's counts "by the code" for the OCI default list as a *spec* (the captures had
    only ``deny a``, hence 64 and 77 there): runc 69, crun 133; systemd gets the 12 rules alone
    (no runtime defaults): prologue + 2 class entries + 8 devices + 1 major + tail."""
    assert len(shape_program(OCI_DEFAULT, "runc")) == 69
    assert len(shape_program(OCI_DEFAULT, "crun")) == 133
    assert len(shape_program(OCI_DEFAULT, "systemd")) == 6 + 2 * 5 + 8 * 4 + 3 + 4
    for shape in ("runc", "crun", "systemd"):
        assert not is_cgdev_program(shape_program(OCI_DEFAULT, shape))


def test_systemd_special_programs() -> None:
    assert systemd_properties_program("auto", []) == ()  # no program at all
    stub = systemd_properties_program("strict", [])
    assert len(stub) == 2 and stub[0].imm == 0  # r0 = 0; exit, no prologue
    dropped = systemd_properties_program("strict", [("char-nosuchdriver", "rw")], PROC_DEVICES)
    assert len(dropped) == 8  # prologue, then deny everything


def test_unknown_shape_is_an_input_error() -> None:
    with pytest.raises(InputError, match="shape"):
        shape_program(OCI_DEFAULT, "youki")


# -- semantic equality with engineer A's semantics ---------------------------------------------

rules = st.builds(
    Rule,
    st.booleans(),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.none(), st.integers(0, 12), st.sampled_from([136, 195])),
    st.one_of(st.none(), st.integers(0, 10), st.sampled_from([254, 255])),
    st.integers(0, 7),
)


def shape_policy_pair(rule_list: list[Rule], shape: str) -> tuple[tuple, Policy]:
    if shape == "systemd":
        rule_list = [r for r in rule_list if r.allow]
    try:
        return shape_program(rule_list, shape), policy_of(rule_list, shape)
    except InputError:
        assume(False)
        raise


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(rules, max_size=20), st.sampled_from(["runc", "crun", "crun-1.8", "systemd"]))
def test_shape_computes_the_runtime_semantics(rule_list: list[Rule], shape: str) -> None:
    program, policy = shape_policy_pair(rule_list, shape)
    if not program:
        assert policy == Policy.allow_all()
        return
    interp.check(program)
    for request in probe_points(policy):
        assert bool(interp.run(program, request, checked=True).verdict) == policy.allows(request), str(
            request
        )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(rules, max_size=20), st.sampled_from(["runc", "crun", "crun-1.8", "systemd"]))
def test_lift_of_shape_is_the_semantics(rule_list: list[Rule], shape: str) -> None:
    from cgdev.core.lift import lift

    program, policy = shape_policy_pair(rule_list, shape)
    assume(program)
    result = lift(program)
    assert result.policy == policy
    assert result.generator == ("crun" if shape == "crun-1.8" else shape)


@pytest.mark.parametrize("shape", ["runc", "crun", "crun-1.8"])
def test_constants_above_2_31_never_match_in_runtime_programs(shape: str) -> None:
    """runc and crun compare with 64-bit JNE against a sign-extended immediate: the semantics
    must say what the program does (the rule is dead), and the lifter must agree."""
    from cgdev.core.lift import lift

    big = 0x8000_0000
    rule_list = [Rule(True, "c", big, None, 6), Rule(True, "c", 7, big + 5, 6)]
    program, policy = shape_policy_pair(rule_list, shape)
    assert not policy.verdict("c", big, 0, 2)
    assert not policy.verdict("c", 7, big + 5, 2)
    assert lift(program).policy == policy
    for request in probe_points(policy):
        assert bool(interp.run(program, request, checked=True).verdict) == policy.allows(request)
