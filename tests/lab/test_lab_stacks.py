"""The lab on another Debian suite's stack (``cgdev lab up --stack sid``): real systemd, crun, runc of sid.

These run, for each of ``STACKS``, when the suite's root is cached under /var/lib/cgdev/lab/roots/ or when
``CGDEV_LAB_STACKS`` names the suite (``.ci/run`` sets it, and the first ``up`` then builds the
root with debootstrap).  The stack's lab runs beside the host's and is brought down at the end if
this session started it.  Every fact asserted is read from the running stack: its versions come
from the binaries, and the expectations from those versions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.core.semantics.systemd import reload_reapplies_devices

pytestmark = [pytest.mark.lab, pytest.mark.stack]

# The suites whose labs these tests run on (each only where its root is cached or asked for).
STACKS = ("sid", "trixie")
NULL = Request("c", 1, 3, ACC_R | ACC_W)
NVIDIACTL = Request("c", 195, 255, ACC_R | ACC_W)


def _stack_skip_reason(stack: str) -> str | None:
    from cgdev.lab.paths import Stack
    from cgdev.lab.roots import read_stamp
    from fixtures_lab import lab_impossible_reason

    reason = lab_impossible_reason()
    if reason:
        return reason
    root = Stack(stack).root_dir
    assert root is not None
    wanted = stack in os.environ.get("CGDEV_LAB_STACKS", "").replace(",", " ").split()
    if read_stamp(root) is None and not wanted:
        return f"no cached {stack} root: set CGDEV_LAB_STACKS={stack} (or run `cgdev lab up --stack {stack}`)"
    return None


class StackLab:
    """The stack's lab; every call runs with that stack selected (``using_stack``)."""

    def __init__(self, stack: str) -> None:
        from cgdev.lab import control
        from cgdev.lab.paths import using_stack

        self.stack = stack
        self._using = using_stack
        with using_stack(stack):
            self.report = control.up(timeout=120)
        self.runtimes = self.report.runtimes

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._using(self.stack):
            return fn(*args, **kwargs)

    @property
    def lab(self) -> Any:
        from cgdev.lab.instance import require_lab

        return self.call(require_lab)

    def start(self, runtime: str, container_id: str) -> Any:
        from cgdev.lab import containers, presets, scenario

        # The base config, no grant; inside the stack: its rootfs path is the stack's var dir.
        config = self.call(scenario.preset_config, presets.get("runc-sd"))
        rt = self.runtimes[runtime]
        return self.call(containers.start_container, self.lab, container_id, rt, "systemd", config).container

    def delete(self, container_id: str) -> None:
        from cgdev.lab import containers

        self.call(containers.delete_container, self.lab, container_id)

    def probe(self, container: Any) -> dict[str, str]:
        from cgdev.lab import bundle, runtime

        rt = self.runtimes[container.runtime]
        return runtime.open_in_container(self.lab, rt, container.driver, container.id, bundle.PROBE_NODES)

    def run_preset(self, preset: Any) -> Any:
        from cgdev.lab import scenario

        return self.call(scenario.start_preset, self.lab, preset, self.runtimes[preset.runtime])

    def layers(self, cgroup: str) -> list[Any]:
        """Every cgroup from this lab's root to ``cgroup``, as explain reads it (``--ns-pid``)."""
        from cgdev.ops.inspect import HostView, systemd_layers

        return systemd_layers(HostView.for_ns_pid(self.lab.pid1), cgroup)


@pytest.fixture(scope="module", params=STACKS)
def stack_lab(request: pytest.FixtureRequest) -> Iterator[StackLab]:
    stack = request.param
    reason = _stack_skip_reason(stack)
    if reason:
        pytest.skip(reason)
    handle = StackLab(stack)
    yield handle
    if handle.report.started:
        from cgdev.lab import control

        report = handle.call(control.down)
        assert report.leftovers == [], f"cgdev lab down --stack {stack} left: {report.leftovers}"


