"""``cgdev lab demo``: the GPU-disappears-from-the-container problem, shown on the real stack.

For a reader seeing it for the first time: which programs guard the container's devices (one
per cgroup level, all must agree), what the NVIDIA legacy hook changes (only the container's own
level), why /dev/nvidiactl stays denied and by whom, what ``cgdev explain`` says about it, and
that ``systemctl daemon-reload`` does what explain predicted.  Every verdict printed is measured
or checked against the kernel, none is assumed.

The explain step calls the operation the command line printed at the end calls (``ops.inspect``
on the lab's ``HostView``, then ``ops.explain``) and renders through the same ``present`` view, so
what the reader copies answers the same.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import textwrap
from collections.abc import Callable

from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.core.semantics.systemd import reload_reapplies_devices
from cgdev.lab import bundle, containers, control, hooksim, presets, runtime, scenario
from cgdev.lab.instance import Lab
from cgdev.lab.paths import current_stack
from cgdev.lab.program_path import insn_count, program_allows
from cgdev.lab.runtime import Container, Runtime
from cgdev.ops.explain import Explanation, explain_device
from cgdev.ops.inspect import HostView, inspect, systemd_layers
from cgdev.ops.layers import SYSTEMD_PROGRAM_NAME, Layer, LiftCache, ProgramRecord, analyse_layers, pin_owner
from cgdev.ops.reload import PredictedLayer, predict_reload

Out = Callable[[str], None]
COLUMNS = (80, 100)  # readable: the terminal's width, kept within these bounds
ALLOWED = ("ok", "ENXIO")  # ENXIO: every filter let the open through, no driver answered
NVIDIACTL_RW = Request("c", *bundle.NVIDIACTL, ACC_R | ACC_W)
OWNERS = {
    SYSTEMD_PROGRAM_NAME: "systemd, from the unit's DevicePolicy/DeviceAllow",
    hooksim.PROGRAM_NAME: "the hook",
}


def _owner(program: ProgramRecord, pin: str | None = None) -> str:
    if pin is not None:  # crun >= 1.23: the runtime's program, handed to systemd as BPFProgram=
        return f"systemd, from {pin_owner(pin) or 'the runtime'}'s pin {pin}"
    return OWNERS.get(program.name, "the runtime (crun's and runc's are unnamed)")


def _label(program: ProgramRecord) -> str:
    return f"{program.name or '(unnamed)'} #{program.id}, {insn_count(program)} insns"


@functools.cache
def _width() -> int:
    return max(COLUMNS[0], min(COLUMNS[1], shutil.get_terminal_size((COLUMNS[1], 24)).columns))


def _fill(text: str, initial_indent: str = "", subsequent_indent: str = "") -> str:
    """Wrapped to the demo's width at spaces only: paths, ids and rules stay whole, to be copied."""
    return textwrap.fill(text, _width(), initial_indent=initial_indent, subsequent_indent=subsequent_indent,
                         break_on_hyphens=False, break_long_words=False)  # fmt: skip


def _para(out: Out, text: str) -> None:
    out(_fill(" ".join(text.split())))
    out("")


def _step(out: Out, number: int, text: str) -> None:
    lead = f"{number}. "
    filled = _fill(" ".join(text.split()), initial_indent=lead, subsequent_indent=" " * len(lead))
    out(filled + "\n")


def _show_layers(out: Out, host: HostView, container: Container, lifts: LiftCache, seen: set[int]
                 ) -> list[tuple[Layer, ProgramRecord]]:  # fmt: skip
    """Print every level and return the programs that deny c 195:255 rw on their own.

    A program's rules are shown the first time it appears (``seen`` holds the ids shown).
    """
    deniers = []
    pins = {record.id: pin for pin, record in inspect(container.id, host, with_devices=False).pins.items()}
    for layer in systemd_layers(host, container.cgroup):
        mark = "  <- the container's own cgroup" if layer.cgroup == container.cgroup else ""
        out(f"  {layer.cgroup}{mark}")
        if not layer.programs:
            out("      no device program")
        for program in layer.programs:
            allowed = program_allows(program, NVIDIACTL_RW)
            if not allowed:
                deniers.append((layer, program))
            out(f"      {_label(program)}, attached by {_owner(program, pins.get(program.id))}")
            if program.id not in seen:
                seen.add(program.id)
                view = lifts.view(program)
                lead = f"        lifted ({view.generator}'s shape): "
                rules = [] if view.lifted is None else [str(rule) for rule in view.lifted.rules]
                text = f"opaque: {view.opaque}" if view.opaque else "; ".join(rules)
                out(_fill(text, initial_indent=lead, subsequent_indent=" " * 16))
            out(f"        c 195:255 rw on its own: {'allowed' if allowed else 'DENIED'}")
    return deniers


