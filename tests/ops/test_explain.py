"""explain on real kernel hierarchies: verdicts equal the kernel's, the denying layer is named, the
after-reload prediction equals what the kernel does with systemd's real post-reload program."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest

from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.core.model import ACC_M, Request
from cgdev.errors import InputError, NotFound
from cgdev.ops.collect import collect
from cgdev.ops.explain import explain, parse_access_request, resolve_device
from cgdev.ops.layers import Inspection, Layer, UnitRecord
from cgdev.ops.targets import Target, cgroup_pids, resolve
from evidence import EVIDENCE
from fixtures_kernel import in_child, requires_root_bpf
from scratch_node import NULL_RW, NVIDIACTL_RW, ScratchNode, node, v1_devices_group  # noqa: F401


def _recorded_device_allow() -> tuple[tuple[str, str], ...]:
    """The DeviceAllow systemd 252 showed for runc 1.1.5's default spec, as recorded in the
    reference evidence (not typed in here): what a real unit would hand explain."""
    show = EVIDENCE / "per-case" / "runc-sd" / "scope-show.txt"
    if not show.exists():
        pytest.skip(f"reference evidence {show} is missing")
    lines = show.read_text().splitlines()
    return tuple(
        tuple(line.split("=", 1)[1].rsplit(" ", 1))  # type: ignore[misc]
        for line in lines
        if line.startswith("DeviceAllow=")
    )


PROC_DEVICES = "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n195 nvidia\n\nBlock devices:\n  8 sd\n"


def _unit(name: str, cgroup: str, **changes: object) -> UnitRecord:
    unit = UnitRecord(name, cgroup, True, "strict", _recorded_device_allow(), (), False)
    return msgspec.structs.replace(unit, **changes)


def _with_unit(inspection: Inspection, index: int, unit: UnitRecord) -> Inspection:
    """The collected layers as systemd would describe them: one unit with a device policy, the
    other cgroups without one (there is no systemd on this host to ask)."""
    layers = list(inspection.layers)
    layers[index] = Layer(layers[index].cgroup, layers[index].programs, unit)
    return msgspec.structs.replace(inspection, layers=tuple(layers), proc_devices=PROC_DEVICES, systemd="ok")


@requires_root_bpf
def test_crun_double_filter_matches_kernel_and_names_scope(node: ScratchNode) -> None:  # noqa: F811
    leaf = node.container("crio", "ee" * 32, "sd", "crun_hook")
    inspection = collect(resolve(leaf))
    kernel = kernel_verdicts(leaf, [NULL_RW, NVIDIACTL_RW])
    null, nvidia = explain(inspection, NULL_RW), explain(inspection, NVIDIACTL_RW)
    assert [null.allowed, nvidia.allowed] == kernel == [True, False]
    assert [(c, p.name) for c, p in nvidia.denied_by] == [(node.rel(leaf).rsplit("/", 1)[0], "sd_devices")]
    leaf_answer = nvidia.layers[-1].programs[0]
    assert leaf_answer.verdict.allowed is True and leaf_answer.verdict.rule == "allow c 195:255 rw"
    assert leaf_answer.verdict.insn_range is not None
    assert "double-filter" in {f.code for f in nvidia.findings}
    assert "double-filter" not in {f.code for f in null.findings}
    doc = nvidia.to_json()
    assert doc["request"] == {"type": "c", "major": 195, "minor": 255, "access": "rw"}
    assert doc["allowed"] is False and doc["layers"][-1]["programs"][0]["generator"].startswith("libnvidia")


@requires_root_bpf
def test_runc_reload_prediction_equals_kernel_after_reload(node: ScratchNode) -> None:  # noqa: F811
    """runc replaced systemd's filter, a hook granted 195:255; a reload re-attaches sd_devices."""
    scope = node.container("runc", "ff" * 32, None, "runc_hook", sub=False)
    live = collect(resolve(scope))
    unit = _unit(os.path.basename(scope), node.rel(scope))
    inspection = _with_unit(live, len(live.layers) - 1, unit)
    before = explain(inspection, NVIDIACTL_RW)
    assert before.allowed is True and kernel_verdicts(scope, [NVIDIACTL_RW]) == [True]
    assert before.after_allowed is False
    assert {"reload-drops-grant", "reload-adds-filter"} <= {f.code for f in before.findings}
    added = [p for p in before.after_layers[-1].programs if p.source == "systemd"]
    assert len(added) == 1 and added[0].verdict.allowed is False
    # what systemd 252 really attached after the reload, beside the hook's program
    node.attach(scope, "sd_runc")
    requests = [
        NULL_RW,
        NVIDIACTL_RW,
        Request("c", 136, 3, ACC_M),
        Request("b", 8, 0, ACC_M),
        Request("c", 10, 200, ACC_M),
    ]
    predicted = [explain(inspection, r).after_allowed for r in requests]
    assert predicted == kernel_verdicts(scope, requests)
    drop = next(f for f in before.findings if f.code == "reload-drops-grant")
    assert "next daemon-reload or set-property" in drop.message
    # the fix names the real unit and device, ready to paste
    assert f"set-property --runtime {unit.unit} DeviceAllow='/dev/char/195:255 rw'" in drop.fix[0].action


