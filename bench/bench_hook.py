"""Benchmark: the OCI hook's latency without and with an entitlement, against ``python3 -c pass``
and the bare runtime, in the same run.

Run as root with the lab up (``python bench/bench_hook.py [-n N]``; it never starts or stops the
lab).  Rows:

- interpreter start-up (``python3 -c pass``) and the hook's fast path (a state without a device
  annotation, no policy file): the target is <= 2x the former;  the hook runs as its executable
  does (``cgdev.hook.entry.entry``: no cycle collection, no interpreter teardown);
- the same fast path behind a pip-style console script (which imports ``re``) for comparison;
- inside the lab (each through ``nsenter``, whose cost the ``-c pass`` row there shows): the hook
  granting c 195:255 on every layer of a running crun container (revoked, untimed, between runs),
  and its ``poststart`` re-check (nothing to do); target <= 150 ms for the grant;
- a container's start with the bare runtime (crun 1.21, systemd driver) and with the hook in its
  config.json at createRuntime + poststart, without and with the CDI annotation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from timing import cpu_ms, median_ms, median_wall_cpu_ms

ENTRY = "from cgdev.hook.entry import entry; entry()"  # what the cgdev-hook executable runs
WRAPPER = "import re, sys; from cgdev.hook.entry import entry; sys.exit(entry())"  # what pip generates
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = "/tmp/cgdev-bench-pycache"
ENV["PYTHONPATH"] = SRC
CTL_SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [{"name": "ctl", "containerEdits": {"deviceNodes": [
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "permissions": "rw"}]}}],
}  # fmt: skip
NAME = os.environ.get("CGDEV_BENCH_NAME", "bench-hook")  # another name: two runs side by side


def state(
    annotations: dict[str, str], pid: int = 1, bundle: str = "/nonexistent", status: str = "creating"
) -> str:
    return json.dumps({"ociVersion": "1.0.2", "id": NAME, "status": status, "pid": pid, "bundle": bundle,
                       "annotations": annotations})  # fmt: skip


def run(argv: list[str], stdin: str = "") -> None:
    subprocess.run(argv, input=stdin.encode(), check=True, capture_output=True, env=ENV)


def host_rows(n: int, tmp: str) -> list[tuple[str, float, float | None]]:
    none = state({"org.example/other": "x"})
    policy = ["--policy", os.path.join(tmp, "no-policy.yaml")]
    timed = [
        ("`python3 -c pass` (/usr/bin/python3)", ["/usr/bin/python3", "-c", "pass"], ""),
        ("`python -c pass` (the hook's interpreter)", [sys.executable, "-c", "pass"], ""),
        ("hook, no entitlement", [sys.executable, "-c", ENTRY, *policy], none),
        ("hook, no entitlement, pip-style script (+ re)", [sys.executable, "-c", WRAPPER, *policy], none),
    ]
    rows: list[tuple[str, float, float | None]] = []
    for label, argv, stdin in timed:
        rows.append((label, *median_wall_cpu_ms(lambda argv=argv, stdin=stdin: run(argv, stdin), n, 2)))
    return rows


def lab_rows(n: int, tmp: str) -> list[tuple[str, float, float | None]]:
    from cgdev.lab import containers, install, presets, scenario
    from cgdev.lab.instance import find_lab

    lab = find_lab()
    if lab is None:
        return []
    runtimes = install.installed_runtimes()
    preset = presets.get("crun-sd")
    if scenario.skip_reason(preset, runtimes):
        return []
    rt = containers.runtime_named(preset.runtime, runtimes)
    cdi = os.path.join(tmp, "cdi")
    os.makedirs(cdi, exist_ok=True)
    with open(os.path.join(cdi, "example.json"), "w") as fh:
        json.dump(CTL_SPEC, fh)
    env = [
        f"PYTHONPATH={SRC}",
        f"CGDEV_STATE_DIR={tmp}/state",
        "PYTHONPYCACHEPREFIX=/tmp/cgdev-bench-pycache",
    ]
    hook_args = [
        sys.executable,
        "-c",
        ENTRY,
        "--cdi-dir",
        cdi,
        "--policy",
        os.path.join(tmp, "no-policy.yaml"),
    ]
    annotated = {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}
    rows: list[tuple[str, float, float | None]] = []

    def start(config: dict[str, object]) -> None:
        containers.start_container(lab, NAME, rt, preset.driver, config, preset=preset.name)

    def timed_start(annotations: dict[str, str] | None, hooks: bool) -> float:
        samples = []
        for _ in range(n):
            config = scenario.preset_config(preset)
            if annotations:
                config["annotations"] = annotations
            if hooks:
                stages = ("createRuntime", "poststart")
                entry = {"path": sys.executable, "env": env}
                config["hooks"] = {s: [{**entry, "args": [*hook_args, "--stage", s]}] for s in stages}
            samples.append(median_ms(lambda config=config: start(config), 1))
            containers.delete_container(lab, NAME)
        samples.sort()
        return samples[len(samples) // 2]

    rows.append(("container start, bare crun (lab)", timed_start(None, False), None))
    rows.append(("container start, crun + hook, no entitlement (lab)", timed_start(None, True), None))
    rows.append(("container start, crun + hook, CDI grant (lab)", timed_start(annotated, True), None))

    start(scenario.preset_config(preset))
    try:
        record = containers.find_container(NAME)
        in_lab = ["env", *env]
        rows.append(("`python -c pass` in the lab (nsenter)", *median_wall_cpu_ms(
            lambda: lab.exec([sys.executable, "-c", "pass"]), n, 1)))  # fmt: skip
        grant_state = state(annotated, record.pid, record.bundle)
        revoke = [sys.executable, "-m", "cgdev", "revoke", NAME, "c 195:255", "--lab"]

        def grant_once() -> tuple[float, float]:
            """Wall and CPU ms of one grant (nsenter's and the hook's CPU: the children's)."""
            cpu = cpu_ms()
            wall = median_ms(
                lambda: lab.exec([*in_lab, *hook_args, "--stage", "createRuntime"], input=grant_state), 1
            )
            cpu = cpu_ms() - cpu
            subprocess.run(
                revoke, check=True, capture_output=True, env={**ENV, "CGDEV_STATE_DIR": f"{tmp}/state"}
            )
            return wall, cpu

        walls, cpus = zip(*(grant_once() for _ in range(n)), strict=True)
        rows.append(("hook, CDI grant on every layer (lab, nsenter)", statistics.median(walls),
                     statistics.median(cpus)))  # fmt: skip
        lab.exec([*in_lab, *hook_args], input=grant_state)
        recheck = [*in_lab, *hook_args, "--stage", "poststart"]
        rows.append(("hook, poststart re-check, nothing to do (lab, nsenter)",
                     *median_wall_cpu_ms(lambda: lab.exec(recheck, input=grant_state), n, 1)))  # fmt: skip
    finally:
        containers.delete_container(lab, NAME)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", type=int, default=15, help="runs per timing (default 15; 5 for container starts)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cgdev-bench-hook-") as tmp:
        rows = host_rows(args.n, tmp)
        rows += lab_rows(max(3, args.n // 3), tmp)
    anchor, anchor_cpu = rows[1][1], rows[1][2] or 1.0
    print("## cgdev hook (issue 9)\n")
    print("Medians; CPU ms is user + system time of the process(es) run (on a loaded machine the wall")
    print("time of a short process is mostly waiting for a core).\n")
    print("| what | median ms | x `python -c pass` | CPU ms | CPU x `python -c pass` |")
    print("|---|---:|---:|---:|---:|")
    for label, ms, cpu in rows:
        cpu_cols = f"{cpu:.1f} | {cpu / anchor_cpu:.2f}" if cpu is not None else "| "
        print(f"| {label} | {ms:.1f} | {ms / anchor:.2f} | {cpu_cols} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
