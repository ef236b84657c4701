"""Repair (issue 8) without the lab: the plan's exactness over generated chains, the transaction on
real kernel cgroups, the device and access syntax, and the entitlement state file.

"Never more than asked": for chains of every generator shape (runc, crun 1.21, crun 1.8, systemd,
a libnvidia-container prefix in front of each), several layers, and random grants and revokes,
every replacement program lifts to exactly the old policy plus (minus) the request.  On the kernel,
the replaced programs are probed from a scratch cgroup and compared with that expectation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cgdev.core import shapes
from cgdev.core.isa import decode, encode
from cgdev.core.lift import lift
from cgdev.core.model import ACC_M, ACC_R, ACC_W, REQUEST_MASKS, Request, Rule
from cgdev.errors import CgdevError, InputError, NotFound
from cgdev.lab.hooksim import allow_prefix
from cgdev.ops import entitlements
from cgdev.ops.layers import Inspection, Layer, LiftCache, ProgramRecord
from cgdev.ops.repair.plan import (
    Change,
    DeviceAccess,
    ReplaceProgram,
    SwapMode,
    changed_policy,
    parse_access_bits,
    parse_devices,
    plan,
)
from cgdev.ops.targets import Target
from fixtures_kernel import requires_root_bpf
from strategies import rule_lists

RW = ACC_R | ACC_W
OCI_DEFAULTS = [
    Rule(False, "a", None, None, 7),
    Rule(True, "c", None, None, ACC_M),
    Rule(True, "b", None, None, ACC_M),
    *(Rule(True, "c", 1, m, 7) for m in (3, 5, 7, 8, 9)),
    Rule(True, "c", 136, None, 7),
]
OPAQUE_ALLOW_ALL = bytes.fromhex("6112040000000000632af8ff00000000b7000000010000009500000000000000")


def record(prog_id: int, insns: tuple, name: str = "") -> ProgramRecord:
    return ProgramRecord(prog_id, name, f"{prog_id:016x}", 2, encode(insns))


def inspection_of(*layers: tuple[ProgramRecord, ...]) -> Inspection:
    cgroups = ["/a", "/a/b", "/a/b/c", "/a/b/c/d"][: len(layers)]
    target = Target("t", "cgroup", cgroups[-1])
    return Inspection(target, tuple(Layer(cg, progs) for cg, progs in zip(cgroups, layers, strict=True)))


# -- syntax ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("c 195:255", ("c", 195, 255)), ("195:255", ("c", 195, 255)), ("b 8:0", ("b", 8, 0)),
     ("/dev/char/195:255", ("c", 195, 255)), ("/dev/block/8:1", ("b", 8, 1)), ("/dev/null", ("c", 1, 3))],
)  # fmt: skip
def test_every_device_spelling(text: str, expected: tuple[str, int, int]) -> None:
    (device,) = parse_devices(text, RW, inspection=inspection_of(()), live=True)
    assert (device.type, device.major, device.minor, device.access) == (*expected, RW)


@pytest.mark.parametrize(
    "text", ["nvidiactl", "c 195", "x 1:3", "c 1:99999999999", "/dev/no-such-node-here", ""]
)
def test_bad_device_names_the_field(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_devices(text, RW, inspection=inspection_of(()), live=False)
    assert err.value.field == "device" and err.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "why"),
    [("195:1048576", "minor 1048576 out of range 0..1048575"), ("4096:1", "major 4096 out of range 0..4095"),
     ("b 8:1048576", "minor 1048576 out of range"), ("/dev/char/4096:0", "major 4096 out of range")],
)  # fmt: skip
def test_numbers_no_dev_t_holds_are_refused_by_name(text: str, why: str) -> None:
    """They read before as a device some DeviceAllow entry 'covered' (grant) or that needed no
    change (revoke, exit 0): every DEVICE reader now refuses them, naming the number and range."""
    for live in (True, False):
        with pytest.raises(InputError) as err:
            parse_devices(text, RW, inspection=inspection_of(()), live=live)
        assert err.value.field == "device" and why in err.value.why, err.value


CDI_SPEC = {
    "cdiVersion": "0.6.0",
    "kind": "fx.example.com/gpu",
    "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [
            {"path": "/dev/fx-gpu0", "type": "c", "major": 195, "minor": 0}]}},
        {"name": "all", "containerEdits": {"deviceNodes": [
            {"path": "/dev/fx-gpu0", "type": "c", "major": 195, "minor": 0},
            {"path": "/dev/fx-ctl", "type": "c", "major": 195, "minor": 255}]}},
    ],
}  # fmt: skip


def test_a_cdi_name_is_every_device_node_it_injects(tmp_path: Path) -> None:
    (tmp_path / "fx.json").write_text(json.dumps(CDI_SPEC))
    dirs = (str(tmp_path),)
    for live in (True, False):
        found = parse_devices("fx.example.com/gpu=all", ACC_R, inspection=inspection_of(()), live=live,
                              cdi_dirs=dirs)  # fmt: skip
        assert found == [DeviceAccess("c", 195, 0, ACC_R), DeviceAccess("c", 195, 255, ACC_R)]
    with pytest.raises(NotFound) as err:
        parse_devices("fx.example.com/gpu=9", RW, inspection=inspection_of(()), live=True, cdi_dirs=dirs)
    assert err.value.field == "device" and "no such CDI device" in err.value.why


def test_access_letters() -> None:
    assert [parse_access_bits(t) for t in ("m", "r", "w", "rw", "wr", "rwm")] == [1, 2, 4, 6, 6, 7]
    for bad in ("", "x", "rr", "rwx", "a"):
        with pytest.raises(InputError) as err:
            parse_access_bits(bad)
        assert err.value.field == "access"


def test_explain_and_grant_read_access_alike() -> None:
    """One reader, one wording: explain refused ``rwm`` with another message than grant's for the
    same typo; now a bad letter, a repeat or an empty access read the same, and explain (one
    request) says why a combination of mknod and open is not one question."""
    from cgdev.core.model import parse_request_access

    for bad in ("", "x", "rr", "rwx"):
        with pytest.raises(InputError) as grant_err:
            parse_access_bits(bad)
        with pytest.raises(InputError) as explain_err:
            parse_request_access(bad)
        assert grant_err.value.render() == explain_err.value.render()
    assert [parse_request_access(t) for t in ("m", "r", "w", "rw", "wr")] == [1, 2, 4, 6, 6]
    with pytest.raises(InputError) as err:
        parse_request_access("rwm")
    assert "is not one request" in err.value.why and "ask 'm' and 'rw' one at a time" in err.value.why


def test_grant_and_revoke_touch_the_right_masks() -> None:
    w = DeviceAccess("c", 195, 255, ACC_W)
    assert w.masks(Change.GRANT) == [ACC_W]  # grant w: w alone (rw also needs r)
    assert w.masks(Change.REVOKE) == [ACC_W, RW]  # revoke w: everything that writes


# -- the plan is exact -------------------------------------------------------------------------------

SHAPE_NAMES = ["runc", "crun", "crun-1.8", "systemd"]


def shaped(rules: list[Rule], shape: str, hooked: bool) -> tuple:
    program = shapes.shape_program(rules, shape)
    assume(program)  # an allow-all systemd list attaches nothing
    return (*allow_prefix(195, 255), *program) if hooked else program


devices = st.builds(
    DeviceAccess,
    type=st.sampled_from(("b", "c")),
    major=st.sampled_from((1, 5, 136, 195, 0xFFFF_FFFF)),
    minor=st.sampled_from((0, 3, 254, 255)),
    access=st.integers(1, 7),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layers=st.lists(
        st.tuples(rule_lists("systemd", max_size=6), st.sampled_from(SHAPE_NAMES), st.booleans()),
        min_size=1,
        max_size=3,
    ),
    device=devices,
    change=st.sampled_from(list(Change)),
    cgdev_shape=st.booleans(),
)
def test_every_replacement_is_exactly_the_old_policy_plus_or_minus_the_request(
    layers: list[tuple[list[Rule], str, bool]], device: DeviceAccess, change: Change, cgdev_shape: bool
) -> None:
    programs = []
    for i, (rules, shape, hooked) in enumerate(layers):
        try:
            programs.append((record(i + 1, shaped(OCI_DEFAULTS + rules, shape, hooked)),))
        except CgdevError:
            assume(False)  # a rule list that runtime refuses
    inspection = inspection_of(*programs)
    result = plan(inspection, change, (device,), shape="cgdev" if cgdev_shape else "auto")
    box = device.box(change)
    replaced = {a.old_id: a for a in result.actions if isinstance(a, ReplaceProgram)}
    for (prog,) in programs:
        before = lift(decode(prog.xlated))
        assert before.policy is not None
        wanted = changed_policy(before.policy, box, change)
        action = replaced.get(prog.id)
        if action is None:
            assert wanted == before.policy  # left alone only when it already had the verdict
            continue
        after = lift(decode(action.insns))
        assert after.policy == wanted == action.after
        if cgdev_shape:
            assert action.shape == "cgdev"
        elif action.shape != "cgdev":
            assert action.shape == before.generator == after.generator  # the generator's own shape


kernel_devices = st.builds(
    DeviceAccess,
    type=st.sampled_from(("b", "c")),
    major=st.sampled_from((1, 5, 136, 195)),  # mknod-able majors: the kernel can be asked
    minor=st.sampled_from((0, 3, 254, 255)),
    access=st.integers(1, 7),
)


@requires_root_bpf
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    layer=st.tuples(rule_lists("systemd", max_size=6), st.sampled_from(SHAPE_NAMES), st.booleans()),
    device=kernel_devices,
    change=st.sampled_from(list(Change)),
)
def test_the_kernel_sees_exactly_the_request_change_on_every_generated_chain(
    probe: object, layer: tuple[list[Rule], str, bool], device: DeviceAccess, change: Change
) -> None:
    """The same claim as above, asked of the kernel: each shape (hook prefix or not) attached
    before and after the plan's replacement, probed around every box of both policies: the verdicts
    differ exactly on the changed requests, and those have the wanted verdict."""
    from kernel_requests import requests_around

    rules, shape, hooked = layer
    try:
        old = shaped(OCI_DEFAULTS + rules, shape, hooked)
    except CgdevError:
        assume(False)
    prog = record(1, old)
    result = plan(inspection_of((prog,)), change, (device,))
    replaced = [a for a in result.actions if isinstance(a, ReplaceProgram)]
    new = replaced[0].insns if replaced else prog.xlated
    before_policy = lift(decode(prog.xlated)).policy
    assert before_policy is not None
    touched = set(device.requests(change))
    asked = sorted(
        set(requests_around(before_policy))
        | set(requests_around(changed_policy(before_policy, device.box(change), change)))
        | {r for r in touched if r.access == ACC_M},
        key=str,
    )
    before = probe(prog.xlated, asked)  # type: ignore[operator]
    after = probe(new, asked)  # type: ignore[operator]
    for request, was, now in zip(asked, before, after, strict=True):
        if request in touched:
            assert now is (change is Change.GRANT), request
        else:
            assert now == was, request


def test_a_crun_program_stays_crun_shaped() -> None:
    program = shapes.shape_program(OCI_DEFAULTS, "crun")
    inspection = inspection_of((record(7, program),))
    (action,) = plan(inspection, Change.GRANT, (DeviceAccess("c", 195, 255, RW),)).actions
    assert isinstance(action, ReplaceProgram) and action.shape == "crun" and action.mode == "replace"
    assert lift(decode(action.insns)).generator == "crun"


def test_an_opaque_program_on_the_path_is_refused() -> None:
    inspection = inspection_of((ProgramRecord(9, "x", "t", 2, OPAQUE_ALLOW_ALL),), ())
    with pytest.raises(InputError) as err:
        plan(inspection, Change.GRANT, (DeviceAccess("c", 195, 255, RW),))
    assert "opaque" in str(err.value) and err.value.exit_code == 2


def test_nothing_to_do_when_every_layer_already_agrees() -> None:
    program = shapes.shape_program([*OCI_DEFAULTS, Rule(True, "c", 195, 255, RW)], "crun")
    inspection = inspection_of((record(3, program),))
    assert plan(inspection, Change.GRANT, (DeviceAccess("c", 195, 255, RW),)).actions == ()
    assert len(plan(inspection, Change.REVOKE, (DeviceAccess("c", 195, 255, ACC_R),)).actions) == 1


# -- the transaction on real cgroups ---------------------------------------------------------------


def _probe_all(path: str, requests: list[Request]) -> list[bool]:
    from cgdev.adapters.kernel_probe import kernel_verdicts as probe

    return probe(path, requests)


@requires_root_bpf
@pytest.mark.parametrize("extra_program", [False, True], ids=["alone (BPF_F_REPLACE)", "beside another"])
@pytest.mark.parametrize("change", list(Change))
def test_apply_changes_the_kernel_by_exactly_the_request(
    scratch_cgroup: object, extra_program: bool, change: Change
) -> None:
    from cgdev.adapters import bpf, cgroupfs
    from cgdev.ops.collect import collect
    from cgdev.ops.repair.apply import Status, apply_plan
    from kernel_requests import sample_requests

    rules = OCI_DEFAULTS if change is Change.GRANT else [*OCI_DEFAULTS, Rule(True, "c", 195, 255, RW)]
    scratch_cgroup.attach(encode(shapes.shape_program(rules, "crun")))  # type: ignore[attr-defined]
    if extra_program:
        scratch_cgroup.attach(encode(shapes.shape_program([Rule(True)], "crun")))  # type: ignore[attr-defined]
    path = scratch_cgroup.path  # type: ignore[attr-defined]
    rel = cgroupfs.relative(path, cgroupfs.cgroup2_mount())
    target = Target(rel, "cgroup", rel)

    def look() -> Inspection:
        return collect(target, with_devices=False)

    device = DeviceAccess("c", 195, 255, RW)
    requests = [r for r in sample_requests() if (r.type, r.major, r.minor) != ("c", 195, 255)]
    box = device.requests(change)
    before = _probe_all(path, requests)
    ids_before = scratch_cgroup.program_ids()  # type: ignore[attr-defined]
    inspection = look()
    result = plan(inspection, change, (device,))
    outcome = apply_plan(result, inspection, look, record=False, cache=LiftCache())
    assert outcome.status is Status.DONE, outcome.message
    assert _probe_all(path, requests) == before  # nothing else changed
    assert _probe_all(path, box) == [change is Change.GRANT] * len(box)
    ids_after = scratch_cgroup.program_ids()  # type: ignore[attr-defined]
    assert len(ids_after) == len(ids_before) and ids_after != ids_before
    with bpf.open_cgroup(path) as fd:
        assert len(bpf.prog_query(fd).ids) == len(ids_before)  # the old one is gone, never two left


@requires_root_bpf
def test_a_failed_verification_rolls_everything_back(scratch_cgroup: object) -> None:
    from cgdev.adapters import cgroupfs
    from cgdev.ops.collect import collect
    from cgdev.ops.repair.apply import Status, apply_plan

    scratch_cgroup.attach(encode(shapes.shape_program(OCI_DEFAULTS, "crun")))  # type: ignore[attr-defined]
    path = scratch_cgroup.path  # type: ignore[attr-defined]
    rel = cgroupfs.relative(path, cgroupfs.cgroup2_mount())
    target = Target(rel, "cgroup", rel)
    inspection = collect(target, with_devices=False)
    ids = scratch_cgroup.program_ids()  # type: ignore[attr-defined]
    result = plan(inspection, Change.GRANT, (DeviceAccess("c", 195, 255, RW),))
    # verification sees a world where the grant changed more than asked (195:254 too): roll back
    wider = plan(inspection, Change.GRANT, (DeviceAccess("c", 195, 254, RW), DeviceAccess("c", 195, 255, RW)))
    (wide_action,) = wider.actions
    sneaky = type(result)(result.change, result.target, result.devices, (wide_action,))

    def look() -> Inspection:
        return collect(target, with_devices=False)

    outcome = apply_plan(sneaky, inspection, look, record=False)
    assert outcome.status is Status.ROLLED_BACK and outcome.exit_code == 1
    assert "more than the request" in outcome.message
    assert scratch_cgroup.program_ids() == ids  # type: ignore[attr-defined]  # the very same program
    assert _probe_all(path, [Request("c", 195, 254, RW), Request("c", 1, 3, RW)]) == [False, True]


# -- entitlements ----------------------------------------------------------------------------------


def _entry(cgroup: str, granted: str = "rw") -> entitlements.Entitlement:
    return entitlements.Entitlement(
        cgroup=cgroup, container_id="c1", target="c1", type="c", major=195, minor=255, granted=granted,
        revoked="", change="grant", status="done", when=entitlements.now(),
    )  # fmt: skip


def test_entitlements_are_written_atomically_and_drop_dead_cgroups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path))

    def add(entries: dict) -> None:
        for cg in ("/alive", "/gone"):
            entries[(cg, "c", 195, 255)] = _entry(cg)

    entitlements.update(add)
    assert sorted(os.listdir(tmp_path)) == [".entitlements.lock", "entitlements.json"]  # no temp file left
    assert [e.cgroup for e in entitlements.read(lambda cg: cg == "/alive")] == ["/alive"]
    entitlements.update(lambda entries: None, lambda cg: cg == "/alive")
    assert [e["cgroup"] for e in json.loads((tmp_path / "entitlements.json").read_text())["entries"]] == [
        "/alive"
    ]


def test_a_damaged_state_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path))
    (tmp_path / "entitlements.json").write_text("{not json")
    with pytest.raises(InputError) as err:
        entitlements.read()
    assert err.value.field == "state"


# -- the CLI offline ---------------------------------------------------------------------------------


def _cgdev(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_dry_run_on_a_snapshot_prints_the_plan_offline() -> None:
    from cgdev.ops import snapshot

    program = shapes.shape_program(OCI_DEFAULTS, "crun")
    inspection = inspection_of((record(5, program, "crun_prog"),))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snap.json")
        snapshot.write(inspection, path)
        done = _cgdev("grant", "--snapshot", path, "c 195:255", "--dry-run", "--json")
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert [a["kind"] for a in document["actions"]] == ["replace-program"]
        assert document["actions"][0]["shape"] == "crun"
        human = _cgdev("revoke", "--snapshot", path, "/dev/char/1:3", "--access", "w", "--dry-run")
        assert human.returncode == 0 and "replace program #5 crun_prog" in human.stdout
        bad = _cgdev("grant", "--snapshot", path, "c 195:255")
        assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "--dry-run" in bad.stderr


def test_grants_lists_the_state(tmp_path: Path) -> None:
    env = {"CGDEV_STATE_DIR": str(tmp_path)}
    empty = _cgdev("grants", "--json", env=env)
    assert empty.returncode == 0 and json.loads(empty.stdout)["entitlements"] == []
    assert _cgdev("grants", env=env).stdout.strip() == "no entitlements"
    assert _cgdev("grants", "fx-no-such", env=env).stdout.strip() == "no entitlements for fx-no-such"


def test_requests_cover_only_safe_masks() -> None:
    assert {r.access for r in DeviceAccess("c", 1, 3, 7).requests(Change.GRANT)} == set(REQUEST_MASKS)
    with pytest.raises(NotFound):
        parse_devices("/dev/definitely-not-here", RW, inspection=inspection_of(()), live=False)


# -- crun >= 1.23's BPFProgram mode ----------------------------------------------------------------

PIN = "/sys/fs/bpf/crun/crun-x_scope"


def _pinned_scope(attached: tuple[ProgramRecord, ...], pinned: ProgramRecord) -> Inspection:
    """A scope whose unit hands systemd crun's pinned program (DevicePolicy=auto, no DeviceAllow)."""
    from cgdev.ops.layers import UnitRecord

    unit = UnitRecord("crun-x.scope", "/s/crun-x.scope", True, "auto", (), (("device", PIN),))
    layers = (Layer("/", ()), Layer("/s/crun-x.scope", attached, unit))
    target = Target("x", "cgroup", "/s/crun-x.scope")
    return Inspection(target, layers, pins={PIN: pinned}, systemd="ok", systemd_version="262.1-1")


