"""Run a preset's timeline against the real stack and compare what a container observes.

Timeline: start the container -> hook-sim (the NVIDIA legacy hook's rewrite of the leaf's
programs) -> ``systemctl daemon-reload`` -> ``systemctl set-property --runtime SCOPE CPUWeight=50``.
After each step a process inside the container opens /dev/null and /dev/nvidiactl, and the device
programs on every cgroup level are recorded, so a mismatch can be explained, not only reported.

A scenario's container is ``scn-<preset>``, never the ``lab-<preset>`` that ``cgdev lab run`` and
the demo start: a scenario replaces and deletes only its own containers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from cgdev.lab import bundle, containers, hooksim, runtime
from cgdev.lab.instance import Lab, system_version
from cgdev.lab.presets import STEPS, Preset, expectation, spec_device_kept
from cgdev.lab.program_path import insn_count
from cgdev.lab.runtime import Container, Runtime
from cgdev.lab.table import format_table
from cgdev.ops.inspect import HostView, systemd_layers
from cgdev.ops.layers import Layer

# The ids of scenario containers; `cgdev lab run --name` refuses them.
SCENARIO_PREFIX: Final = "scn-"


def scenario_id(preset: Preset) -> str:
    return f"{SCENARIO_PREFIX}{preset.name}"


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    verdicts: dict[str, str]  # node -> ok | EPERM | ENXIO | ...
    expected_nvidiactl: str
    layers: list[Layer]

    @property
    def matches(self) -> bool:
        return self.verdicts.get("null") == "ok" and self.verdicts.get("nvidiactl") == self.expected_nvidiactl


@dataclass(slots=True)
class ScenarioResult:
    preset: Preset
    runtime_version: str | None = None
    container_cgroup: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0
    hook_error: str | None = None  # the hook failed, as the preset expects (``hook_fails``)

    @property
    def passed(self) -> bool:
        return self.skipped is None and not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset.name,
            "runtime": self.preset.runtime,
            "runtime_version": self.runtime_version,
            "driver": self.preset.driver,
            "container_cgroup": self.container_cgroup,
            "passed": self.passed,
            "skipped": self.skipped,
            "mismatches": self.mismatches,
            "hook_error": self.hook_error,
            "seconds": round(self.seconds, 3),
            "steps": [
                {
                    "step": s.step,
                    "observed": s.verdicts,
                    "expected": {"null": "ok", "nvidiactl": s.expected_nvidiactl},
                    "layers": [
                        {"cgroup": layer.cgroup,
                         "programs": [{"id": p.id, "name": p.name, "insns": insn_count(p)}
                                      for p in layer.programs]}
                        for layer in s.layers
                    ],
                }
                for s in self.steps
            ],
        }  # fmt: skip


def skip_reason(preset: Preset, runtimes: dict[str, Runtime]) -> str | None:
    """Expectations are measurements for given runtime versions; others are skipped, not guessed."""
    rt = runtimes.get(preset.runtime)
    if rt is None:
        return f"runtime {preset.runtime} is not available on this machine"
    low, high = preset.versions
    if not low <= rt.version_tuple < high:
        return f"expectation written for {preset.runtime} {_v(low)} to before {_v(high)}, found {rt.version}"
    return None


def _v(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def preset_config(preset: Preset) -> dict[str, Any]:
    config = bundle.base_config(bundle.ensure_rootfs())
    if preset.annotations:
        config["annotations"] = dict(preset.annotations)
    for major, minor in preset.static_devices:
        bundle.static_allow(config, major, minor)
    return config


def start_preset(lab: Lab, preset: Preset, rt: Runtime, container_id: str | None = None) -> Container:
    """Start the preset's container, as ``container_id`` (default: the scenario's own id)."""
    return containers.start_container(
        lab, container_id or scenario_id(preset), rt, preset.driver, preset_config(preset), preset=preset.name
    ).container


def apply_step(lab: Lab, step: str, container: Container) -> bool:
    """Do one step of the timeline; False when it does not apply to this container."""
    if step == "hook":
        hooksim.hook_cgroup(str(lab.host_cgroup(container.cgroup)), *bundle.NVIDIACTL)
    elif step == "daemon-reload":
        lab.exec(["systemctl", "daemon-reload"], timeout=20)
    elif step == "set-property":
        if container.scope is None:
            return False
        lab.exec(["systemctl", "set-property", "--runtime", container.scope, "CPUWeight=50"], timeout=20)
    return True


def _apply_checked(lab: Lab, step: str, container: Container, result: ScenarioResult) -> bool:
    """``apply_step``, where a hook that fails is what the preset says (``hook_fails``) or a mismatch."""
    expect_failure = step == "hook" and result.preset.hook_fails
    try:
        applied = apply_step(lab, step, container)
    except hooksim.HookRefused as exc:
        if not expect_failure:
            raise
        result.hook_error = str(exc)
        return True
    if expect_failure:
        result.mismatches.append("hook: the hook succeeded; expected it to fail (no program to prepend to)")
    return applied


def run_scenario(lab: Lab, preset: Preset, runtimes: dict[str, Runtime]) -> ScenarioResult:
    result = ScenarioResult(preset)
    started = time.monotonic()
    result.skipped = skip_reason(preset, runtimes)
    if result.skipped:
        return result
    rt = runtimes[preset.runtime]
    result.runtime_version = rt.version
    version = system_version(lab, check=False)
    kept = spec_device_kept(preset, rt.version, version)
    if kept is None:
        result.skipped = (
            f"whether runc {rt.version} keeps the spec's device under systemd {version} is unknown"
        )
        return result
    timeline = expectation(preset, version, kept)
    container = start_preset(lab, preset, rt)
    result.container_cgroup = container.cgroup
    host = HostView.for_ns_pid(lab.pid1)
    try:
        for step, expected in zip(STEPS, timeline, strict=True):
            if step != "start" and not _apply_checked(lab, step, container, result):
                continue
            verdicts = runtime.open_in_container(lab, rt, preset.driver, container.id, bundle.PROBE_NODES)
            observed = StepResult(step, verdicts, expected or "", systemd_layers(host, container.cgroup))
            result.steps.append(observed)
            if not observed.matches:
                result.mismatches.append(
                    f"{step}: null={verdicts.get('null')} nvidiactl={verdicts.get('nvidiactl')}, "
                    f"expected null=ok nvidiactl={expected}"
                )
        filtered = sum(1 for layer in result.steps[0].layers if layer.programs)
        if filtered != preset.filtered_levels:
            result.mismatches.append(
                f"start: device programs on {filtered} cgroup level(s), expected {preset.filtered_levels}"
            )
    finally:
        containers.delete_container(lab, container.id)
        result.seconds = time.monotonic() - started
    return result


def _cell(result: ScenarioResult, step: str) -> str:
    for observed in result.steps:
        if observed.step == step:
            verdict = observed.verdicts.get("nvidiactl", "?")
            if step == "hook" and result.hook_error:
                verdict += " (hook failed)"
            if observed.verdicts.get("null") != "ok":
                verdict += f" (null {observed.verdicts.get('null')})"
            return verdict if observed.matches else f"{verdict} (want {observed.expected_nvidiactl})"
    return "n/a"


def render(results: list[ScenarioResult]) -> str:
    """One row per case: what /dev/nvidiactl gave at each step (ENXIO = allowed, EPERM = denied)."""
    header = ["case", "runtime", "driver", *STEPS, "result"]
    rows = []
    for r in results:
        verdict = "skipped: " + r.skipped if r.skipped else ("ok" if r.passed else "MISMATCH")
        runtime_label = f"{r.preset.runtime} {r.runtime_version or ''}".strip()
        rows.append([r.preset.name, runtime_label, r.preset.driver, *(_cell(r, s) for s in STEPS), verdict])
    lines = [
        "/dev/nvidiactl opened from inside the container after each step "
        "(ENXIO = allowed by every cgroup filter, EPERM = denied); /dev/null must stay ok.",
        format_table(header, rows),
    ]
    for r in results:
        lines += [f"{r.preset.name}: {m}" for m in r.mismatches]
    return "\n".join(lines)
