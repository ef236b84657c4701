"""Benchmark: the OCI hook's latency without and with an entitlement, against ``python3 -c pass``
and the bare runtime, in the same run.

Run as root with the lab up (``python bench/bench_hook.py [-n N]``; it never starts or stops the
lab).  Rows:

- interpreter start-up (``python3 -c pass``) and the hook's fast path (a state without a device
  annotation, no policy file): the target is <= 2x the former;
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
import subprocess
import sys
import tempfile

from timing import median_ms

ENTRY = "import sys; from cgdev.hook.entry import main; sys.exit(main())"
WRAPPER = "import re, sys; from cgdev.hook.entry import main; sys.exit(main())"  # what pip generates
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
NAME = "bench-hook"


def state(
    annotations: dict[str, str], pid: int = 1, bundle: str = "/nonexistent", status: str = "creating"
) -> str:
    return json.dumps({"ociVersion": "1.0.2", "id": NAME, "status": status, "pid": pid, "bundle": bundle,
                       "annotations": annotations})  # fmt: skip


def run(argv: list[str], stdin: str = "") -> None:
    subprocess.run(argv, input=stdin.encode(), check=True, capture_output=True, env=ENV)


def host_rows(n: int, tmp: str) -> list[tuple[str, float]]:
    none = state({"org.example/other": "x"})
    policy = ["--policy", os.path.join(tmp, "no-policy.yaml")]
    rows = [
        (
            "`python3 -c pass` (/usr/bin/python3)",
            median_ms(lambda: run(["/usr/bin/python3", "-c", "pass"]), n, 2),
        )
    ]
    rows.append(
        (
            "`python -c pass` (the hook's interpreter)",
            median_ms(lambda: run([sys.executable, "-c", "pass"]), n, 2),
        )
    )
    rows.append(
        ("hook, no entitlement", median_ms(lambda: run([sys.executable, "-c", ENTRY, *policy], none), n, 2))
    )
    rows.append(("hook, no entitlement, pip-style script (imports re)",
                 median_ms(lambda: run([sys.executable, "-c", WRAPPER, *policy], none), n, 2)))  # fmt: skip
    return rows


def lab_rows(n: int, tmp: str) -> list[tuple[str, float]]:
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
    rows: list[tuple[str, float]] = []

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

    rows.append(("container start, bare crun (lab)", timed_start(None, False)))
    rows.append(("container start, crun + hook, no entitlement (lab)", timed_start(None, True)))
    rows.append(("container start, crun + hook, CDI grant (lab)", timed_start(annotated, True)))

    start(scenario.preset_config(preset))
    try:
        record = containers.find_container(NAME)
        in_lab = ["env", *env]
        rows.append(("`python -c pass` in the lab (nsenter)", median_ms(
            lambda: lab.exec([sys.executable, "-c", "pass"]), n, 1)))  # fmt: skip
        grant_state = state(annotated, record.pid, record.bundle)
        revoke = [sys.executable, "-m", "cgdev", "revoke", NAME, "c 195:255", "--lab"]

        def grant_once() -> float:
            one = median_ms(
                lambda: lab.exec([*in_lab, *hook_args, "--stage", "createRuntime"], input=grant_state), 1
            )
            subprocess.run(
                revoke, check=True, capture_output=True, env={**ENV, "CGDEV_STATE_DIR": f"{tmp}/state"}
            )
            return one

        samples = sorted(grant_once() for _ in range(n))
        rows.append(("hook, CDI grant on every layer (lab, nsenter)", samples[len(samples) // 2]))
        lab.exec([*in_lab, *hook_args], input=grant_state)
        recheck = [*in_lab, *hook_args, "--stage", "poststart"]
        rows.append(("hook, poststart re-check, nothing to do (lab, nsenter)",
                     median_ms(lambda: lab.exec(recheck, input=grant_state), n, 1)))  # fmt: skip
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
    anchor = rows[1][1]
    print("## cgdev hook (issue 9)\n")
    print("| what | median ms | x `python -c pass` |\n|---|---:|---:|")
    for label, ms in rows:
        print(f"| {label} | {ms:.1f} | {ms / anchor:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
