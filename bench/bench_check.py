"""Benchmark: ``cgdev check`` wall time against ``python3 -c pass`` (issue 10, benchmarks).

``check`` runs in entrypoint scripts and liveness probes, so its cost is a whole process: the
interpreter's start-up plus cgdev's imports plus a few syscalls.  Prints one Markdown section:
median wall time of ``python3 -c pass``, ``python -m cgdev check /dev/null`` (and ``--json``, and
with 8 nodes), each as a ratio to the interpreter alone, and the cumulative import time of the
cgdev modules ``check`` loads (``-X importtime``), with the slowest ones.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

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


def median_ms(argv: list[str]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


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
        ("python3 -c pass", median_ms([sys.executable, "-c", "pass"])),
        ("cgdev check /dev/null", median_ms([*cgdev, "/dev/null"])),
        ("cgdev check --json /dev/null", median_ms([*cgdev, "--json", "/dev/null"])),
        (f"cgdev check ({len(NODES)} nodes)", median_ms([*cgdev, *NODES])),
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
