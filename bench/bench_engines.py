"""Engines in the lab: ``python bench/bench_engines.py [--runs N]`` (root; uses the running host lab).

Measures, in the same run: starting and removing a container through podman and containerd
against the lab's own crun start (the anchor for the engines' overhead), and ``cgdev explain
--lab`` of an engine container by name and by id against the same command on a lab container
and against ``python3 -c pass``.  Never starts or stops the lab; removes what it started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from cgdev.lab import containers, engines, presets, scenario
from cgdev.lab.instance import require_lab
from cgdev.lab.table import format_table
from timing import median_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lab = require_lab()
    tag = f"bench-eng-{os.getpid()}"
    preset = presets.get("crun-sd")
    rt = containers.runtime_named("crun")

    def lab_crun() -> None:
        containers.start_container(lab, f"{tag}-lab", rt, "systemd", scenario.preset_config(preset))
        containers.delete_container(lab, f"{tag}-lab")

    def engine(kind: str, runtime: str) -> None:
        engines.run_engine_container(lab, kind, f"{tag}-{kind}", runtime=runtime)
        engines.remove_engine_container(lab, f"{tag}-{kind}")

    rows = []
    anchor_start = median_ms(lab_crun, args.runs, warmup=1)
    rows.append(["lab crun run + delete (anchor)", anchor_start, 1.0])
    for kind, runtime in (("podman", "crun"), ("podman", "runc"), ("containerd", "runc")):
        ms = median_ms(lambda k=kind, r=runtime: engine(k, r), args.runs, warmup=1)
        rows.append([f"{kind} ({runtime}) run + rm", ms, ms / anchor_start])

    def cgdev_explain(spec: str) -> None:
        cmd = [sys.executable, "-m", "cgdev", "explain", "--lab", spec, "--device", "/dev/null", "--json"]
        subprocess.run(cmd, capture_output=True, check=True)

    anchor_py = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.runs)
    rows.append(["python3 -c pass (anchor)", anchor_py, 1.0])
    containers.start_container(lab, f"{tag}-lab", rt, "systemd", scenario.preset_config(preset))
    podman = engines.run_engine_container(lab, "podman", f"{tag}-p", runtime="crun")
    ctr = engines.run_engine_container(lab, "containerd", f"{tag}-c", runtime="runc")
    try:
        for label, spec in (("lab container id", f"{tag}-lab"), ("podman name", podman.name),
                            ("podman id prefix", podman.id[:12]), ("containerd id", ctr.name)):  # fmt: skip
            ms = median_ms(lambda s=spec: cgdev_explain(s), args.runs, warmup=1)
            rows.append([f"explain --lab {label}", ms, ms / anchor_py])
    finally:
        containers.delete_container(lab, f"{tag}-lab")
        engines.remove_engine_container(lab, podman.name)
        engines.remove_engine_container(lab, ctr.name)
    table = [[name, f"{ms:.0f}", f"{ratio:.2f}x"] for name, ms, ratio in rows]
    print(format_table(["measurement", "median ms", "ratio to its anchor"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
