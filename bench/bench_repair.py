"""Benchmark: ``cgdev grant``/``revoke`` wall time and the grant/revoke cycle's atomicity (issue 8).

On the crun 1.21 + systemd case in the lab (after the hook simulation: the mission's case), in one
run: ``python3 -c pass`` (the floor of any process), ``systemctl set-property`` alone (systemd's
own cost of what a durable grant must do; run inside the lab through nsenter), ``cgdev grant`` and
``cgdev revoke`` as whole processes, the same in-process (``cli.main.main``: cgdev's work without
the interpreter's start), and systemd's share of it (the one SetUnitProperties round trip cgdev
makes, timed on its own).  Issue 8's targets: whole process <= 150 ms, cgdev's own work <= 50 ms.

Then the atomicity run: a process in the container's cgroup opens /dev/null and /dev/nvidiactl in a
tight loop while N grant/revoke cycles run (in-process); it counts every wrong verdict (a denied
/dev/null, nvidiactl denied while granted or allowed while revoked, steady states only).

    python bench/bench_repair.py [-n 15] [--cycles 1000]   (--cycles 0: the timings only)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import io
import mmap
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from timing import cpu_ms, median_ms

NAME = os.environ.get("CGDEV_BENCH_NAME", "rep-bench")  # another name: two runs side by side


def cli_options(lab: Any) -> list[str]:
    from cgdev.adapters import cgroupfs

    fs = f"/proc/{lab.pid1}/root"
    roots = [f"{fs}/run/{rt}" for rt in ("crun", "runc") if os.path.isdir(f"{fs}/run/{rt}")]
    systemd_root = "/" + os.path.relpath(str(lab.cgroup_root), cgroupfs.cgroup2_mount())
    return [*(a for r in roots for a in ("--runtime-root", r)), "--bus", lab.bus_address,
            "--systemd-root", systemd_root, "--systemd-fs-root", fs]  # fmt: skip


def in_process(argv: list[str]) -> None:
    from cgdev.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    if status != 0:
        raise SystemExit(f"cgdev {' '.join(argv[:3])}: exit status {status}")


# bench/run.py runs every script with PYTHONDONTWRITEBYTECODE=1 (the tree stays clean), which
# would make every whole-process run compile cgdev from source: a node has its bytecode cached, so
# the whole-process runs keep theirs in a private cache directory instead.
_CACHED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
_CACHED["PYTHONPYCACHEPREFIX"] = "/tmp/cgdev-bench-pycache"


def whole_process(argv: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "cgdev", *argv], check=True, capture_output=True, env=_CACHED)


def _generation(shared: mmap.mmap) -> int:
    return int.from_bytes(shared[0:8], "little")


def _watcher(cgroup: str, nvidiactl: str, shared: mmap.mmap, stop_fd: int) -> None:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    libc = ctypes.CDLL(None, use_errno=True)
    counts = [0, 0, 0, 0]
    while True:
        try:
            os.read(stop_fd, 1)
            break
        except BlockingIOError:
            pass
        before = _generation(shared)
        try:
            os.close(os.open("/dev/null", os.O_RDWR))
        except OSError as err:
            counts[1] += err.errno == errno.EPERM
        fd = libc.open(nvidiactl.encode(), os.O_RDWR)
        allowed = fd >= 0 or ctypes.get_errno() != errno.EPERM
        if fd >= 0:
            os.close(fd)
        if before == _generation(shared) and before % 2 == 0:
            counts[2] += before % 4 == 2 and not allowed
            counts[3] += before % 4 == 0 and allowed
        counts[0] += 1
    shared[8:40] = b"".join(c.to_bytes(8, "little") for c in counts)


def cycles(
    cgroup: str, nvidiactl: str, grant: list[str], revoke: list[str], n: int
) -> tuple[float, list[int]]:
    shared = mmap.mmap(-1, 64)
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK)
    pid = os.fork()
    if pid == 0:
        try:
            _watcher(cgroup, nvidiactl, shared, stop_r)
        finally:
            os._exit(0)
    generation = 0
    start = time.perf_counter()
    try:
        for _ in range(n):
            for argv in (grant, revoke):
                generation += 1
                shared[0:8] = generation.to_bytes(8, "little")
                in_process(argv)
                generation += 1
                shared[0:8] = generation.to_bytes(8, "little")
    finally:
        took = time.perf_counter() - start
        os.write(stop_w, b"x")
        os.waitpid(pid, 0)
    return took, [int.from_bytes(shared[8 + 8 * i : 16 + 8 * i], "little") for i in range(4)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="runs per timing (default 15)")
    parser.add_argument(
        "--cycles", type=int, default=1000, help="grant/revoke cycles of the atomicity run (0: no such run)"
    )
    args = parser.parse_args()
    os.environ["CGDEV_STATE_DIR"] = "/tmp/cgdev-bench-state"  # the machine's entitlements stay apart

    from cgdev.adapters.systemd_client import SystemdClient
    from cgdev.lab import containers, install, presets, scenario
    from cgdev.lab.instance import require_lab

    lab = require_lab()  # bench/run.py brings the lab up; this script never starts or stops it
    runtimes = install.installed_runtimes()
    preset = presets.get("crun-sd")
    reason = scenario.skip_reason(preset, runtimes)
    if reason:
        print(f"## cgdev grant / revoke (issue 8)\n\nnot measured: {reason}")
        return 0
    rt = containers.runtime_named(preset.runtime, runtimes)
    container = containers.start_container(
        lab, NAME, rt, preset.driver, scenario.preset_config(preset), preset=preset.name
    ).container
    try:
        scenario.apply_step(lab, "hook", container)
        opts = cli_options(lab)
        grant = ["grant", NAME, "c 195:255", *opts]
        revoke = ["revoke", NAME, "c 195:255", *opts]
        n = args.n
        rows: list[tuple[str, float]] = []
        rows.append(
            ("`python3 -c pass`", median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"]), n))
        )
        scope = container.scope
        assert scope is not None
        rows.append((
            "`systemctl set-property --runtime` (in the lab, via nsenter)",
            median_ms(lambda: lab.exec(["systemctl", "set-property", "--runtime", scope, "CPUWeight=50"]), n),
        ))  # fmt: skip

        cpu: dict[str, float] = {}

        def pair(run: Callable[[list[str]], None], label: str) -> tuple[float, float]:
            """Median wall ms of grant and revoke; their median CPU ms (ours and our children's:
            on a loaded machine the wall time is mostly waiting for a core) go to ``cpu``."""
            g, r, gc, rc = [], [], [], []
            for _ in range(n):
                for argv, out, out_cpu in ((grant, g, gc), (revoke, r, rc)):
                    before = cpu_ms()
                    start = time.perf_counter()
                    run(argv)
                    out.append((time.perf_counter() - start) * 1000)
                    out_cpu.append(cpu_ms() - before)
            cpu[f"`cgdev grant` ({label})"] = statistics.median(gc)
            cpu[f"`cgdev revoke` ({label})"] = statistics.median(rc)
            return statistics.median(g), statistics.median(r)

        whole_process(["grants"])  # fills the bytecode cache
        whole_process(["grant", "--help"])
        whole = pair(whole_process, "whole process")
        rows.append(("`cgdev grant` (whole process)", whole[0]))
        rows.append(("`cgdev revoke` (whole process)", whole[1]))
        inproc = pair(in_process, "in-process")
        rows.append(("`cgdev grant` (in-process)", inproc[0]))
        rows.append(("`cgdev revoke` (in-process)", inproc[1]))
        with SystemdClient(lab.bus_address) as client:
            allow = client.unit_properties(scope).device_allow

            def set_allow() -> None:
                client.set_unit_property_list(
                    scope,
                    [
                        ("DeviceAllow", []),
                        ("DeviceAllow", [list(p) for p in allow]),
                        ("DevicePolicy", "strict"),
                    ],
                )
                client.version()

            sd_part = median_ms(set_allow, n)
        rows.append(("systemd's share: SetUnitProperties(DeviceAllow) + one round trip", sd_part))
        rows.append(("cgdev's own work in a grant (in-process minus systemd's share)", inproc[0] - sd_part))
        host_cgroup = str(lab.cgroup_root) + container.cgroup
        with open(os.path.join(host_cgroup, "cgroup.procs")) as fh:
            host_pid = int(fh.read().split()[0])
        took, counts = (
            cycles(host_cgroup, f"/proc/{host_pid}/root/dev/nvidiactl", grant, revoke, args.cycles)
            if args.cycles > 0
            else (0.0, [0, 0, 0, 0])
        )
    finally:
        containers.delete_container(lab, NAME)
    print("## cgdev grant / revoke (issue 8)\n")
    print("crun 1.21 + systemd 252 after the hook simulation (the mission's case), medians of "
          f"{n} runs, ms:\n")  # fmt: skip
    print("| what | ms | CPU ms |\n|---|---:|---:|")
    for what, ms in rows:
        used = f"{cpu[what]:.1f}" if what in cpu else ""
        print(f"| {what} | {ms:.1f} | {used} |")
    loops, null_denied, wrong_granted, wrong_revoked = counts
    if args.cycles <= 0:
        print("\nAtomicity: not run (--cycles 0).")
        return 0
    print(f"\nAtomicity: {args.cycles} grant/revoke cycles in {took:.1f} s "
          f"({args.cycles / took:.1f} cycles/s, in-process, each verified by a kernel probe); a process "
          f"in the container's cgroup made {loops} /dev/null + /dev/nvidiactl opens meanwhile: "
          f"{null_denied} denied /dev/null, {wrong_granted} nvidiactl denied while granted, "
          f"{wrong_revoked} nvidiactl allowed while revoked.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
