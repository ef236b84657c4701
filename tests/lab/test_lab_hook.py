"""Issue 9's hook acceptance in the lab: the real crun 1.21 and runc 1.1.5 run ``cgdev-hook`` from
the container's config.json (createRuntime and poststart) under the systemd driver.

Every verdict is the kernel's (a process forked into the container's cgroup, and the container's
own open of /dev/nvidiactl), systemd is the lab's real systemd 252.  The CDI spec for the fake
/dev/nvidiactl (c 195:255) lives in a temporary directory the hook is told about (``--cdi-dir``);
the policy file, the entitlements and the hook's log too.  Containers are named ``hook-*``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cgdev
from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.adapters.systemd_client import SystemdClient
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.lab import containers, presets, scenario
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

RW = ACC_R | ACC_W
NVIDIACTL = Request("c", 195, 255, RW)
NVIDIACTL_R = Request("c", 195, 255, ACC_R)
NEIGHBOURS = [Request("c", 195, 254, RW), Request("c", 195, 0, RW)]
# What the hostile annotations ask for, where the kernel can be asked by an open (no driver behind
# the major; read/write: runc's defaults allow mknod of anything).  /dev/mem and /dev/kmsg (c 1:*)
# have a driver: for them every layer's program is compared with a twin container's instead.
HOSTILE = [
    Request("b", 8, 0, RW),
    Request("b", 8, 0, ACC_R),
    Request("c", 195, 7, RW),
    NVIDIACTL,
    NVIDIACTL_R,
]
CTL_SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [{"name": "ctl", "containerEdits": {"deviceNodes": [
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "permissions": "rw"}]}}],
}  # fmt: skip
PRESETS = {"crun": "crun-sd", "runc": "runc-sd"}


class HookSetup:
    """The temporary files one test's hook uses, and the hook entry for a config.json."""

    def __init__(self, tmp: Path, policy: str | None = None) -> None:
        self.cdi = tmp / "cdi"
        self.cdi.mkdir()
        (self.cdi / "example.json").write_text(json.dumps(CTL_SPEC))
        self.policy = tmp / "policy.yaml"
        if policy is not None:
            self.policy.write_text(policy)
        self.log = tmp / "hook.log"
        self.state = tmp / "state"

    def hook(self, stage: str) -> dict[str, Any]:
        src = os.path.dirname(os.path.dirname(cgdev.__file__))
        code = "from cgdev.hook.entry import entry; entry()"
        args = [sys.executable, "-c", code, "--cdi-dir", str(self.cdi), "--policy", str(self.policy),
                "--log", str(self.log), "--stage", stage]  # fmt: skip
        env = [f"PYTHONPATH={src}", f"CGDEV_STATE_DIR={self.state}", "PYTHONDONTWRITEBYTECODE=1"]
        return {"path": sys.executable, "args": args, "env": env, "timeout": 60}

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def entitlements(self) -> list[dict[str, Any]]:
        path = self.state / "entitlements.json"
        return json.loads(path.read_text())["entries"] if path.exists() else []


@contextlib.contextmanager
def hooked(
    lab: LabHandle, runtime: str, name: str, setup: HookSetup, annotations: dict[str, str]
) -> Iterator[Any]:
    preset = presets.get(PRESETS[runtime])
    reason = scenario.skip_reason(preset, lab.runtimes)
    if reason:
        pytest.skip(reason)
    config = scenario.preset_config(preset)
    config["annotations"] = annotations
    config["hooks"] = {stage: [setup.hook(stage)] for stage in ("createRuntime", "poststart")}
    rt = containers.runtime_named(preset.runtime, lab.runtimes)
    container = containers.start_container(
        lab.running, name, rt, preset.driver, config, preset=preset.name
    ).container
    try:
        yield container
    finally:
        lab.delete(container.id)


def kernel(lab: LabHandle, container: Any, requests: list[Request]) -> list[bool]:
    return kernel_verdicts(str(lab.cgroup_root) + container.cgroup, requests)


def device_allow(lab: LabHandle, container: Any) -> list[tuple[str, str]]:
    with SystemdClient(lab.bus_address) as client:
        return list(client.unit_properties(container.scope).device_allow)