def test_the_stack_runs_its_own_systemd_and_runtimes_beside_the_host_lab(stack_lab: StackLab) -> None:
    from cgdev.lab import control, instance

    status = stack_lab.call(control.status)
    assert status.running and status.stack == stack_lab.stack and status.root is not None
    packages = status.root["packages"]
    # The bus answers with the root's systemd, and the binaries in the lab report the root's versions.
    assert stack_lab.report.systemd_version == packages["systemd"]
    for name in ("crun", "runc"):
        assert packages[name].startswith(stack_lab.runtimes[name].version)
    assert stack_lab.lab.cgroup_root.name == f"cgdev-lab-{stack_lab.stack}"
    host = instance.find_lab()  # outside using_stack: the host stack's lab, if one runs
    assert host is None or host.pid1 != stack_lab.lab.pid1


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_a_container_denies_nvidiactl_and_allows_null_on_the_stack(stack_lab: StackLab, runtime: str) -> None:
    from cgdev.lab.program_path import program_allows

    container = stack_lab.start(runtime, f"stk-{runtime}")
    try:
        assert stack_lab.probe(container) == {"null": "ok", "nvidiactl": "EPERM"}
        programs = [p for layer in stack_lab.layers(container.cgroup) for p in layer.programs]
        assert programs, "a systemd-driver container on cgroup v2 has at least one device program"
        # The kernel, asked program by program, agrees: every program allows null; one denies 195:255.
        assert all(program_allows(p, NULL) for p in programs)
        assert not all(program_allows(p, NVIDIACTL) for p in programs)
    finally:
        stack_lab.delete(container.id)


def test_crun_hands_its_program_to_systemd_as_bpfprogram(stack_lab: StackLab) -> None:
    """crun >= 1.23: BPFProgram=device:<pin>, no DeviceAllow, no program on the container's cgroup."""
    crun = stack_lab.runtimes["crun"]
    if crun.version_tuple < (1, 23):
        pytest.skip(f"crun {crun.version} predates BPFProgram mode (1.23)")
    container = stack_lab.start("crun", "stk-bpfprog")
    try:
        scope = container.scope
        shown = stack_lab.lab.exec(
            ["systemctl", "show", scope, "-p", "BPFProgram", "-p", "DeviceAllow", "-p", "DevicePolicy"]
        ).stdout
        pin = f"/sys/fs/bpf/crun/{scope.replace('.', '_')}"
        assert f"BPFProgram=device:{pin}" in shown.splitlines()
        assert "DeviceAllow=" not in shown and "DevicePolicy=auto" in shown.splitlines()
        layers = stack_lab.layers(container.cgroup)
        assert container.cgroup.endswith("/container") and not layers[-1].programs
        scope_programs = layers[-2].programs
        assert [p.name for p in scope_programs] != ["sd_devices"] and len(scope_programs) == 1
        # The legacy NVIDIA hook has no program on the container's cgroup to prepend to: the one
        # it builds is refused by the kernel, so the hook fails and nothing changes.
        from cgdev.errors import EnvError
        from cgdev.lab import hooksim

        with pytest.raises(EnvError, match="no device program to prepend to"):
            hooksim.hook_cgroup(str(stack_lab.lab.host_cgroup(container.cgroup)), 195, 255)
        assert not stack_lab.layers(container.cgroup)[-1].programs
        assert stack_lab.probe(container) == {"null": "ok", "nvidiactl": "EPERM"}
    finally:
        stack_lab.delete(container.id)


def test_daemon_reload_reattaches_sd_devices_as_the_version_rule_says(stack_lab: StackLab) -> None:
    """runc replaces systemd's program on its scope; a reload that re-applies brings sd_devices back."""
    container = stack_lab.start("runc", "stk-reload")
    try:
        before = [p.name for p in stack_lab.layers(container.cgroup)[-1].programs]
        assert "sd_devices" not in before
        stack_lab.lab.exec(["systemctl", "daemon-reload"], timeout=30)
        after = stack_lab.layers(container.cgroup)[-1].programs
        reapplied = [p for p in after if p.name == "sd_devices"]
        assert bool(reapplied) == reload_reapplies_devices(stack_lab.report.systemd_version)
        if reapplied:  # and it is, byte for byte, cgdev's systemd shape for the scope's properties
            from cgdev.core import isa
            from cgdev.core.shapes import systemd_properties_program

            shown = stack_lab.lab.exec(["systemctl", "show", container.scope, "-p", "DeviceAllow"])
            allow = [
                tuple(line.removeprefix("DeviceAllow=").rsplit(" ", 1)) for line in shown.stdout.splitlines()
            ]
            proc_devices = Path("/proc/devices").read_text()
            expected = systemd_properties_program("strict", allow, proc_devices)  # type: ignore[arg-type]
            assert reapplied[0].xlated == isa.encode(expected)
        stack_lab.lab.exec(["systemctl", "set-property", "--runtime", container.scope, "CPUWeight=50"])
        assert "sd_devices" in [p.name for p in stack_lab.layers(container.cgroup)[-1].programs]
    finally:
        stack_lab.delete(container.id)


