"""``cgdev lab``: a real systemd + D-Bus + crun/runc stack on this machine, to see and test the problem.

Only the chosen action's modules are imported; ``cgdev lab --help`` imports nothing of the lab.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cgdev.errors import InputError

HELP = "run real systemd, D-Bus, crun and runc in private namespaces to reproduce device-filter bugs"
DESCRIPTION = """\
The lab runs Debian's systemd as PID 1 of private namespaces on its own cgroup
(<cgroup2 mount>/cgdev-lab), with a D-Bus system bus, and crun (>= 1.18), runc and, on Debian 12,
crun 1.8.1 to start containers against it. Nothing of it is visible to the host's systemd, and
`cgdev lab down` removes every process, mount, cgroup and BPF program it made.

  cgdev lab up                      install what is missing, build crun on Debian 12, start
  cgdev lab demo                    the double-filter problem, step by step
  cgdev lab scenario all            every case of the reference table, checked
  cgdev lab run crun-sd             start a container from a preset (or --config FILE)
  cgdev lab hook-sim ID 195:255     what libnvidia-container's hook does to the container
  cgdev lab exec -- systemctl list-units --type=scope
  cgdev lab down
  cgdev lab up --stack sid          the same lab on Debian unstable's systemd, crun and runc

Every action takes --stack host|bookworm|trixie|sid (default host: this machine's packages). A
suite's lab runs from a debootstrap root of that suite, built once from the machine's own apt
mirror and cached under /var/lib/cgdev/lab/roots/; labs of different stacks run side by side
(cgroup cgdev-lab-<stack>, state /run/cgdev-lab-<stack>, files /var/lib/cgdev/lab/stacks/<stack>).
"""
RUN_DESCRIPTION = """\
Start a container in the lab from a preset (see `cgdev lab scenario --list`) or from an OCI
config.json, and print its cgroup (and systemd scope). A container of the same id is deleted
first, and the output then says "replaced"; if it cannot be deleted, nothing is started (exit 3).

With --engine podman|containerd the container is started by that engine instead, against the
lab's systemd, from the lab's busybox rootfs (no registry needed), running `sleep`:
  cgdev lab run --engine podman --runtime runc --name p1 --device /dev/null
  cgdev lab run --engine podman --hooks-dir /etc/containers/oci/hooks.d --annotation k=v --name p2
  cgdev lab run --engine containerd --runtime /usr/local/bin/my-runtime --name c1
--runtime takes a lab runtime (crun, runc, crun-1.8.1) or any runtime binary's absolute path as
the lab sees it (podman --runtime PATH, ctr run --runc-binary PATH). The engines keep their
storage, state and sockets in the lab's private /run: `cgdev lab down` removes it all. Explain
such a container by name or id: `cgdev explain --lab p1 --device /dev/null`. See docs/lab-engines.md.
"""
SCENARIO_DESCRIPTION = """\
Run each preset's timeline -- start, hook-sim, daemon-reload, set-property -- on the real stack,
open /dev/null and /dev/nvidiactl inside the container after every step, and compare with the
reference table. Each case uses its own container, scn-<preset>, deleted afterwards: containers
started with `cgdev lab run` or `cgdev lab demo` are left alone. Exit 1 on any mismatch.
"""
DEMO_DESCRIPTION = """\
Show the double-filter problem on the real stack, step by step: start a crun + systemd container
(lab-crun-sd) with /dev/nvidiactl but no rule for it, lift every cgroup level's device program into
rules, run the NVIDIA-style hook, ask `cgdev explain` why /dev/nvidiactl is still denied, then
reload systemd and check that explain's prediction held. The container is left running for your
own `cgdev explain`. Where crun >= 1.23 hands its program to systemd (BPFProgram mode, e.g.
--stack sid) there is no double filter: the demo (lab-crun-pin-sd) shows crun's pinned program on
the scope, the hook failing, explain's fix, `cgdev grant` re-pinning it and the reload keeping it.
Exit 0 when the prediction held, 1 when it did not, 3 when the lab cannot run the demo here.
"""
# how a host-side command looks into the lab: one flag (``HostView.for_ns_pid`` of its PID 1)
ONE_FLAG = "cgdev explain --lab TARGET --device DEV  (show, snapshot and audit take --lab too)"
EPILOG = "Needs root. Every wait is bounded by CGDEV_LAB_TIMEOUT (seconds, default 60)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, description: str | None = None, *, with_json: bool = True
               ) -> argparse.ArgumentParser:  # fmt: skip
        """An action whose --help shows its own description (its one-line help when none is given)."""
        sub = actions.add_parser(
            name,
            help=help_text,
            description=description or help_text[0].upper() + help_text[1:] + ".",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if with_json:
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        _stack_option(sub)
        return sub

    action("up", "start the lab (idempotent; installs packages and builds crun on first use)")
    action("down", "stop the lab and remove everything it made (exit 1 if anything is left)")
    action("status", "is the lab running, its PID 1, bus address, runtimes and containers")

    ex = actions.add_parser(
        "exec",
        help="run a command inside the lab's namespaces",
        description="Run CMD inside the lab (its mount, pid, cgroup, uts, ipc and network namespaces), "
        "e.g. `cgdev lab exec -- systemctl status`. The exit status is CMD's.",
    )
    _stack_option(ex)
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG ...]")

    from_names = "crun, runc or crun-1.8.1 (alias crun-1.8)"
    run = action("run", "start a container from a preset or an OCI config", RUN_DESCRIPTION)
    run.add_argument("preset", nargs="?", help="a preset name (see `cgdev lab scenario --list`)")
    run.add_argument("--config", type=Path, help="an OCI config.json instead of a preset (a relative "
                     "root.path, as `crun spec` writes, gets the lab's busybox rootfs)")  # fmt: skip
    run.add_argument("--runtime", help=f"{from_names} (default: the preset's, else crun); with "
                     "--engine also an absolute path of any runtime binary")  # fmt: skip
    run.add_argument("--engine", help="podman or containerd: start the container with that engine")
    run.add_argument("--device", action="append", default=[], metavar="SPEC",
                     help="with --engine: a device to add (podman: PATH[:PATH][:rwm] or a CDI name "
                     "vendor/class=name; containerd: a device path); repeatable")  # fmt: skip
    run.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                     help="with --engine: an OCI annotation; repeatable")  # fmt: skip
    run.add_argument("--hooks-dir", metavar="DIR", help="with --engine podman: podman's --hooks-dir")
    run.add_argument("--cgroup-driver", help="systemd or cgroupfs (default: the preset's, else systemd)")
    run.add_argument("--name", help="container id: a letter or digit, then letters, digits, _ . - "
                     "(default: lab-<preset>, or lab-config; scn-* is the scenarios')")  # fmt: skip

    rm = action("delete", "delete a container started with `cgdev lab run` (with or without --engine)")
    rm.add_argument("container")

    pr = action("probe", "open /dev/null and /dev/nvidiactl inside a container (EPERM = denied)")
    pr.add_argument("container")

    hs = action(
        "hook-sim",
        "rewrite the container's own cgroup programs as libnvidia-container does (prepend an allow block)",
    )
    hs.add_argument("container", help="a lab container, or an engine container's name or id")
    hs.add_argument(
        "device", nargs="?", default="195:255", help="MAJOR:MINOR of a char device (default 195:255)"
    )

    sc = action(
        "scenario",
        "run presets' timelines (start, hook-sim, daemon-reload, set-property) and check them",
        SCENARIO_DESCRIPTION,
    )
    sc.add_argument("names", nargs="*", metavar="NAME", help="preset names or `all` (default: all)")
    sc.add_argument("--list", action="store_true", help="list the presets and exit")

    action("demo", "show the double-filter problem step by step", DEMO_DESCRIPTION, with_json=False)


def _stack_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        default="host",
        metavar="STACK",
        help="host (this machine's packages), bookworm, trixie or sid (a cached debootstrap root)",
    )


def _emit(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        from cgdev.present.json_out import print_json

        print_json(data)
    else:
        print(human)


def _progress(args: argparse.Namespace):
    def say(message: str) -> None:
        if not getattr(args, "json", False):
            print(f"lab: {message}", file=sys.stderr, flush=True)

    return say


def _up(args: argparse.Namespace) -> int:
    from cgdev.lab import control

    report = control.up(_progress(args))
    lab = report.lab
    runtimes = {name: f"{rt.version} {rt.path}" for name, rt in report.runtimes.items()}
    data = {
        "stack": report.stack,
        "started": report.started,
        "seconds": round(report.seconds, 3),
        "pid1": lab.pid1,
        "cgroup_root": str(lab.cgroup_root),
        "bus_address": lab.bus_address,
        "systemd_version": report.systemd_version,
        "runtimes": runtimes,
    }
    human = "\n".join(
        [
            f"lab ({report.stack}) is {'up' if report.started else 'already up'} ({report.seconds:.1f}s): "
            f"systemd {report.systemd_version}, host pid {lab.pid1}",
            f"  cgroup   {lab.cgroup_root}",
            f"  bus      {lab.bus_address}",
            *(f"  runtime  {name:<11} {desc}" for name, desc in runtimes.items()),
        ]
    )
    _emit(args, data, human)
    return 0


def _down(args: argparse.Namespace) -> int:
    from cgdev.lab import control

    report = control.down(_progress(args))
    data = {
        "was_running": report.was_running,
        "deleted_containers": report.deleted,
        "leftovers": report.leftovers,
        "errors": report.errors,
        "seconds": round(report.seconds, 3),
    }
    human = f"lab is down ({report.seconds:.1f}s); machine clean" if not report.leftovers else (
        "lab is down but left behind: " + "; ".join(report.leftovers)
    )  # fmt: skip
    if report.errors:  # those containers died with the lab; say why they were not deleted first
        human += "\n" + "\n".join(f"  not deleted before the stop: {e}" for e in report.errors)
    _emit(args, data, human)
    return 1 if report.leftovers else 0


def _status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cgdev.lab import control

    st = control.status()
    lines = [f"lab ({st.stack}): {'running' if st.running else 'not running'}"]
    if st.root:
        packages = ", ".join(f"{k} {v}" for k, v in st.root["packages"].items())
        built = f"{st.root['suite']}, built {st.root['built']}"
        lines.append(f"  root    {st.root['path']} ({built}): {packages}")
    elif st.stack != "host":
        lines.append("  root    not built yet (`cgdev lab up --stack " + st.stack + "` builds it)")
    if st.running:
        version = st.systemd_version or "? (its system bus does not answer)"
        lines += [f"  systemd {version}, host pid {st.pid1}", f"  cgroup  {st.cgroup_root}",
                  f"  bus     {st.bus_address}", f"  explain with: {ONE_FLAG}"]  # fmt: skip
    lines += [f"  runtime {name:<11} {desc}" for name, desc in st.runtimes.items()]
    lines += [
        f"  container {c['id']} ({c['runtime']}, {c['driver']}) in {c['cgroup']}" for c in st.containers
    ]
    lines += [
        f"  {c['engine']} {c['name']} ({c['runtime']}, {c['driver']}) in {c['cgroup']}"
        for c in st.engine_containers
    ]
    _emit(args, asdict(st), "\n".join(lines))
    return 0


def _exec(args: argparse.Namespace) -> int:
    import os

    from cgdev.lab import instance

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise InputError("exec: give a command after --, e.g. `cgdev lab exec -- systemctl status`")
    lab = instance.require_lab()
    lab.enter_admin_cgroup()
    os.execvpe(
        "nsenter", lab.nsenter_argv(argv), {**instance.LAB_ENV, "TERM": os.environ.get("TERM", "dumb")}
    )
    return 127  # not reached


def _run(args: argparse.Namespace) -> int:
    from cgdev.lab import bundle, containers, instance, presets, runtime, scenario

    if args.engine is not None:
        return _run_engine(args)
    for flag, given in (("--device", args.device), ("--annotation", args.annotation),
                        ("--hooks-dir", args.hooks_dir)):  # fmt: skip
        if given:
            raise InputError(f"run {flag}: only with --engine podman|containerd")
    if (args.preset is None) == (args.config is None):
        raise InputError("run: give either a preset name or --config FILE (not both)")
    preset = presets.get(args.preset) if args.preset else None
    rt_name = args.runtime or (preset.runtime if preset else "crun")
    driver = runtime.check_driver(args.cgroup_driver or (preset.driver if preset else "systemd"))
    rt = containers.runtime_named(rt_name)
    if preset is not None:
        config = scenario.preset_config(preset)
    else:
        config = bundle.load_config(args.config, bundle.ensure_rootfs())
    container_id = args.name or (preset.container_id if preset else "lab-config")
    lab = instance.require_lab()
    started = containers.start_container(
        lab, container_id, rt, driver, config, preset=preset.name if preset else None
    )
    record = started.container
    verb = "replaced" if started.replaced else "started"
    human = f"{verb} {record.id} ({rt.name} {rt.version}, {driver}): cgroup {record.cgroup}" + (
        f", scope {record.scope}" if record.scope else ""
    )
    _emit(args, {**json.loads(record.to_json()), "replaced": started.replaced}, human)
    return 0


def _engine_input(args: argparse.Namespace) -> dict[str, Any]:
    """``run --engine``'s options, checked before anything runs (bad input: exit 2, no change)."""
    from cgdev.lab import engine_record

    engine = engine_record.check_engine(args.engine)
    if args.preset is not None or args.config is not None:
        raise InputError("run --engine: presets and --config are for the lab's own containers; give --name")
    name = engine_record.check_name(engine, args.name or f"lab-{engine.value}")
    annotations = dict(engine_record.check_annotation(a) for a in args.annotation)
    devices = [engine_record.check_device(engine, d) for d in args.device]
    engine_record.check_hooks_dir(engine, args.hooks_dir)
    from cgdev.lab import runtime

    driver = runtime.check_driver(args.cgroup_driver or "systemd")
    return {"engine": engine, "name": name, "runtime": args.runtime or "crun", "driver": driver,
            "devices": devices, "annotations": annotations, "hooks_dir": args.hooks_dir}  # fmt: skip


def _run_engine(args: argparse.Namespace) -> int:
    from cgdev.lab import engines, instance

    options = _engine_input(args)
    record = engines.run_engine_container(
        instance.require_lab(),
        options.pop("engine"),
        options.pop("name"),
        **options,
    )
    short_id = record.id if record.id == record.name else record.id[:12]
    human = (
        f"started {record.engine.value} {record.name} ({record.runtime}, {record.driver}): "
        f"id {short_id}, pid {record.pid} in the lab, cgroup {record.cgroup}"
        + (f", scope {record.scope}" if record.scope else "")
    )
    import msgspec

    _emit(args, msgspec.to_builtins(record), human)
    return 0


def _check_name(name: str | None) -> None:
    """``run --name``: an id both runtimes accept and no scenario's, before anything is written."""
    if name is None:
        return
    from cgdev.lab import runtime, scenario

    runtime.check_container_id(name, "--name")
    if name.startswith(scenario.SCENARIO_PREFIX):
        raise InputError(f"--name {name!r}: {scenario.SCENARIO_PREFIX}* ids are the scenarios' own")


def _delete(args: argparse.Namespace) -> int:
    from cgdev.lab import containers, engine_record, instance

    lab = instance.require_lab()
    if engine_record.find(args.container) is not None:
        from cgdev.lab import engines

        engines.remove_engine_container(lab, args.container)
    else:
        containers.delete_container(lab, args.container)
    _emit(args, {"deleted": args.container}, f"deleted {args.container}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from cgdev.lab import bundle, containers, instance, runtime

    lab = instance.require_lab()
    from cgdev.lab import engine_record

    engine_container = engine_record.find(args.container)
    if engine_container is not None:
        from cgdev.lab import engines

        verdicts = engines.probe(lab, engine_container)
        _emit(args, verdicts, "  ".join(f"/dev/{n}: {v}" for n, v in verdicts.items()))
        return 1 if "EPERM" in verdicts.values() else 0
    record = containers.find_container(args.container)
    verdicts = runtime.open_in_container(
        lab, containers.container_runtime(record), record.driver, record.id, bundle.PROBE_NODES
    )
    _emit(args, verdicts, "  ".join(f"/dev/{n}: {v}" for n, v in verdicts.items()))
    return 1 if "EPERM" in verdicts.values() else 0


def _hook_sim(args: argparse.Namespace) -> int:
    from cgdev.lab import containers, engine_record, hooksim, instance

    major, minor = hooksim.parse_device(args.device)
    lab = instance.require_lab()
    record = engine_record.find(args.container) or containers.find_container(args.container)
    result = hooksim.hook_cgroup(str(lab.host_cgroup(record.cgroup)), major, minor)
    data = {
        "cgroup": record.cgroup,
        "device": f"c {major}:{minor}",
        "before": result.before,
        "after": result.after,
    }
    human = (
        f"hook-sim: {record.cgroup}: programs {result.before or 'none'} -> {result.after} "
        f"(prepended allow c {major}:{minor} rw; ancestors untouched)"
    )
    _emit(args, data, human)
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from cgdev.lab import control, presets, scenario
    from cgdev.lab.table import format_table

    if args.list:
        rows = [[p.name, p.runtime, p.driver, p.summary] for p in presets.PRESETS.values()]
        _emit(
            args,
            {"presets": [r[0] for r in rows]},
            format_table(["preset", "runtime", "driver", "case"], rows),
        )
        return 0
    chosen = presets.select(args.names)
    report = control.up(_progress(args))
    results = [scenario.run_scenario(report.lab, p, report.runtimes) for p in chosen]
    _emit(args, {"scenarios": [r.to_dict() for r in results]}, scenario.render(results))
    return 0 if all(r.passed or r.skipped for r in results) else 1


def _demo(args: argparse.Namespace) -> int:
    from cgdev.lab.demo import run_demo

    return run_demo(print, _progress(args))


_ACTIONS = {
    "up": _up,
    "down": _down,
    "status": _status,
    "exec": _exec,
    "run": _run,
    "delete": _delete,
    "probe": _probe,
    "hook-sim": _hook_sim,
    "scenario": _scenario,
    "demo": _demo,
}


def run(args: argparse.Namespace) -> int:
    from cgdev.lab.paths import check_stack, using_stack

    stack = check_stack(args.stack)
    if args.action == "run" and args.engine is not None:
        _engine_input(args)  # bad input is exit 2 whoever runs it
    elif args.action == "run":
        _check_name(args.name)
    if args.action not in ("scenario",) or not getattr(args, "list", False):
        from cgdev.lab.control import require_root

        require_root()
    with using_stack(stack):
        return _ACTIONS[args.action](args)