def _show_unit(out: Out, host: HostView, container: Container) -> None:
    """What systemd was told about the scope: the source of its program, and what it re-applies."""
    if container.scope is None:
        return
    inspection = inspect(container.id, host, with_devices=False)
    unit = next((la.unit for la in inspection.layers if la.unit and la.unit.unit == container.scope), None)
    if unit is None:
        out(f"  unit {container.scope}: systemd did not say ({inspection.systemd})")
        return
    mentions = any("195" in f"{path} {access}" for path, access in unit.device_allow)
    out(f"  unit {container.scope}: DevicePolicy={unit.device_policy}, {len(unit.device_allow)} DeviceAllow "
        f"entries, {'one' if mentions else 'none'} for 195:255")  # fmt: skip


def _probe(out: Out, lab: Lab, rt: Runtime, container: Container) -> str:
    verdicts = runtime.open_in_container(lab, rt, container.driver, container.id, bundle.PROBE_NODES)
    meaning = {"ok": "opens", "ENXIO": "allowed (ENXIO: no driver behind it)", "EPERM": "DENIED (EPERM)"}
    out("  inside the container: " + ", ".join(f"/dev/{n} {meaning.get(v, v)}" for n, v in verdicts.items()))
    out("")
    return verdicts["nvidiactl"]


def _who_denies(deniers: list[tuple[Layer, ProgramRecord]]) -> str:
    return ", ".join(f"{p.name or '(unnamed)'} #{p.id} on {layer.cgroup}" for layer, p in deniers) or "nobody"


# -- cgdev explain, pointed at the lab from the host ---------------------------------------------


def lab_flag(lab: Lab) -> str:
    """How a user on the host names this lab: ``--lab`` for the host stack's, ``--ns-pid=PID`` for
    another stack's (``--lab`` always means the host stack's lab)."""
    return "--lab" if current_stack().is_host else f"--ns-pid={lab.pid1}"


def explain_command(container: Container, lab: Lab) -> list[str]:
    """``cgdev explain`` for the container, as a user on the host types it: ``--lab`` stands for
    the lab's runtime state, bus, systemd files and cgroup root (``HostView.for_ns_pid``)."""
    return ["cgdev", "explain", container.id, lab_flag(lab), "--device", "/dev/nvidiactl", "--access", "rw"]


def _print_explanation(out: Out, result: Explanation) -> None:
    """explain's own human view, the width of the demo, its text handed to ``out``."""
    from cgdev.present.human import explanation_text

    out(explanation_text(result, _width()))
    out("")


def prediction_mismatches(
    predicted: list[PredictedLayer], actual: Explanation, lifts: LiftCache
) -> list[str]:
    """Where the kernel after the reload differs from the prediction made before it ([] = none).

    Layer by layer, the programs attached now must be the predicted ones: the same number, each
    with exactly the predicted policy (compared over every device and access, not on one request).
    """
    views = analyse_layers(actual.inspection, lifts)
    if [p.cgroup for p in predicted] != [v.cgroup for v in views]:
        return ["the cgroup path changed"]
    wrong = []
    for before, now in zip(predicted, views, strict=True):
        expected = [p.policy for p in before.programs]
        attached = [p.policy for p in now.programs]
        unmatched = list(attached)
        for policy in expected:
            if policy is not None and policy in unmatched:
                unmatched.remove(policy)
        if len(expected) != len(attached) or unmatched:
            names = ", ".join(f"{p.record.name or '(unnamed)'} #{p.record.id}" for p in now.programs)
            wrong.append(f"{now.cgroup}: predicted {len(expected)} program(s), found {names or 'none'}")
    return wrong