@pytest.mark.parametrize(
    ("runtime", "driver"),
    [("crun", "systemd"), ("crun", "cgroupfs"), ("runc", "systemd"), ("runc", "cgroupfs")],
)
def test_the_stacks_runtime_programs_equal_cgdev_shapes_on_random_lists(
    stack_lab: StackLab, runtime: str, driver: str
) -> None:
    """crun 1.28 (its pinned BPFProgram under systemd) and runc 1.3.6 attach cgdev's crun/runc shapes."""
    import random

    from cgdev.core import isa
    from cgdev.core.rules import parse_oci_config
    from cgdev.core.shapes import shape_program
    from cgdev.errors import CgdevError, InputError
    from cgdev.lab import bundle, containers
    from lab_samples import LISTS_PER_RUNTIME, random_devices

    rt = stack_lab.runtimes[runtime]
    rng = random.Random(f"stack-shapes-{runtime}-{driver}")
    started = 0
    for i in range(LISTS_PER_RUNTIME):
        devices = random_devices(rng)
        config = bundle.base_config(stack_lab.call(bundle.ensure_rootfs))
        config["linux"]["resources"]["devices"] = devices
        try:
            expected = shape_program(parse_oci_config(config), runtime)
        except InputError:
            expected = None  # cgdev says this runtime refuses the list
        # crun 1.18-1.22 under systemd turns the list into DeviceAllow and refuses a deny rule after
        # the leading deny-all unless it is redundant ("systemd does not support deny rules for
        # devices"; not modelled by cgdev's semantics yet); crun >= 1.23 hands systemd its own
        # program (BPFProgram) and takes such lists (measured on trixie and sid).
        may_refuse_deny = (
            runtime == "crun"
            and driver == "systemd"
            and (1, 18) <= rt.version_tuple < (1, 23)
            and any(not entry["allow"] for entry in devices[1:])
        )
        name = f"stk-shape-{runtime}-{driver}-{i}"
        try:
            container = stack_lab.call(containers.start_container, stack_lab.lab, name, rt, driver, config)
        except CgdevError as err:
            known = may_refuse_deny and "systemd does not support deny rules" in str(err)
            assert expected is None or known, f"{runtime} {rt.version} refused {devices}: {err}"
            continue
        try:
            assert expected is not None, f"{runtime} accepted {devices}; cgdev said it refuses"
            attached = [
                p.xlated
                for layer in stack_lab.layers(container.container.cgroup)
                for p in layer.programs
                if p.name != "sd_devices"
            ]
            assert attached == ([isa.encode(expected)] if expected else []), devices
            started += 1
        finally:
            stack_lab.delete(name)
    assert started >= LISTS_PER_RUNTIME // 2, started


def test_every_scenario_matches_its_version_derived_timeline_on_the_stack(stack_lab: StackLab) -> None:
    """The presets whose runtime versions the stack has run, and each matches its timeline.

    crun >= 1.23 runs the ``crun-pin-*`` cases (BPFProgram mode, the hook fails); 1.18-1.22 the
    double-filter ones; the reload column follows the running systemd (``expectation``).
    """
    from cgdev.lab import presets, scenario

    results = [
        stack_lab.call(scenario.run_scenario, stack_lab.lab, preset, stack_lab.runtimes)
        for preset in presets.PRESETS.values()
    ]
    ran = [r for r in results if r.skipped is None]
    assert {r.preset.runtime for r in ran} == {"crun", "runc"}
    assert len(ran) >= 6, scenario.render(results)
    assert all(r.passed for r in ran), scenario.render(results)


