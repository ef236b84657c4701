"""Benchmark: ``cgdev check`` wall time against ``python3 -c pass`` (issue 10, benchmarks).

``check`` runs in entrypoint scripts and liveness probes, so its cost is a whole process: the
interpreter's start-up plus cgdev's imports plus a few syscalls.  Prints one Markdown section:
median wall time of ``python3 -c pass``, ``python -m cgdev check /dev/null`` (and ``--json``, and
with 8 nodes), each as a ratio to the interpreter alone, and the cumulative import time of the
cgdev modules ``check`` loads (``-X importtime``), with the slowest ones.

When the lab is running (this script never starts it), the same inside a lab container as a
probe runs it: through the runtime's ``exec`` (crun), with this interpreter and cgdev's src
bind-mounted read-only into a copy of the lab's busybox rootfs (tests/lab/test_lab_check_inside.py
does the same), against ``exec`` of busybox ``true`` and of ``python -S -c pass`` in the same
container.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from timing import median_ms

ROUNDS = 31
NODES = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/nope",
]


def run_ms(argv: list[str]) -> float:
    """Median wall ms of ``argv`` as a whole process (one untimed run first)."""
    return median_ms(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            check=False), ROUNDS, warmup=1)  # fmt: skip


def import_profile() -> tuple[float, list[tuple[str, float]]]:
    """Total self import time (ms) of everything ``check`` imports, and the five slowest modules."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cgdev", "check", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        rows.append((name.strip(), int(self_us) / 1000))
    total = sum(ms for _, ms in rows)
    return total, sorted(rows, key=lambda r: -r[1])[:5]


def main() -> int:
    cgdev = [sys.executable, "-m", "cgdev", "check"]
    rows = [
        ("python3 -c pass", run_ms([sys.executable, "-c", "pass"])),
        ("cgdev check /dev/null", run_ms([*cgdev, "/dev/null"])),
        ("cgdev check --json /dev/null", run_ms([*cgdev, "--json", "/dev/null"])),
        (f"cgdev check ({len(NODES)} nodes)", run_ms([*cgdev, *NODES])),
    ]
    base = rows[0][1]
    print("## cgdev check (in-container probe)\n")
    print(f"Median wall time of {ROUNDS} runs, whole process, same interpreter as `python3 -c pass`.\n")
    print("| what | ms | vs. `python3 -c pass` |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms / base:.2f}x |")
    total, slowest = import_profile()
    print(f"\nImport time of everything `check` loads (`-X importtime`, self times summed): {total:.1f} ms;")
    print("slowest: " + ", ".join(f"`{name}` {ms:.1f} ms" for name, ms in slowest) + ".")
    in_container()
    return 0


SRC = Path(__file__).resolve().parents[1] / "src"
BENCH_ID = "bench-check"


def _ro_bind(path: str) -> dict[str, Any]:
    return {
        "destination": path,
        "type": "bind",
        "source": path,
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }


@contextlib.contextmanager
def _container() -> Iterator[tuple[Any, list[str]] | str]:
    """A lab container (preset crun-fs) that can run this interpreter, and the exec argv prefix;
    or why there is none."""
    from cgdev.lab import bundle, containers, install, presets, scenario
    from cgdev.lab.instance import find_lab

    lab = find_lab()
    if lab is None:
        yield "the lab is not running (bench/run.py starts it; this script never does)"
        return
    preset = presets.get("crun-fs")
    runtimes = install.installed_runtimes()
    reason = scenario.skip_reason(preset, runtimes)
    if reason:
        yield reason
        return
    rt = containers.runtime_named(preset.runtime, runtimes)
    prefix = sys.base_prefix
    with tempfile.TemporaryDirectory(prefix="cgdev-bench-check-") as tmp:
        root = Path(tmp) / "rootfs"
        shutil.copytree(bundle.ensure_rootfs(), root, symlinks=True)
        for where in ("/usr", prefix, str(SRC)):
            (root / where.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for link in ("lib", "lib64"):
            if os.path.islink(f"/{link}"):
                (root / link).symlink_to(os.readlink(f"/{link}"))
        config = scenario.preset_config(preset)
        config["root"] = {"path": str(root), "readonly": True}
        config["mounts"] += [_ro_bind("/usr"), _ro_bind(prefix), _ro_bind(str(SRC))]
        containers.start_container(lab, BENCH_ID, rt, preset.driver, config)
        try:
            yield lab, [*rt.argv(preset.driver), "exec", BENCH_ID]
        finally:
            containers.delete_container(lab, BENCH_ID)


def in_container() -> None:
    print("\n### inside a lab container (`crun exec`, crun-fs preset)\n")
    with _container() as got:
        if isinstance(got, str):
            print(f"not measured: {got}")
            return
        lab, exec_argv = got
        python = [os.path.realpath(sys.executable), "-S"]
        env = ["env", f"PYTHONPATH={SRC}", "PYTHONDONTWRITEBYTECODE=1"]

        def inside(argv: list[str]) -> float:
            return median_ms(lambda: lab.exec([*exec_argv, *argv], check=False), ROUNDS, warmup=1)

        rows = [
            ("`exec true` (busybox)", inside(["true"])),
            ("`exec python -S -c pass`", inside([*env, *python, "-c", "pass"])),
            ("`exec cgdev check /dev/null /dev/nvidiactl`",
             inside([*env, *python, "-m", "cgdev", "check", "/dev/null", "/dev/nvidiactl"])),
        ]  # fmt: skip
    print(f"Median wall time of {ROUNDS} runs, each through nsenter into the lab and the runtime's exec.\n")
    print("| what | ms | vs. `exec python -S -c pass` |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms / rows[1][1]:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