def layer_tags(lab: LabHandle, container: Any) -> list[list[str]]:
    """What each layer of the container's path runs, by content (the programs' tags)."""
    out = []
    for path in cgroupfs.ancestors(str(lab.cgroup_root) + container.cgroup):
        with bpf.open_cgroup(path) as fd:
            ids = bpf.prog_query(fd).ids
        tags = []
        for prog_id in ids:
            with bpf.prog_fd_by_id(prog_id) as prog:
                tags.append(bpf.prog_info(prog).tag)
        out.append(tags)
    return out


@contextlib.contextmanager
def twin(lab: LabHandle, runtime: str, name: str) -> Iterator[Any]:
    """The same container started without hook or annotation: what its spec alone gives."""
    preset = presets.get(PRESETS[runtime])
    rt = containers.runtime_named(preset.runtime, lab.runtimes)
    config = scenario.preset_config(preset)
    container = containers.start_container(
        lab.running, name, rt, preset.driver, config, preset=preset.name
    ).container
    try:
        yield container
    finally:
        lab.delete(container.id)


def same_layers(lab: LabHandle, one: Any, other: Any, tries: int = 10) -> bool:
    """The deepest two layers of both containers run the same programs, by content.

    The lab is shared: another session's daemon-reload re-applies systemd's programs while this
    test reads them (a program id may vanish mid-read, a layer may hold a new program for a
    moment), so the comparison is repeated until both sides have settled.
    """
    from cgdev.errors import NotFound

    for _ in range(tries):
        try:
            if layer_tags(lab, one)[-2:] == layer_tags(lab, other)[-2:]:
                return True
        except NotFound:
            pass
        time.sleep(0.5)
    return False


def opens(lab: LabHandle, container: Any) -> bool:
    """The container's own open of /dev/nvidiactl (ENXIO: the cgroup let it through)."""
    return lab.probe(container)["nvidiactl"] in ("ok", "ENXIO")


STEPS = ("start", "hook", "daemon-reload", "set-property", "daemon-reload")


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_cdi_annotated_container_keeps_its_device_through_every_step(
    lab: LabHandle, tmp_path: Path, runtime: str
) -> None:
    setup = HookSetup(tmp_path)
    with hooked(lab, runtime, f"hook-cdi-{runtime}", setup, {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}) as ctr:
        for step in STEPS:
            if step != "start":
                assert scenario.apply_step(lab.running, step, ctr)
            assert opens(lab, ctr), f"{runtime}: after {step}"
            assert kernel(lab, ctr, [NVIDIACTL, *NEIGHBOURS]) == [True, False, False], step
            assert any("195:255" in path and access == "rw" for path, access in device_allow(lab, ctr)), step
        lines = setup.lines()
        assert any("createRuntime: grant c 195:255 rw: done" in line for line in lines), lines
        assert any("poststart: grant c 195:255 rw: nothing-to-do" in line for line in lines), lines
        (entry,) = setup.entitlements()
        assert (entry["type"], entry["major"], entry["minor"], entry["granted"]) == ("c", 195, 255, "rw")
        assert "example.com/gpu=ctl" in entry["why"]


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_container_without_annotation_stays_denied(lab: LabHandle, tmp_path: Path, runtime: str) -> None:
    setup = HookSetup(tmp_path)
    with hooked(lab, runtime, f"hook-none-{runtime}", setup, {"org.example/other": "x"}) as ctr:
        for step in ("start", "daemon-reload", "set-property"):
            if step != "start":
                assert scenario.apply_step(lab.running, step, ctr)
            assert not opens(lab, ctr), f"{runtime}: after {step}"
            assert kernel(lab, ctr, [NVIDIACTL]) == [False]
        assert setup.lines() == []  # the fast path: not even a log line
        assert setup.entitlements() == []
        assert not any("195:" in path for path, _ in device_allow(lab, ctr))


# The policy enables the annotation for c 195:255 read-only; every claim below asks for more.
POLICY_R = "annotation:\n  enabled: true\n  devices:\n    - device: c 195:255\n      access: r\n"
CLAIMS = ["b 8:0 rwm", "c 1:1 rw", "c 1:11 rw", "c 195:*", "c 195:255 rw", "/dev/kmsg"]