def test_explain_follows_the_kernel_through_every_timeline_on_the_stack(stack_lab: StackLab) -> None:
    """Issue 11's acceptance on a stack: at every step of every case the stack runs, explain's
    verdicts (final and per program) equal the kernel's, and its after-reload prediction comes true
    (for systemd 257 only set-property's: its daemon-reload re-applies nothing)."""
    from test_explain_lab import LabView, check_against_kernel, explain_all

    from cgdev.adapters import cgroupfs
    from cgdev.lab import hooksim, presets, scenario
    from cgdev.ops.layers import LiftCache

    lab = stack_lab.lab
    systemd_root = "/" + os.path.relpath(str(lab.cgroup_root), cgroupfs.cgroup2_mount())
    view = LabView(lab.pid1, systemd_root, lab.bus_address)
    version = stack_lab.report.systemd_version
    lifts = LiftCache()
    ran = 0
    for preset in presets.PRESETS.values():
        if scenario.skip_reason(preset, stack_lab.runtimes):
            continue
        container = stack_lab.run_preset(preset)
        try:
            target = view.resolve(container.id)
            predicted: dict[str, bool | None] | None = None
            kept = presets.spec_device_kept(preset, stack_lab.runtimes[preset.runtime].version, version)
            assert kept is not None, "the stack's runc and systemd versions decide the /dev/char check"
            timeline = presets.expectation(preset, version, kept)
            for step, expected in zip(presets.STEPS, timeline, strict=True):
                try:
                    if step != "start" and not scenario.apply_step(lab, step, container):
                        continue
                except hooksim.HookRefused:
                    assert preset.hook_fails, (preset.name, step)
                observed = {node: v in ("ok", "ENXIO") for node, v in stack_lab.probe(container).items()}
                assert observed == {"null": True, "nvidiactl": expected == presets.ALLOWED}, (
                    preset.name,
                    step,
                )
                if step == "set-property" or (step == "daemon-reload" and reload_reapplies_devices(version)):
                    assert predicted == observed, (
                        f"{preset.name} {step}: predicted {predicted}, kernel {observed}"
                    )
                answers = explain_all(view.inspect(target), lifts)
                check_against_kernel(answers, observed, f"{preset.name} {step}")
                predicted = {node: answer.after_allowed for node, answer in answers.items()}
            ran += 1
        finally:
            stack_lab.call(scenario.containers.delete_container, lab, container.id)
    assert ran >= 6


def test_runc_passes_a_spec_device_without_a_dev_char_link_as_the_version_rule_says(
    stack_lab: StackLab,
) -> None:
    """195:255 in the spec, no /dev/char/195:255 on the host: kept in DeviceAllow, and so after a reload."""
    from cgdev.core.semantics.runc_dev_char import dev_char_check, runc_passes_device
    from cgdev.lab import presets

    if Path("/dev/char/195:255").exists():
        pytest.skip("this host has a /dev/char/195:255 link: the case needs it missing")
    runc = stack_lab.runtimes["runc"]
    check = dev_char_check(runc.version, stack_lab.report.systemd_version)
    passes = runc_passes_device(check, False, Path("/sys/dev/char/195:255").exists())
    assert passes is not None
    preset = presets.get("crun-sd-allow")  # the spec grants c 195:255 rw
    container = stack_lab.run_preset(replace(preset, runtime="runc"))
    try:
        shown = stack_lab.lab.exec(["systemctl", "show", container.scope, "-p", "DeviceAllow"]).stdout
        assert ("DeviceAllow=/dev/char/195:255 rw" in shown.splitlines()) is passes
        stack_lab.lab.exec(["systemctl", "daemon-reload"], timeout=30)
        stack_lab.lab.exec(["systemctl", "set-property", "--runtime", container.scope, "CPUWeight=50"])
        assert stack_lab.probe(container)["nvidiactl"] == ("ENXIO" if passes else "EPERM")
    finally:
        stack_lab.delete(container.id)


