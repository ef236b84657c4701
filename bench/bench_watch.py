"""Benchmark: ``cgdev watch`` -- how long a container is denied its entitled device, and what the
watcher costs (issue 10).

Reaction (in the lab, real systemd 252): runc + systemd and crun with ``run.oci.systemd.subgroup=""``
after the hook simulation, its leaf-only grant of /dev/nvidiactl recorded as an entitlement, with
``cgdev watch --repair`` running.  Each round takes the device away the way systemd does: the
unit's DeviceAllow drop-in is rewritten without it and ``daemon-reload`` re-applies it (a grant
recorded without durability), or ``SetUnitProperties`` resets DeviceAllow (a set-property).  A
probe process in the container's cgroup opens /dev/nvidiactl in a loop and timestamps every EPERM
run: that is the denied window, as the container sees it.  The watcher's own reaction time (the
signal's arrival -> the device verified restored) is read from its ``restored`` events.

Scale (on this host's cgroup2, no systemd): N scratch cgroups with a device program each and an
entitlement each; the watcher's first (cold) and a later (warm) full scan, and over 500 cgroups
its idle CPU for --idle seconds and its RSS.  Anchor: ``python3 -c pass``.

    python bench/bench_watch.py [--rounds 100] [--idle 60] [--sizes 500,5000] [--part reaction|scale|all]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from timing import median_ms

PRESETS = ("runc-sd", "crun-sd-nosub")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = "/tmp/cgdev-bench-pycache"


class Watcher:
    """``cgdev watch --json`` as a child; events on a queue."""

    def __init__(self, argv: list[str], state_dir: str) -> None:
        env = dict(ENV, CGDEV_STATE_DIR=state_dir)
        self.proc = subprocess.Popen([sys.executable, "-m", "cgdev", "watch", "--json", *argv], env=env,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def next(self, kind: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                shown = "\n".join(json.dumps(e) for e in self.seen[-8:])
                raise SystemExit(f"no {kind} event within {timeout:g} s; the last ones:\n{shown}") from None
            if event is None:
                raise SystemExit(f"the watcher exited with status {self.proc.wait()}")
            self.seen.append(event)
            if event["event"] == kind:
                return event

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- reaction --------------------------------------------------------------------------------------


def _prober(cgroup: str, node: str, out_fd: int, stop_fd: int) -> None:  # pragma: no cover - a child
    """Join the container's cgroup; open ``node`` in a loop; write each denied run's length (s)."""
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    libc = ctypes.CDLL(None, use_errno=True)
    path = node.encode()
    denied_since: float | None = None
    while True:
        try:
            os.read(stop_fd, 1)
            break
        except BlockingIOError:
            pass
        fd = libc.open(path, os.O_RDWR | os.O_NONBLOCK)
        now = time.monotonic()
        denied = fd < 0 and ctypes.get_errno() == errno.EPERM
        if fd >= 0:
            os.close(fd)
        if denied and denied_since is None:
            denied_since = now
        elif not denied and denied_since is not None:
            os.write(out_fd, f"{now - denied_since:.6f}\n".encode())
            denied_since = None
        time.sleep(0.0002)


@contextlib.contextmanager
def probing(cgroup: str, node: str) -> Iterator[list[float]]:
    windows: list[float] = []
    out_r, out_w = os.pipe()
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            _prober(cgroup, node, out_w, stop_r)
        finally:
            os._exit(0)
    os.close(out_w)
    try:
        yield windows
    finally:
        os.write(stop_w, b"x")
        os.waitpid(pid, 0)
        with os.fdopen(out_r) as fh:
            windows.extend(float(line) for line in fh if line.strip())


def entitlement(cgroup: str, container_id: str | None) -> Any:
    """What the hook records for its leaf-only grant of /dev/nvidiactl."""
    from cgdev.ops import entitlements

    return entitlements.Entitlement(
        cgroup=cgroup, container_id=container_id, target=container_id or cgroup, type="c", major=195,
        minor=255, granted="rw", revoked="", change="grant", status="done", when=entitlements.now(),
        why="bench: the hook's grant",
    )  # fmt: skip


def record_entitlements(cgroups: list[tuple[str, str | None]]) -> None:
    from cgdev.ops import entitlements

    def add(entries: dict[Any, Any]) -> None:
        for cgroup, container_id in cgroups:
            e = entitlement(cgroup, container_id)
            entries[e.key] = e

    entitlements.update(add)


def replace_runtime_program(cgroup_dir: str) -> None:
    """What a runtime ``update`` or another hook does, unannounced: replace the non-systemd program
    on the container's cgroup (atomically) with one that allows every device but /dev/nvidiactl."""
    from cgdev.adapters import bpf
    from cgdev.core.compile import compile_policy
    from cgdev.core.isa import encode
    from cgdev.core.model import Rule
    from cgdev.core.semantics import policy_of

    policy = policy_of([Rule(True, "a", None, None, 7), Rule(False, "c", 195, 255, 7)])
    with bpf.open_cgroup(cgroup_dir) as cg:
        for prog_id in bpf.prog_query(cg).ids:
            with bpf.prog_fd_by_id(prog_id) as old:
                if bpf.prog_info(old).name == "sd_devices":
                    continue
                with bpf.prog_load(encode(compile_policy(policy)), name="bench_update") as new:
                    bpf.prog_attach(cg, new, replace=old)
                return
    raise SystemExit(f"no runtime program on {cgroup_dir} to replace")