@pytest.mark.parametrize("runtime", ["crun", "runc"])
@pytest.mark.parametrize("policy", [POLICY_R, None], ids=["policy-r", "no-policy"])
def test_hostile_claims_get_nothing_on_any_layer(
    lab: LabHandle, tmp_path: Path, runtime: str, policy: str | None
) -> None:
    setup = HookSetup(tmp_path, policy)
    annotations = {"cdi.k8s.io/x": "example.com/gpu=nope", "cgdev.io/devices": ", ".join(CLAIMS)}
    with (
        twin(lab, runtime, f"hook-twin-{runtime}") as plain,
        hooked(lab, runtime, f"hook-bad-{runtime}", setup, annotations) as ctr,
    ):
        for step in ("start", "daemon-reload", "set-property"):
            if step != "start":
                assert scenario.apply_step(lab.running, step, ctr)
                assert scenario.apply_step(lab.running, step, plain)
            assert kernel(lab, ctr, HOSTILE) == [False] * len(HOSTILE), step
            assert not opens(lab, ctr)
            # every layer runs exactly what the spec alone gives (the deepest two: scope and leaf)
            assert same_layers(lab, ctr, plain), step
        allowed = [path for path, _ in device_allow(lab, ctr)]
        assert not any(
            p.startswith(("/dev/char/195", "/dev/block/8", "/dev/char/1:1", "/dev/mem")) for p in allowed
        )
        assert setup.entitlements() == []
        lines = setup.lines()
        # createRuntime and poststart each log one line per claim, and nothing else
        assert len(lines) == 2 * (1 + len(CLAIMS)), lines
        assert not any(" grant " in line for line in lines)
        for source, claim in [*(("annotation", c) for c in CLAIMS), ("cdi", "example.com/gpu=nope")]:
            assert sum(f"refused {source} {claim!r}: " in line for line in lines) == 2, (claim, lines)


def deny_nvidiactl() -> bytes:
    """A later hook's rewrite of the leaf that loses the grant: deny c 195:255, allow the rest."""
    from cgdev.core import isa
    from cgdev.core.model import CHAR

    return isa.encode(
        isa.assemble(
            [
                isa.ldx("h", 2, 1, 0),
                isa.ldx("w", 4, 1, 4),
                isa.ldx("w", 5, 1, 8),
                isa.jmp("jne", 2, "allow", imm=CHAR),
                isa.jmp("jne", 4, "allow", imm=195),
                isa.jmp("jne", 5, "allow", imm=255),
                isa.alu32("mov", 0, imm=0),
                isa.exit_(),
                isa.Label("allow"),
                isa.alu32("mov", 0, imm=1),
                isa.exit_(),
            ]
        )
    )


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_poststart_repairs_a_leaf_a_later_hook_rewrote(lab: LabHandle, tmp_path: Path, runtime: str) -> None:
    setup = HookSetup(tmp_path)
    with hooked(lab, runtime, f"hook-fix-{runtime}", setup, {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}) as ctr:
        assert kernel(lab, ctr, [NVIDIACTL]) == [True]
        with bpf.open_cgroup(str(lab.cgroup_root) + ctr.cgroup) as leaf:
            prog = bpf.prog_load(deny_nvidiactl(), name="later_hook")
            bpf.prog_attach(leaf, prog, multi=True)
            prog.close()
        assert kernel(lab, ctr, [NVIDIACTL]) == [False]
        annotations = {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}
        state = {"ociVersion": "1.0.2", "id": ctr.id, "status": "running", "pid": ctr.pid,
                 "bundle": ctr.bundle, "annotations": annotations}  # fmt: skip
        hook = setup.hook("poststart")
        argv = ["env", *hook["env"], *hook["args"]]  # as the runtime runs it, inside the lab
        done = lab.running.exec(argv, input=json.dumps(state), check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        assert kernel(lab, ctr, [NVIDIACTL, *NEIGHBOURS]) == [True, False, False]
        assert any("poststart: grant c 195:255 rw: done" in line for line in setup.lines()), setup.lines()