@pytest.mark.parametrize("preset_name", ["crun-pin-sd", "crun-sd-nosub"])
def test_explain_shows_crun_pinned_program_and_grant_repins_it_through_hook_and_reload(
    stack_lab: StackLab, preset_name: str
) -> None:
    """crun >= 1.23 under systemd: explain names the scope's program as crun's, pinned at
    /sys/fs/bpf/crun/<scope>, attached by systemd; a denied device gets the pinned-program finding
    (no double filter, no DeviceAllow by hand); after the hook (where it can run) the reload
    findings name the pin; ``cgdev grant`` re-pins, also a pinned program the hook swapped out,
    and the device stays allowed through daemon-reload and set-property, as explain predicts."""
    import json
    import subprocess
    import sys

    from test_explain_lab import LabView, check_against_kernel, explain_all

    from cgdev.adapters import cgroupfs
    from cgdev.lab import hooksim, presets, scenario
    from cgdev.ops.layers import LiftCache

    crun = stack_lab.runtimes["crun"]
    if crun.version_tuple < (1, 23):
        pytest.skip(f"crun {crun.version} predates BPFProgram mode (1.23)")
    lab = stack_lab.lab
    systemd_root = "/" + os.path.relpath(str(lab.cgroup_root), cgroupfs.cgroup2_mount())
    view = LabView(lab.pid1, systemd_root, lab.bus_address)
    lifts = LiftCache()
    preset = presets.get(preset_name)
    container = stack_lab.run_preset(preset)
    try:
        target = view.resolve(container.id)
        pin = f"/sys/fs/bpf/crun/{container.scope.replace('.', '_')}"
        answers = explain_all(view.inspect(target), lifts)
        check_against_kernel(answers, {"null": True, "nvidiactl": False}, f"{preset_name} start")
        nvidia = answers["nvidiactl"]
        scope = next(la for la in nvidia.layers if la.cgroup.endswith(container.scope))
        assert [(p.generator, p.owner, p.attached_by, p.pin) for p in scope.programs] == [
            ("crun", "crun", "systemd", pin)
        ]
        codes = {f.code for f in nvidia.findings}
        assert "pinned-program" in codes and "double-filter" not in codes
        pinned = next(f for f in nvidia.findings if f.code == "pinned-program")
        assert pin in pinned.message and "update` refuses" in pinned.message
        assert "re-pins" in pinned.fix[0].action and "set-property" not in pinned.fix[0].action
        program_json = nvidia.to_json()["layers"][nvidia.layers.index(scope)]["programs"][0]
        assert (program_json["owner"], program_json["attached_by"], program_json["pin"]) == (
            "crun",
            "systemd",
            pin,
        )
        if not preset.hook_fails:  # the scope is the container's cgroup: the hook replaces crun's program
            scenario.apply_step(lab, "hook", container)
            answers = explain_all(view.inspect(target), lifts)
            check_against_kernel(answers, {"null": True, "nvidiactl": True}, f"{preset_name} hook")
            hooked = answers["nvidiactl"]
            assert hooked.after_allowed is False  # the reload (or set-property) re-attaches the pin
            drops = next(f for f in hooked.findings if f.code == "reload-drops-grant")
            assert f"pinned at {pin}" in drops.message and "re-pins" in drops.fix[0].action
        else:
            with pytest.raises(hooksim.HookRefused):
                scenario.apply_step(lab, "hook", container)
        done = subprocess.run(
            [sys.executable, "-m", "cgdev", "grant", "--ns-pid", str(lab.pid1), container.id,
             "c 195:255", "--access", "rw", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        actions = json.loads(done.stdout)["plan"]["actions"]
        assert actions and all(pin in a["pins"] for a in actions), actions
        answers = explain_all(view.inspect(target), lifts)
        check_against_kernel(answers, {"null": True, "nvidiactl": True}, f"{preset_name} grant")
        assert answers["nvidiactl"].after_allowed is True
        for step in ("daemon-reload", "set-property"):
            scenario.apply_step(lab, step, container)
            observed = {node: v in ("ok", "ENXIO") for node, v in stack_lab.probe(container).items()}
            assert observed == {"null": True, "nvidiactl": True}, (preset_name, step)
            answers = explain_all(view.inspect(target), lifts)
            check_against_kernel(answers, observed, f"{preset_name} {step}")
    finally:
        stack_lab.call(scenario.containers.delete_container, lab, container.id)


def test_the_demo_tells_the_stacks_story_and_its_prediction_holds(stack_lab: StackLab) -> None:
    """``cgdev lab demo --stack S``: the double filter on crun 1.18-1.22 (trixie), crun's pinned
    program and the failing hook on crun >= 1.23 (sid); on both the grant holds through the reload
    that explain predicted, and the printed explain command answers the same from the host."""
    import subprocess
    import sys

    from cgdev.lab import presets, scenario

    pinned = stack_lab.runtimes["crun"].version_tuple >= (1, 23)
    preset = presets.get("crun-pin-sd" if pinned else "crun-sd")
    done = subprocess.run(
        [sys.executable, "-m", "cgdev", "lab", "demo", "--stack", stack_lab.stack],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        text = " ".join(done.stdout.split())
        assert "The prediction explain made before the reload matched" in text
        if pinned:
            assert "attached by systemd, from crun's pin /sys/fs/bpf/crun/" in text
            assert "The hook FAILS" in text and "pinned-program:" in text and "double-filter" not in text
            assert "Allowed, and still allowed after the reload." in text
        else:
            assert "double-filter" in text
        printed = next(line for line in done.stdout.splitlines() if line.startswith("  cgdev explain "))
        command = printed.split()
        asked = subprocess.run(
            [sys.executable, "-m", *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert asked.returncode == 0 and "verdict now: allow" in asked.stdout, asked.stdout + asked.stderr
    finally:
        names = [c.id for c in stack_lab.call(scenario.containers.containers)]
        if preset.container_id in names:
            stack_lab.delete(preset.container_id)
