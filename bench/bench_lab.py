"""Benchmarks of the lab on this machine: ``python bench/bench_lab.py [--stack S] [--fresh] [--repeat N]``.

Measures ``up`` from nothing built (``--fresh`` deletes /var/lib/cgdev/lab first: the trixie
Sources index, crun's source and build, the rootfs and the memlock shim; apt packages already
installed stay installed), ``up`` with everything built, ``up`` when the lab is already running,
one scenario run per preset and ``down``.  Prints a table and a Markdown snippet for
bench/RESULTS.md.  Needs root; leaves the lab down at the end if it was down at the start.
``--stack sid`` (or trixie, bookworm) measures that stack's lab instead; with ``--fresh`` its
debootstrap root is deleted and rebuilt too (the root's first build).  Without ``--stack`` it
restarts the host stack's lab.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from cgdev.lab import containers, control, instance, presets, scenario
from cgdev.lab.paths import check_stack, current_stack, using_stack
from cgdev.lab.table import format_table

TARGETS = {"up (fresh)": 60.0, "up (built)": 2.0, "scenario": 3.0, "explain": 0.150}


def explain_in_lab(lab: instance.Lab, container_id: str) -> list[str]:
    """``cgdev explain`` run from the host on a lab container, systemd asked over the lab's bus:
    what a user types on a node with systemd (the demo prints the same line)."""
    root = f"/proc/{lab.pid1}/root"
    return [
        sys.executable, "-m", "cgdev", "explain", container_id, "--device", "/dev/nvidiactl",
        "--access", "rw", "--runtime-root", f"{root}/run/crun", "--systemd-root",
        f"/{current_stack().cgroup_name}",
        "--bus", lab.bus_address, "--systemd-fs-root", root, "--json",
    ]  # fmt: skip


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.monotonic()
        action()
        samples.append(time.monotonic() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fresh", action="store_true", help="also time up after deleting every build product"
    )
    parser.add_argument("--repeat", type=int, default=3, help="samples per measurement (default 3)")
    parser.add_argument("--stack", default="host", help="host (default), bookworm, trixie or sid")
    args = parser.parse_args()
    with using_stack(check_stack(args.stack)):
        return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    stack = current_stack()
    was_running = instance.find_lab() is not None
    rows: list[tuple[str, list[float], float | None]] = []

    if args.fresh:
        control.down()
        shutil.rmtree(stack.var_dir, ignore_errors=True)
        if stack.root_dir is not None:
            shutil.rmtree(stack.root_dir, ignore_errors=True)
        rows.append(("up (fresh)", timed(control.up, 1), TARGETS["up (fresh)"]))

    def restart() -> None:
        control.down()
        control.up()

    control.up()
    started = time.monotonic()
    control.down()
    down_time = time.monotonic() - started
    rows.append(
        (
            "up (built)",
            timed(lambda: control.up(), 1) + timed(restart, args.repeat - 1),
            TARGETS["up (built)"],
        )
    )
    rows.append(("up (already running)", timed(control.up, args.repeat), None))
    report = control.up()
    for preset in presets.PRESETS.values():
        results: list[scenario.ScenarioResult] = []

        def once(p: presets.Preset = preset, out: list[scenario.ScenarioResult] = results) -> None:
            out.append(scenario.run_scenario(report.lab, p, report.runtimes))

        samples = timed(once, args.repeat)
        status = "skipped" if results[-1].skipped else ("ok" if results[-1].passed else "MISMATCH")
        rows.append((f"scenario {preset.name} ({status})", samples, TARGETS["scenario"]))
    preset = next(
        (
            p
            for p in map(presets.get, ("crun-sd", "crun-pin-sd"))
            if not scenario.skip_reason(p, report.runtimes)
        ),
        None,
    )
    if preset is not None:
        container = scenario.start_preset(report.lab, preset, report.runtimes[preset.runtime])
        try:
            argv = explain_in_lab(report.lab, container.id)
            subprocess.run(argv, capture_output=True, check=False)  # warm the page cache
            samples = timed(lambda: subprocess.run(argv, capture_output=True, check=False), 11)
            rows.append(
                (f"cgdev explain, {preset.name} container, systemd over D-Bus", samples, TARGETS["explain"])
            )
            bare = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 11)
            rows.append(("python -c pass (the same interpreter)", bare, None))
        finally:
            containers.delete_container(report.lab, container.id)
    rows.append(("scenario all", timed(lambda: [scenario.run_scenario(report.lab, p, report.runtimes)
                                                for p in presets.PRESETS.values()], 1), None))  # fmt: skip
    rows.append(("down", [down_time], None))
    if not was_running:
        control.down()

    header = ["measurement", "median s", "max s", "n", "target s"]
    table = [
        [
            name,
            f"{statistics.median(s):.3f}",
            f"{max(s):.3f}",
            str(len(s)),
            f"<= {target:g}" if target else "-",
        ]
        for name, s, target in rows
    ]
    print(f"stack: {stack.name}")
    print(format_table(header, table))
    print("\nMarkdown for bench/RESULTS.md:\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