@requires_root_bpf
def test_on_systemd_257_findings_and_notes_say_set_property_not_reload(node: ScratchNode) -> None:  # noqa: F811
    """systemd 257's daemon-reload rebuilds no device program: the same prediction, other words."""
    scope = node.container("runc", "fe" * 32, None, "runc_hook", sub=False)
    live = collect(resolve(scope))
    unit = _unit(os.path.basename(scope), node.rel(scope))
    inspection = msgspec.structs.replace(
        _with_unit(live, len(live.layers) - 1, unit), systemd_version="257.13-1~deb13u1"
    )
    answer = explain(inspection, NVIDIACTL_RW)
    assert answer.allowed is True and answer.after_allowed is False
    messages = [f.message for f in answer.findings if f.code.startswith("reload-")]
    assert len(messages) == 2
    assert all("set-property or restart of the unit (systemd 257.13-1~deb13u1" in m for m in messages)
    assert all("daemon-reload or set-property" not in m for m in messages)
    assert any("does not rebuild device programs on daemon-reload" in n for n in answer.after_notes)


def test_reload_keeps_foreign_and_replaces_systemd_program() -> None:
    from cgdev.ops.layers import ProgramRecord
    from scratch_node import program_bytes

    sd = ProgramRecord(1, "sd_devices", "a", 2, program_bytes("sd"))
    crun = ProgramRecord(2, "", "b", 2, program_bytes("crun"))
    unit = _unit("crun-x.scope", "/s/crun-x.scope", device_allow=(("/dev/char/195:255", "rw"),))
    layers = (
        Layer("/", ()),
        Layer("/s/crun-x.scope", (sd,), unit),
        Layer("/s/crun-x.scope/container", (crun,)),
    )
    inspection = Inspection(Target("x", "cgroup", "/s/crun-x.scope/container"), layers, PROC_DEVICES)
    result = explain(inspection, NVIDIACTL_RW)
    assert result.allowed is False  # sd_devices and crun's program both deny now
    after_scope = result.after_layers[1].programs
    assert [(p.source, p.name) for p in after_scope] == [("systemd", "sd_devices")]
    assert after_scope[0].verdict.allowed is True  # the unit's DeviceAllow has it
    assert [p.source for p in result.after_layers[2].programs] == ["kept"]
    assert result.after_allowed is False  # crun's leaf program still denies


def test_need_daemon_reload_and_pin_findings() -> None:
    unit = _unit(
        "x.scope", "/x.scope", need_daemon_reload=True, bpf_program=(("device", "/sys/fs/bpf/gone"),)
    )
    inspection = Inspection(Target("x", "cgroup", "/x.scope"), (Layer("/", ()), Layer("/x.scope", (), unit)))
    result = explain(inspection, NULL_RW)
    assert "need-daemon-reload" in {f.code for f in result.findings}
    assert any("pin /sys/fs/bpf/gone is missing" in n for n in result.after_notes)
    assert all(f.fix for f in result.findings)


def test_allow_all_finding_for_unfiltered_container() -> None:
    inspection = Inspection(Target("x", "cgroup", "/x"), (Layer("/", ()), Layer("/x", ())))
    result = explain(inspection, NVIDIACTL_RW)
    assert result.allowed is True and "allow-all" in {f.code for f in result.findings}