def test_grant_re_pins_the_attached_pinned_program_and_adds_no_device_allow() -> None:
    crun = record(11, shapes.shape_program(OCI_DEFAULTS, "crun"))
    (action,) = plan(_pinned_scope((crun,), crun), Change.GRANT, (DeviceAccess("c", 195, 255, RW),)).actions
    assert isinstance(action, ReplaceProgram)
    assert (action.mode, action.pins, action.shape) == (SwapMode.REPLACE, (PIN,), "crun")


def test_grant_re_pins_a_pinned_program_a_hook_swapped_out() -> None:
    """The hook's program on the scope allows the device, crun's pinned one (not attached now)
    denies it: the next reload attaches the pin beside the hook's, so the pin must be rewritten
    (before: "nothing to change", and the reload denied the device)."""
    crun = shapes.shape_program(OCI_DEFAULTS, "crun")
    hooked = record(12, (*allow_prefix(195, 255), *crun), "lab_hooksim")
    pinned = record(11, crun)
    inspection = _pinned_scope((hooked,), pinned)
    (action,) = plan(inspection, Change.GRANT, (DeviceAccess("c", 195, 255, RW),)).actions
    assert isinstance(action, ReplaceProgram)
    assert (action.mode, action.old_id, action.pins) == (SwapMode.PIN_ONLY, 11, (PIN,))
    assert lift(decode(action.insns)).policy.allows(Request("c", 195, 255, RW))
    assert "re-pin" in action.describe() and "next reload" in action.describe()
    # granted in the pin already: nothing to do
    done = record(13, shapes.shape_program([*OCI_DEFAULTS, Rule(True, "c", 195, 255, RW)], "crun"))
    assert (
        plan(_pinned_scope((hooked,), done), Change.GRANT, (DeviceAccess("c", 195, 255, RW),)).actions == ()
    )