def reaction(rounds: int, interval: float) -> list[str]:
    from cgdev.adapters import cgroupfs
    from cgdev.adapters.systemd_client import SystemdClient
    from cgdev.lab import containers, install, presets, scenario
    from cgdev.lab.instance import require_lab

    lab = require_lab()  # never started or stopped here
    runtimes = install.installed_runtimes()
    fs = f"/proc/{lab.pid1}/root"
    systemd_root = "/" + os.path.relpath(str(lab.cgroup_root), cgroupfs.cgroup2_mount())
    roots = [f"{fs}/run/{rt}" for rt in ("crun", "runc") if os.path.isdir(f"{fs}/run/{rt}")]
    options = [*(a for r in roots for a in ("--runtime-root", r)), "--bus", lab.bus_address,
               "--systemd-root", systemd_root, "--systemd-fs-root", fs]  # fmt: skip
    lines = []
    for preset_name in PRESETS:
        preset = presets.get(preset_name)
        reason = scenario.skip_reason(preset, runtimes)
        if reason:
            lines.append(f"| {preset_name} | not measured: {reason} |||||")
            continue
        name = f"watch-bench-{preset_name}"
        rt = containers.runtime_named(preset.runtime, runtimes)
        container = containers.start_container(lab, name, rt, preset.driver, scenario.preset_config(preset),
                                               preset=preset.name).container  # fmt: skip
        state = tempfile.mkdtemp(prefix="cgdev-bench-watch-")
        os.environ["CGDEV_STATE_DIR"] = state
        try:
            scenario.apply_step(lab, "hook", container)
            scope = container.scope
            assert scope is not None
            cgroup = systemd_root.rstrip("/") + container.cgroup
            record_entitlements([(cgroup, container.id)])
            host_cgroup = str(lab.cgroup_root) + container.cgroup
            with open(os.path.join(host_cgroup, "cgroup.procs")) as fh:
                host_pid = int(fh.read().split()[0])
            dropin = f"{fs}/run/systemd/transient/{scope}.d/50-DeviceAllow.conf"
            with SystemdClient(lab.bus_address) as client:
                original = client.unit_properties(scope).device_allow
                argv = ["--repair", "--repair-limit", "1000000/1", "--interval", str(interval),
                        "--only", container.id, *options]  # fmt: skip
                w = Watcher(argv, state)
                w.next("bus-connected")  # (a full scan follows it: the device is looked at)
                w.next("full-scan")

                def reload_round(dropin: str = dropin) -> None:
                    with open(dropin) as fh:
                        kept = [line for line in fh if "195:255" not in line]
                    with open(dropin, "w") as fh:
                        fh.writelines(kept)
                    client.reload()

                def set_property_round(scope: str = scope, original: Any = original) -> None:
                    client.set_unit_property_list(scope, [("DeviceAllow", []),
                                                          ("DeviceAllow", [list(p) for p in original]),
                                                          ("DevicePolicy", "strict")])  # fmt: skip

                def leaf_round(cgroup_dir: str = host_cgroup) -> None:
                    replace_runtime_program(cgroup_dir)

                first = True
                rounds_of = (("daemon-reload", reload_round), ("set-property", set_property_round),
                             ("leaf program replaced", leaf_round))  # fmt: skip
                for trigger, action in rounds_of:
                    reactions: list[float] = []
                    with probing(host_cgroup, f"/proc/{host_pid}/root/dev/nvidiactl") as windows:
                        if first:  # the hook's grant is not durable yet: the first reload takes it
                            # (unless another user of the shared lab reloaded before: then the
                            # watcher's first look restored it already)
                            if not any(e["event"] == "restored" for e in w.seen):
                                client.reload()
                                w.next("restored")
                            first = False
                        for _ in range(rounds):
                            if trigger == "daemon-reload" and not os.path.exists(dropin):
                                raise SystemExit(f"no DeviceAllow drop-in at {dropin}")
                            action()
                            reactions.append(w.next("restored", timeout=30)["reaction_s"])
                        time.sleep(0.05)
                    ms = [1000 * x for x in windows]
                    rx = [1000 * x for x in reactions]
                    lines.append(f"| {preset_name} | {trigger} | {len(rx)} | {len(ms)} | "
                                 f"{statistics.median(ms):.1f} / {pct(ms, 0.99):.1f} | "
                                 f"{statistics.median(rx):.1f} / {pct(rx, 0.99):.1f} |")  # fmt: skip
                status = w.stop()
                if status != 0:
                    raise SystemExit(f"the watcher exited with status {status} on SIGTERM")
        finally:
            containers.delete_container(lab, name)
    return lines