def explain_with_prediction(
    host: HostView, container: Container, lifts: LiftCache
) -> tuple[Explanation, list[PredictedLayer]]:
    """What ``explain_command`` answers (the same operation), with what it predicts for the next
    reload."""
    inspection = inspect(container.id, host)
    result = explain_device(inspection, "/dev/nvidiactl", NVIDIACTL_RW.access, live=True, cache=lifts)
    views = analyse_layers(result.inspection, lifts)  # lifted once: the cache holds every program
    return result, predict_reload(views, result.inspection, lifts)


def _report_prediction(out: Out, before: Explanation, predicted: list[PredictedLayer], after: Explanation,
                       kernel: str, lifts: LiftCache) -> bool:  # fmt: skip
    """Say whether the prediction made before the reload is what the kernel does now (True: it is).

    A demo that claims the prediction holds must be able to say it did not: it then exits 1.
    """
    kernel_allows = kernel in ALLOWED
    word = {True: "allowed", False: "denied", None: "unknown"}
    mismatches = prediction_mismatches(predicted, after, lifts)
    if before.after_allowed is not kernel_allows:
        mismatches.insert(0, f"predicted {word[before.after_allowed]}, the container got {kernel}")
    if mismatches:
        _para(out, "The prediction made before the reload did NOT match the kernel: " + "; ".join(mismatches))
        return False
    known = _program_ids(before)
    fresh = [
        f"{p.name or '(unnamed)'} #{p.id}" for la in after.layers for p in la.programs if p.id not in known
    ]
    _para(
        out,
        f"""The prediction explain made before the reload matched: /dev/nvidiactl is
        {word[kernel_allows]} ({kernel}) as predicted, and on every cgroup the programs attached now
        allow exactly what was predicted, {" and ".join(fresh) or "every program"} included
        (compared over every device and access, not only this one).""",
    )
    return True


def _repair(out: Out, lab: Lab, rt: Runtime, host: HostView, container: Container, lifts: LiftCache,
            seen: set[int], systemd_version: str) -> bool:  # fmt: skip
    """Steps 5 and 6: ``cgdev grant`` fixes every layer durably; a reload afterwards keeps it."""
    from cgdev.ops.repair import change_devices
    from cgdev.ops.repair.plan import Change

    _step(out, 5, f"""cgdev grant {lab_flag(lab)} {container.id} /dev/nvidiactl: every program on the path
          that denies is replaced by one that allows exactly what it did plus c 195:255 rw (in its own
          generator's shape, never a moment without a filter), and the scope's DeviceAllow learns the device,
          so systemd's next program allows it too.  Verified by the kernel, rolled back on
          failure.""")  # fmt: skip
    result = change_devices(container.id, host, Change.GRANT, ["/dev/nvidiactl"], "rw", why="lab demo")
    for i, action in enumerate(result.plan.actions, 1):
        out(_fill(f"{i}. {action.describe()}", "  ", "     "))
    outcome = result.outcome
    if outcome is None or outcome.exit_code != 0:
        out(f"  grant failed: {'no outcome' if outcome is None else outcome.message}")
        return False
    for line in outcome.checks:
        out(_fill(f"verified: {line}", "  ", "    "))
    granted = _probe(out, lab, rt, container) != "EPERM"
    step = "daemon-reload" if reload_reapplies_devices(systemd_version) else "set-property"
    _step(
        out,
        6,
        f"systemctl {step} again: systemd rebuilds its program from DeviceAllow, which has the device now.",
    )
    scenario.apply_step(lab, step, container)
    _show_layers(out, host, container, lifts, seen)
    kept = _probe(out, lab, rt, container) != "EPERM"
    _para(out, "Allowed, and still allowed after the reload." if granted and kept
          else "The grant did NOT hold: this is a cgdev bug, please report it.")  # fmt: skip
    return granted and kept


def _program_ids(result: Explanation) -> set[int | None]:
    return {p.id for layer in result.layers for p in layer.programs}