def test_explain_names_the_pinned_program_crun_s_and_attached_by_systemd() -> None:
    from cgdev.ops.explain import explain

    crun = shapes.shape_program(OCI_DEFAULTS, "crun")
    pinned = record(11, crun)
    result = explain(_pinned_scope((pinned,), pinned), Request("c", 195, 255, RW))
    (answer,) = result.layers[-1].programs
    assert (answer.owner, answer.attached_by, answer.pin) == ("crun", "systemd", PIN)
    codes = [f.code for f in result.findings]
    assert codes == ["pinned-program"]  # one filter, crun's: no double filter
    (finding,) = result.findings
    assert "crun update` refuses" in finding.message and PIN in finding.message
    assert "re-pins" in finding.fix[0].action and "set-property" not in finding.fix[0].action
    # after a hook swapped it out, the reload findings name the pin and give the same fix
    hooked = record(12, (*allow_prefix(195, 255), *crun), "lab_hooksim")
    after_hook = explain(_pinned_scope((hooked,), pinned), Request("c", 195, 255, RW))
    assert after_hook.allowed is True and after_hook.after_allowed is False
    readd = [p for p in after_hook.after_layers[-1].programs if p.source == "pin"]
    assert [(p.id, p.owner, p.attached_by, p.pin) for p in readd] == [(11, "crun", "systemd", PIN)]
    drops = next(f for f in after_hook.findings if f.code == "reload-drops-grant")
    assert f"pinned at {PIN}" in drops.message and "DeviceAllow by hand" in drops.fix[0].action
    assert "pinned-program" not in {f.code for f in after_hook.findings}  # nothing denies now