# -- scale -----------------------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scale(size: int, idle: float) -> str:
    from cgdev.adapters import bpf, cgroupfs
    from cgdev.adapters.scratch_cgroup import detach_and_remove_tree
    from cgdev.core.compile import compile_policy
    from cgdev.core.isa import encode
    from cgdev.core.model import Rule
    from cgdev.core.semantics import policy_of

    mount = cgroupfs.cgroup2_mount()
    root = os.path.join(mount, f"cgdev-bench-watch-{os.getpid()}")
    state = tempfile.mkdtemp(prefix="cgdev-bench-watch-")
    os.environ["CGDEV_STATE_DIR"] = state
    policy = policy_of([Rule(True, "c", 1, 3, 6), Rule(True, "c", 195, 255, 6)])
    os.mkdir(root)
    try:
        with bpf.prog_load(encode(compile_policy(policy)), name="bench_watch") as prog:
            names = []
            for i in range(size):
                path = os.path.join(root, f"c{i}")
                os.mkdir(path)
                with bpf.open_cgroup(path) as fd:
                    bpf.prog_attach(fd, prog)
                names.append(cgroupfs.relative(path, mount))

        record_entitlements([(cgroup, None) for cgroup in names])
        # discovery walks systemd's root for engine-named cgroups: keep it to the bench's own tree
        w = Watcher(
            ["--no-systemd", "--interval", "2", "--systemd-root", cgroupfs.relative(root, mount)], state
        )
        try:
            cold = w.next("full-scan", timeout=600)
            cpu_line = ""
            if idle > 0:
                time.sleep(2)
                before, start = _proc_cpu_s(w.proc.pid), time.monotonic()
                time.sleep(idle)
                used = _proc_cpu_s(w.proc.pid) - before
                took = time.monotonic() - start
                cpu_line = f"{100 * used / took:.2f} % of one core over {took:.0f} s"
            w.proc.send_signal(signal.SIGHUP)  # a full scan now, with everything lifted already
            warm = w.next("full-scan", timeout=600)
            rss = _rss_mb(w.proc.pid)
        finally:
            status = w.stop()
        if cold["containers"] != size:
            raise SystemExit(f"watched {cold['containers']} cgroups, made {size}")
        return (f"| {size} | {1000 * cold['seconds']:.0f} | {1000 * warm['seconds']:.0f} | "
                f"{cpu_line or 'not measured'} | {rss:.0f} | {status} |")  # fmt: skip
    finally:
        detach_and_remove_tree(root)