def test_device_and_access_input_errors() -> None:
    inspection = Inspection(Target("x", "cgroup", "/x"), (), devices={"/dev/nvidiactl": ("c", 195, 255)})
    assert resolve_device("/dev/nvidiactl", inspection, 6, live=False)[0] == NVIDIACTL_RW
    assert resolve_device("c 195:255", inspection, 6, live=False)[0] == NVIDIACTL_RW
    # systemd's spelling, as the fixes print it, even where no /dev/char link exists
    assert resolve_device("/dev/char/195:255", inspection, 6, live=False)[0] == NVIDIACTL_RW
    assert resolve_device("/dev/block/8:0", inspection, 2, live=False)[0] == Request("b", 8, 0, 2)
    with pytest.raises(NotFound, match="device '/dev/nope': no such device node"):
        resolve_device("/dev/nope", inspection, 6, live=False)
    with pytest.raises(InputError, match="device 'x 1:2': type 'x' is not b or c"):
        resolve_device("x 1:2", inspection, 6, live=False)
    # systemd's /dev/char reading of a bare pair, the same reader as every command (issue 7)
    assert resolve_device("195:255", inspection, 6, live=False)[0] == NVIDIACTL_RW
    with pytest.raises(InputError, match="device 'c １:3'"):  # issue 12 item 9: ASCII digits only
        resolve_device("c １:3", inspection, 6, live=False)
    with pytest.raises(InputError, match="32 bits"):
        resolve_device("c 4294967296:0", inspection, 6, live=False)
    with pytest.raises(InputError, match="not a character or block device"):
        resolve_device("/etc/passwd", inspection, 6, live=True)
    with pytest.raises(InputError, match="access 'rwm'"):
        parse_access_request("rwm")


def _cgdev(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *argv], capture_output=True, text=True, timeout=60)


@requires_root_bpf
def test_cli_exit_statuses_and_json(node: ScratchNode) -> None:  # noqa: F811
    leaf = node.container("crio", "12" * 32, "sd", "crun_hook")
    denied = _cgdev("explain", "12121212", "--device", "c 195:255", "--json", "--no-systemd")
    assert denied.returncode == 1, denied.stderr
    import json

    doc = json.loads(denied.stdout)
    assert doc["allowed"] is False and doc["cgroup"] == node.rel(leaf)
    assert _cgdev("explain", "12121212", "--device", "/dev/null", "--no-systemd").returncode == 0
    for argv, status, text in [
        (("explain", "99999999", "--device", "/dev/null", "--no-systemd"), 2, "no such process"),
        (("explain", "zz-nothing", "--device", "/dev/null", "--no-systemd"), 2, "no process, cgroup"),
        (("explain", "12121212", "--device", "/dev/nope", "--no-systemd"), 2, "--device"),
        (("explain", "12121212", "--device", "c 1:3", "--access", "x", "--no-systemd"), 2, "--access"),
        (("explain", "12121212", "--device", "c 1:3", "--bus", "/nonexistent/bus"), 3, "no D-Bus"),
    ]:
        result = _cgdev(*argv)
        assert result.returncode == status, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and text in result.stderr


@requires_root_bpf
def test_v1_layer_needs_one_exception_to_cover_the_whole_request(node: ScratchNode) -> None:  # noqa: F811
    """devices.list 'c 1:* r' + 'c 1:3 w': the kernel denies an O_RDWR open of /dev/null (no single
    exception covers rw) and allows O_RDONLY; explain must say the same."""
    leaf = node.container("libpod", "cd" * 32, None, None, sub=False)
    with v1_devices_group(["c 1:* r", "c 1:3 w"]) as v1_group:
        (pid,) = cgroup_pids(leaf)
        with open(os.path.join(v1_group, "cgroup.procs"), "w") as fh:
            fh.write(str(pid))
        inspection = collect(resolve(leaf))
        kernel = _v1_opens(v1_group, [os.O_RDWR, os.O_RDONLY, os.O_WRONLY])
        explained = [explain(inspection, Request("c", 1, 3, access)).allowed for access in (6, 2, 4)]
    assert kernel == [False, True, True]
    assert explained == kernel


