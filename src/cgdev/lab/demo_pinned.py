"""``cgdev lab demo`` where crun >= 1.23 hands its program to systemd (BPFProgram mode, e.g. sid).

There is no double filter to show there: crun pins its program at ``/sys/fs/bpf/crun/<scope>``
and systemd attaches it to the scope, and the container's own cgroup has no program at all.  So
the story is a different one, told with the same measured steps as the double-filter demo:
libnvidia-container's legacy hook has nothing to prepend to and fails (the kernel refuses its
program), ``cgdev explain`` names the pinned program as crun's, attached by systemd, with the fix
that works in this mode, ``cgdev grant`` re-pins it, and the reload re-attaches the granted
program, as explain predicted.
"""

from __future__ import annotations

import shlex

from cgdev.core.semantics.systemd import reload_reapplies_devices
from cgdev.lab import bundle, containers, hooksim, presets, scenario
from cgdev.lab.control import UpReport
from cgdev.lab.demo import (
    Out,
    _para,
    _print_explanation,
    _probe,
    _report_prediction,
    _show_layers,
    _step,
    explain_command,
    explain_with_prediction,
    lab_flag,
)
from cgdev.lab.paths import current_stack
from cgdev.ops.inspect import HostView
from cgdev.ops.layers import LiftCache


def run_pinned_demo(out: Out, report: UpReport) -> int:
    """The BPFProgram-mode story; exit 1 when a prediction or the grant did not hold."""
    lab, runtimes = report.lab, report.runtimes
    preset = presets.get("crun-pin-sd")
    skip = scenario.skip_reason(preset, runtimes)
    if skip:
        out(f"cannot show crun's BPFProgram mode here: {skip}")
        return 3
    rt = runtimes[preset.runtime]
    out(f"The lab: systemd {report.systemd_version} as PID 1 of private namespaces (host pid {lab.pid1}),")
    out(f"a D-Bus system bus, crun {rt.version} with the systemd cgroup driver, as Podman uses it.\n")
    _para(
        out,
        """On cgroup v2 a device is guarded by eBPF programs attached to cgroups.  crun >= 1.23 does
        not attach its program itself under systemd: it pins it in the bpf filesystem and hands it
        to systemd as the scope's BPFProgram=device:PIN, and systemd attaches it.""",
    )
    _step(out, 1, """Start a container that has the node /dev/nvidiactl (c 195:255) but no rule allowing
          it, like a GPU container before the NVIDIA hook runs.""")  # fmt: skip
    container = scenario.start_preset(lab, preset, rt, preset.container_id)
    keep = False
    try:
        lifts = LiftCache()
        seen: set[int] = set()
        host = HostView.for_ns_pid(lab.pid1)
        _show_layers(out, host, container, lifts, seen)
        _probe(out, lab, rt, container)
        _step(out, 2, """hook-sim: do what libnvidia-container does on cgroup v2 -- rewrite the programs
              on the container's OWN cgroup, prepending 'allow c 195:255 rw'.""")  # fmt: skip
        try:
            hooksim.hook_cgroup(str(lab.host_cgroup(container.cgroup)), *bundle.NVIDIACTL)
            _para(out, "The hook succeeded: this crun did not pin its program (see the layers above).")
        except hooksim.HookRefused as refused:
            _para(out, f"""The hook FAILS: {refused}.  There is one filter, crun's, on the scope, and
                  nothing on the container's cgroup for the hook to extend: with the real hook the
                  container does not start.""")  # fmt: skip
        _probe(out, lab, rt, container)
        _step(out, 3, """Ask cgdev.  `cgdev explain` reads the scope's BPFProgram= property and the pin, and
              names the program crun's, attached by systemd.""")  # fmt: skip
        before, _ = explain_with_prediction(host, container, lifts)
        _print_explanation(out, before)
        from cgdev.ops.repair import change_devices
        from cgdev.ops.repair.plan import Change

        _step(out, 4, f"""cgdev grant {lab_flag(lab)} {container.id} /dev/nvidiactl: crun's program is
              replaced by one that allows exactly what it did plus c 195:255 rw, and the pin is
              rewritten to it, so what systemd re-attaches allows it too.""")  # fmt: skip
        result = change_devices(container.id, host, Change.GRANT, ["/dev/nvidiactl"], "rw", why="lab demo")
        for i, action in enumerate(result.plan.actions, 1):
            out(f"  {i}. {action.describe()}")
        outcome = result.outcome
        if outcome is None or outcome.exit_code != 0:
            out(f"  grant failed: {'no outcome' if outcome is None else outcome.message}")
            return 1
        _show_layers(out, host, container, lifts, seen)
        granted = _probe(out, lab, rt, container) != "EPERM"
        granted_view, predicted = explain_with_prediction(host, container, lifts)
        step = "daemon-reload" if reload_reapplies_devices(report.systemd_version) else "set-property"
        _step(out, 5, f"systemctl {step}: systemd re-attaches what the pin holds now.")
        scenario.apply_step(lab, step, container)
        _show_layers(out, host, container, lifts, seen)
        verdict = _probe(out, lab, rt, container)
        after, _ = explain_with_prediction(host, container, lifts)
        matched = _report_prediction(out, granted_view, predicted, after, verdict, lifts)
        kept = granted and verdict != "EPERM"
        _para(out, "Allowed, and still allowed after the reload." if kept
              else "The grant did NOT hold: this is a cgdev bug, please report it.")  # fmt: skip
        command = explain_command(container, lab)
        out(f"The container {container.id} is left running: ask cgdev yourself (add --json for the schema),")
        out("  " + shlex.join(command))
        out(f"and delete it with `cgdev lab delete --stack {current_stack().name} {container.id}`.\n")
        keep = True
        return 0 if matched and kept else 1
    finally:
        if not keep:
            containers.delete_container(lab, container.id)