def test_each_cgroup_namespace_prunes_only_its_own_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer in another cgroup namespace (the lab's hook, a node container's) names cgroups its
    own way: from here they look gone, and were deleted (review defect); they must be kept, while
    this view's gone entries are still dropped.  The other view is a real child in a new cgroup
    namespace."""
    import ctypes

    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path))
    entitlements.update(lambda entries: entries.update({("/mine-gone", "c", 195, 255): _entry("/mine-gone")}))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the other view
        code = 1
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(0x02000000) == 0:  # CLONE_NEWCGROUP
                theirs = msgspec.structs.replace(_entry("/theirs"), cgroup_ns=entitlements.own_cgroup_ns())
                entitlements.update(lambda entries: entries.update({theirs.key: theirs}), lambda cg: True)
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    everything = entitlements.read(every_view=True)
    assert {e.cgroup for e in everything} == {"/mine-gone", "/theirs"}  # the child kept our entry
    (theirs,) = [e for e in everything if e.cgroup == "/theirs"]
    assert not theirs.in_this_view and theirs.cgroup_ns != entitlements.own_cgroup_ns()
    entitlements.update(lambda entries: None, lambda cg: False)  # every path of ours is gone
    assert [e.cgroup for e in entitlements.read(every_view=True)] == ["/theirs"]
    assert entitlements.read() == []  # this view reads only its own