def churn(seconds: float, rate: float, lifetime: float) -> str:
    """Containers (cgroups with a device program and an entitlement) appearing and disappearing at
    ``rate`` per second, each living ``lifetime`` seconds, for ``seconds``: the watcher must pick
    each up (added), drop it (removed, its entitlement dropped) and stay healthy."""
    from cgdev.adapters import bpf, cgroupfs
    from cgdev.adapters.scratch_cgroup import detach_and_remove_tree
    from cgdev.core.compile import compile_policy
    from cgdev.core.isa import encode
    from cgdev.core.model import Rule
    from cgdev.core.semantics import policy_of
    from cgdev.ops import entitlements

    mount = cgroupfs.cgroup2_mount()
    root = os.path.join(mount, f"cgdev-bench-churn-{os.getpid()}")
    state = tempfile.mkdtemp(prefix="cgdev-bench-watch-")
    os.environ["CGDEV_STATE_DIR"] = state
    os.mkdir(root)
    policy = policy_of([Rule(True, "c", 1, 3, 6)])
    w = Watcher(
        ["--no-systemd", "--interval", "0.5", "--systemd-root", cgroupfs.relative(root, mount)], state
    )
    events: list[dict[str, Any]] = []
    try:
        w.next("full-scan")
        live: list[tuple[float, str]] = []
        made = 0
        start = time.monotonic()
        with bpf.prog_load(encode(compile_policy(policy)), name="bench_churn") as prog:
            while time.monotonic() - start < seconds:
                now = time.monotonic()
                path = os.path.join(root, f"c{made}")
                os.mkdir(path)
                with bpf.open_cgroup(path) as fd:
                    bpf.prog_attach(fd, prog)
                record_entitlements([(cgroupfs.relative(path, mount), None)])
                live.append((now, path))
                made += 1
                while live and now - live[0][0] >= lifetime:
                    detach_and_remove_tree(live.pop(0)[1])
                time.sleep(max(0.0, start + made / rate - time.monotonic()))
            for _, path in live:
                detach_and_remove_tree(path)
        time.sleep(3)  # a few polls: the last ones removed
        left = len(entitlements.read())
        rss = _rss_mb(w.proc.pid)
        cpu = _proc_cpu_s(w.proc.pid)
    finally:
        status = w.stop()
        while (event := w.events.get(timeout=10)) is not None:
            events.append(event)
        detach_and_remove_tree(root)
    added = sum(e["event"] == "added" for e in events)
    removed = sum(e["event"] == "removed" for e in events)
    return (f"{made} cgroups made at {rate:g}/s over {seconds:g} s (each living {lifetime:g} s), "
            f"`--interval 0.5`: {added} added and {removed} removed events after the start "
            f"(queued ones included), {left} entitlements left, RSS {rss:.0f} MB, CPU {cpu:.1f} s, "
            f"exit {status} on SIGTERM.")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="rounds per trigger (default 100)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle CPU window at 500 cgroups (s)")
    parser.add_argument("--sizes", default="500,5000", help="cgroup counts for the scan (default 500,5000)")
    parser.add_argument("--interval", type=float, default=0.25,
                        help="the watcher's --interval in the reaction runs (default 0.25)")  # fmt: skip
    parser.add_argument("--part", default="all", choices=("reaction", "scale", "churn", "all"))
    parser.add_argument("--churn", type=float, default=60.0, help="churn run length (s)")
    args = parser.parse_args()
    anchor = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], env=ENV), 5)
    print("## cgdev watch (issue 10)\n")
    print(f"Anchor: `python3 -c pass` {anchor:.1f} ms.\n")
    if args.part in ("reaction", "all"):
        rows = reaction(args.rounds, args.interval)
        print("Denied window (a probe loop in the container's cgroup timestamps EPERM) and the watcher's "
              "reaction (signal arrived -> restored, verified), ms, p50 / p99; systemd 252, "
              f"`cgdev watch --repair --interval {args.interval:g}` (nothing announces a replaced program: "
              "the poll alone sees it):\n")  # fmt: skip
        print("| preset | trigger | rounds | denied runs | denied window p50 / p99 | reaction p50 / p99 |")
        print("|---|---|---:|---:|---:|---:|")
        print("\n".join(rows) + "\n")
    if args.part in ("scale", "all"):
        print("Scale (scratch cgroups with one device program and one entitlement each, --no-systemd, "
              "--interval 2):\n")  # fmt: skip
        print("| cgroups | first full scan ms | later full scan ms | idle CPU | RSS MB | exit on SIGTERM |")
        print("|---:|---:|---:|---|---:|---:|")
        for size in (int(s) for s in args.sizes.split(",")):
            print(scale(size, args.idle if size == 500 else 0), flush=True)
    if args.part in ("churn", "all"):
        print("\nChurn: " + churn(args.churn, 10.0, 1.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