def run_demo(out: Out = print, progress: Out = print) -> int:
    """Run the story; exit status 1 when explain's prediction did not hold, 3 when it cannot run.

    On success the container is left running, for the reader's own ``cgdev explain``; a failed
    run deletes it, as nobody is told about it.
    """
    report = control.up(progress)
    lab, runtimes = report.lab, report.runtimes
    crun = runtimes.get("crun")
    if crun is not None and crun.version_tuple >= (1, 23):  # no double filter: crun pins its program
        from cgdev.lab.demo_pinned import run_pinned_demo

        return run_pinned_demo(out, report)
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

    _step(out, 1, """Start a container that has the node /dev/nvidiactl (c 195:255) but no rule allowing
          it, like a GPU container before the NVIDIA hook runs.""")  # fmt: skip
    container = scenario.start_preset(lab, preset, rt, preset.container_id)
    keep = False
    try:
        lifts = LiftCache()
        seen: set[int] = set()
        host = HostView.for_ns_pid(lab.pid1)  # how the host looks into the lab, as `--lab` does
        _show_layers(out, host, container, lifts, seen)
        _show_unit(out, host, container)
        _probe(out, lab, rt, container)

        _step(out, 2, """hook-sim: do what libnvidia-container does on cgroup v2 -- rewrite the programs
              on the container's OWN cgroup, prepending 'allow c 195:255 rw'.""")  # fmt: skip
        hooksim.hook_cgroup(str(lab.host_cgroup(container.cgroup)), *bundle.NVIDIACTL)
        deniers = _show_layers(out, host, container, lifts, seen)
        verdict = _probe(out, lab, rt, container)
        if verdict == "EPERM":
            _para(
                out,
                f"""Still denied, by {_who_denies(deniers)}: crun >= 1.18 also hands the device list to
                systemd, which attaches its own program to the scope, one level above the cgroup the
                hook rewrote.  Two filters, and the hook fixed only one.""",
            )

        command = explain_command(container, lab)
        _step(out, 3, f"""Ask cgdev.  `cgdev explain` reads the same layers from the host (there the lab's
              cgroups are under {host.systemd_root}), lifts every program into rules and gives each one's
              verdict with the rule and instructions that decided, the final verdict, the verdict
              after the next reload (from systemd's unit properties), and the fixes.""")  # fmt: skip
        before, predicted = explain_with_prediction(host, container, lifts)
        _print_explanation(out, before)

        if reload_reapplies_devices(report.systemd_version):
            _step(out, 4, "systemctl daemon-reload (any reload, or any set-property on the scope).")
            scenario.apply_step(lab, "daemon-reload", container)
        else:
            _step(out, 4, f"""systemctl set-property --runtime {container.scope} CPUWeight=50 (any property
                  change of the scope: systemd {report.systemd_version} rebuilds no device program on
                  daemon-reload, a bug fixed in systemd 258).""")  # fmt: skip
            scenario.apply_step(lab, "set-property", container)
        deniers = _show_layers(out, host, container, lifts, seen)
        verdict = _probe(out, lab, rt, container)
        after, _ = explain_with_prediction(host, container, lifts)
        matched = _report_prediction(out, before, predicted, after, verdict, lifts)
        _para(
            out,
            f"""systemd regenerated its program from the unit's properties (a new id) and attached it
            again; it never removes programs it did not attach.  Denied by: {_who_denies(deniers)}.
            A repair is only real when it fixes every layer that denies and is durable: systemd
            must learn the device too (DeviceAllow=, or the device in the OCI spec as CDI does).""",
        )
        repaired = _repair(out, lab, rt, host, container, lifts, seen, report.systemd_version)
        out(f"The container {container.id} is left running: ask cgdev yourself (add --json for the schema),")
        out("  " + shlex.join(command))
        out(f"  cgdev revoke {lab_flag(lab)} {container.id} /dev/nvidiactl     # and back")
        out(f"and delete it with `cgdev lab delete {container.id}` (`cgdev lab status` lists it).\n")
        out("See all eight cases, including the ones where the hook works until the next reload:")
        out("  cgdev lab scenario all")
        keep = True
    finally:
        if not keep:
            containers.delete_container(lab, container.id)
    return 0 if matched and repaired else 1
