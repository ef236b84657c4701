"""``cgdev lab demo``: the GPU-disappears-from-the-container problem, shown on the real stack.

For a reader seeing it for the first time: which programs guard the container's devices (one
per cgroup level, all must agree), what the NVIDIA legacy hook changes (only the container's own
level), why /dev/nvidiactl stays denied and by whom, and that ``systemctl daemon-reload`` undoes
any repair made behind systemd's back.  Every verdict printed is measured, none is assumed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.lab import bundle, control, hooksim, presets, runtime, scenario
from cgdev.lab.layers import Layer, Program, layers, lift_program, program_allows
from cgdev.lab.runtime import Container, Runtime
from cgdev.lab.stack import Lab

Out = Callable[[str], None]
NVIDIACTL_RW = Request("c", *bundle.NVIDIACTL, ACC_R | ACC_W)
OWNERS = {
    "sd_devices": "systemd (from the scope's DevicePolicy/DeviceAllow)",
    hooksim.PROGRAM_NAME: "the hook",
}


def _owner(program: Program) -> str:
    return OWNERS.get(program.name, "the runtime (crun and runc leave their programs unnamed)")


def _para(out: Out, text: str) -> None:
    out(textwrap.fill(" ".join(text.split()), width=100))
    out("")


def _show_layers(out: Out, lab: Lab, container: Container, seen: set[int]) -> list[tuple[Layer, Program]]:
    """Print every level and return the programs that deny c 195:255 rw on their own.

    A program's rules are shown the first time it appears (``seen`` holds the ids shown).
    """
    deniers = []
    for layer in layers(lab, container.cgroup):
        mark = "  <- the container's own cgroup" if layer.cgroup == container.cgroup else ""
        out(f"  {layer.cgroup}{mark}")
        if not layer.programs:
            out("      no device program")
        for program in layer.programs:
            allowed = program_allows(program, NVIDIACTL_RW)
            if not allowed:
                deniers.append((layer, program))
            out(f"      {program.label}, attached by {_owner(program)}")
            lifted = lift_program(program) if program.id not in seen else None
            seen.add(program.id)
            if lifted is not None:
                lead = f"        lifted ({lifted.generator}'s shape): "
                text = f"opaque: {lifted.opaque}" if lifted.opaque else "; ".join(lifted.rules)
                out(textwrap.fill(text, 100, initial_indent=lead, subsequent_indent=" " * 16))
            out(f"        c 195:255 rw on its own: {'allowed' if allowed else 'DENIED'}")
    return deniers


def _show_unit(out: Out, lab: Lab, container: Container) -> None:
    """What systemd was told about the scope: the source of its program, and what it re-applies."""
    if container.scope is None:
        return
    shown = lab.exec(["systemctl", "show", container.scope, "-p", "DevicePolicy", "-p", "DeviceAllow"])
    props = [line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line]
    policy = next((v for k, v in props if k == "DevicePolicy"), "?")
    allowed = [v for k, v in props if k == "DeviceAllow"]
    mentions = any("195" in v for v in allowed)
    out(f"  systemd's unit {container.scope}: DevicePolicy={policy}, {len(allowed)} DeviceAllow entries, "
        f"{'one' if mentions else 'none'} for 195:255")  # fmt: skip


def _probe(out: Out, lab: Lab, rt: Runtime, container: Container) -> str:
    verdicts = runtime.probe(lab, rt, container.driver, container.id, bundle.PROBE_NODES)
    meaning = {"ok": "opens", "ENXIO": "allowed (ENXIO: no driver behind it)", "EPERM": "DENIED (EPERM)"}
    out("  inside the container: " + ", ".join(f"/dev/{n} {meaning.get(v, v)}" for n, v in verdicts.items()))
    out("")
    return verdicts["nvidiactl"]


def _who_denies(deniers: list[tuple[Layer, Program]]) -> str:
    return ", ".join(f"{p.name or '(unnamed)'} #{p.id} on {layer.cgroup}" for layer, p in deniers) or "nobody"


def run_demo(out: Out = print, progress: Out = print) -> int:
    report = control.up(progress)
    lab, runtimes = report.lab, report.runtimes
    preset = presets.get("crun-sd")
    skip = scenario.skip_reason(preset, runtimes)
    if skip:
        out(f"cannot show the double filter here: {skip}")
        return 3
    rt = runtimes[preset.runtime]
    out(f"The lab: systemd {report.systemd_version} as PID 1 of private namespaces (host pid {lab.pid1}),")
    out(
        f"a D-Bus system bus, crun {rt.version} with the systemd cgroup driver, as Podman and CRI-O use it.\n"
    )
    _para(
        out,
        """On cgroup v2 a device is guarded by eBPF programs attached to cgroups.  A process may open
        a device only if EVERY program on every cgroup from the root down to its own says yes.""",
    )

    out("1. Start a container that has the node /dev/nvidiactl (c 195:255) but no rule allowing it,")
    out("   like a GPU container before the NVIDIA hook runs.\n")
    container = scenario.start_preset(lab, preset, rt)
    try:
        seen: set[int] = set()
        _show_layers(out, lab, container, seen)
        _show_unit(out, lab, container)
        _probe(out, lab, rt, container)

        out("2. hook-sim: do what libnvidia-container does on cgroup v2 -- rewrite the programs on the")
        out("   container's OWN cgroup, prepending 'allow c 195:255 rw'.\n")
        hooksim.hook_cgroup(str(lab.host_cgroup(container.cgroup)), *bundle.NVIDIACTL)
        deniers = _show_layers(out, lab, container, seen)
        verdict = _probe(out, lab, rt, container)
        if verdict == "EPERM":
            _para(
                out,
                f"""Still denied, by {_who_denies(deniers)}: crun >= 1.18 also hands the device list to
                systemd, which attaches its own program to the scope, one level above the cgroup the
                hook rewrote.  Two filters, and the hook fixed only one.""",
            )

        out("3. systemctl daemon-reload (any reload, or any set-property on the scope).\n")
        lab.exec(["systemctl", "daemon-reload"], timeout=20)
        deniers = _show_layers(out, lab, container, seen)
        _probe(out, lab, rt, container)
        _para(
            out,
            f"""systemd regenerated its program from the unit's properties (a new id) and attached it
            again; it never removes programs it did not attach.  Denied by: {_who_denies(deniers)}.
            A repair is only real when it fixes every layer that denies and is durable: systemd
            must learn the device too (DeviceAllow=, or the device in the OCI spec as CDI does).""",
        )
        out("See all eight cases, including the ones where the hook works until the next reload:")
        out("  cgdev lab scenario all")
    finally:
        control.delete_container(lab, container.id)
    return 0