def _v1_opens(v1_group: str, flags: list[int]) -> list[bool]:
    """Open /dev/null (1:3, no side effects) with each flag from a child in the v1 group."""

    def opens() -> str:
        with open(os.path.join(v1_group, "cgroup.procs"), "w") as fh:
            fh.write("0")
        verdicts = ""
        for flag in flags:
            try:
                os.close(os.open("/dev/null", flag))
                verdicts += "1"
            except PermissionError:
                verdicts += "0"
        return verdicts

    return [c == "1" for c in in_child(opens)]


@requires_root_bpf
def test_show_lists_what_a_reload_takes_away_as_request_objects(node: ScratchNode) -> None:  # noqa: F811
    from cgdev.ops.show import show

    scope = node.container("runc", "fd" * 32, None, "runc_hook", sub=False)
    live = collect(resolve(scope))
    inspection = _with_unit(live, len(live.layers) - 1, _unit(os.path.basename(scope), node.rel(scope)))
    after = show(inspection).to_json()["after_reload"]
    assert after["changed"] is True and after["gained"] == []
    assert {"type": "c", "major": 195, "minor": 255, "access": "rw"} in after["lost"]
    unknown = show(msgspec.structs.replace(inspection, layers=live.layers, systemd="off")).to_json()
    assert unknown["after_reload"]["lost"] is None and unknown["after_reload"]["effective"] is None


def _compiled(rules: str) -> bytes:
    from cgdev.core.compile import compile_policy
    from cgdev.core.isa import encode
    from cgdev.core.rules import parse_rule_text
    from cgdev.core.semantics import policy_of

    return encode(compile_policy(policy_of(parse_rule_text(rules))))


@requires_root_bpf
def test_double_filter_examples_are_the_containers_nodes(node: ScratchNode) -> None:  # noqa: F811
    """Issue 12 item 16: the examples read ``b 0:0 m, c 0:0 m, c 1:0 m``; they are the request,
    then the container's own nodes the two layers disagree on (opened before mknod-only)."""
    from cgdev.adapters import bpf
    from cgdev.ops.show import show

    scope = node.cgroup("system.slice/crio-" + "d6" * 32 + ".scope")
    leaf = node.cgroup("system.slice/crio-" + "d6" * 32 + ".scope/container")
    for path, name, rules in (
        (scope, "sd_devices", "c 1:3 rwm\nc 1:5 rwm\n"),
        (leaf, "crun", "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 10:200 rw\nc 195:255 rw\n"),
    ):
        fd = bpf.prog_load(_compiled(rules), name=name)
        node.fds.append(fd)
        with bpf.open_cgroup(path) as cg:
            bpf.prog_attach(cg, fd)
    node.spawn(leaf)
    inspection = collect(resolve(leaf))
    nodes = {dev: path for path, dev in sorted(inspection.devices.items(), reverse=True)}
    if ("c", 10, 200) not in nodes:
        pytest.skip("this host has no /dev/net/tun node (c 10:200) to be an example")
    (finding,) = [f for f in show(inspection).findings if f.code == "double-filter"]
    examples = finding.message.split("(e.g. ", 1)[1].split("): ", 1)[0].split(", ")
    assert examples[0] == f"c 10:200 rw ({nodes[('c', 10, 200)]})", finding.message
    for example in examples:  # each a node of the container the scope denies and the leaf allows
        text, path = example.rstrip(")").split(" (")
        request = Request.parse(text)
        assert inspection.devices[path] == (request.type, request.major, request.minor)
        if request.access == ACC_M:  # the kernel is asked only what is safe to ask: mknod
            assert kernel_verdicts(scope, [request]) == [False]
        answer = explain(inspection, request)
        assert [c for c, _ in answer.denied_by] == [node.rel(scope)], example
        assert answer.layers[-1].allowed is True, example
    explained = explain(inspection, NVIDIACTL_RW)
    assert explained.allowed is False
    (finding,) = [f for f in explained.findings if f.code == "double-filter"]
    assert finding.message.startswith("c 195:255 rw is allowed by the runtime's program")
    assert f"also disagree on c 10:200 rw ({nodes[('c', 10, 200)]})" in finding.message
