"""Benchmarks of the stack labs: ``python bench/bench_stacks.py [--stacks sid trixie] [--restart S ...]``.

Why a script of its own: the stacks' costs (a debootstrap root, a lab per suite) and their
runtimes' programs are what issue 11 adds, and they must be measured without touching a lab other
work depends on.  So:

- roots: the first build's seconds come from each cached root's stamp (never rebuilt here: the
  cache is what CI relies on), the cached check (``ensure_root`` on a stamped root) is timed;
- labs: a stack whose lab runs is only asked (``up`` when already running) and its scenarios run
  on it; a stack named in ``--restart`` that is down is brought up from its cached root, measured,
  and brought down again (left as found);
- programs: on the first running stack with crun >= 1.23, containers with the sets (a) and (b) of
  ``bench_compile.py`` as ``linux.resources.devices`` (systemd driver: crun's pinned BPFProgram,
  runc's scope program) give the programs the real crun and runc attach; they are checked byte for
  byte against cgdev's shapes and then measured in the kernel beside cgdev's compiled program,
  with ``bench_compile``'s anchors in the same run.  Needs root.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench_compile import OCI_DEFAULT, SETS, anchors, executed, kernel_ns, kernel_trace, realistic_trace
from cgdev.core.compile import compile_policy
from cgdev.core.isa import Insn, decode
from cgdev.core.model import Rule, access_to_str
from cgdev.core.semantics import policy_of
from cgdev.core.shapes import shape_program
from cgdev.lab import bundle, containers, control, instance, presets, roots, scenario
from cgdev.lab.paths import Stack, using_stack
from timing import median_ms


def _seconds(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def root_rows(stacks: list[str]) -> list[str]:
    rows = []
    for suite in stacks:
        root = Stack(suite).root_dir
        stamp = None if root is None else roots.read_stamp(root)
        if root is None or stamp is None:
            rows.append(f"| {suite} | not built | - | - |")
            continue
        cached = median_ms(lambda s=suite: roots.ensure_root(s, 60, lambda _m: None), runs=5)
        size = subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True).stdout.split()[0]
        rows.append(
            f"| {suite} | {stamp.seconds:.1f} s (stamp, {stamp.built}) | {cached:.1f} ms | {size} MB |"
        )
    return rows


def lab_rows(stack: str, restart: bool, repeat: int) -> tuple[list[str], dict[str, Any] | None]:
    """``up``/``down`` times (only when ``restart`` and down), scenario times per preset."""
    rows: list[str] = []
    with using_stack(stack):
        running = instance.find_lab() is not None
        if not running and not restart:
            return [f"| {stack} | not running (not restarted: name it in --restart) | |"], None
        if not running:
            ups, downs = [], []
            for _ in range(repeat):
                ups.append(_seconds(lambda: control.up(timeout=120)))
                downs.append(_seconds(control.down))
            rows.append(f"| {stack} | up (root cached, lab down) | {statistics.median(ups):.3f} s |")
            rows.append(f"| {stack} | down | {statistics.median(downs):.3f} s |")
            control.up(timeout=120)
        report = control.up(timeout=120)
        already = median_ms(lambda: control.up(timeout=120), runs=repeat)
        rows.append(f"| {stack} | up (already running) | {already / 1000:.3f} s |")
        lab = instance.require_lab()
        total = 0.0
        ran = 0
        for preset in presets.PRESETS.values():
            result = scenario.run_scenario(lab, preset, report.runtimes)
            if result.skipped:
                continue
            ran += 1
            total += result.seconds
            verdict = "ok" if result.passed else "MISMATCH"
            rows.append(f"| {stack} | scenario {preset.name} ({verdict}) | {result.seconds:.3f} s |")
        rows.append(f"| {stack} | scenario all ({ran} presets run) | {total:.3f} s |")
        info = {"runtimes": report.runtimes, "systemd": report.systemd_version}
        if not running:
            control.down()
        return rows, info


def _oci_devices(rules: list[Rule]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        entry: dict[str, Any] = {
            "allow": rule.allow,
            "type": str(rule.type),
            "access": access_to_str(rule.access),
        }
        if rule.major is not None:
            entry["major"] = rule.major
        if rule.minor is not None:
            entry["minor"] = rule.minor
        out.append(entry)
    return out


def real_program(stack: str, rt: Any, rules: list[Rule], tag: str) -> tuple[Insn, ...]:
    """What the stack's ``runtime`` attaches for ``rules`` under the systemd driver (crun >= 1.23:
    its pinned BPFProgram on the scope; runc: its program on the scope)."""
    from cgdev.ops.inspect import HostView, systemd_layers

    with using_stack(stack):
        lab = instance.require_lab()
        config = bundle.base_config(bundle.ensure_rootfs())
        config["linux"]["resources"]["devices"] = _oci_devices(rules)
        name = f"bench-{rt.family}-{tag}"
        started = containers.start_container(lab, name, rt, "systemd", config).container
        try:
            layers = systemd_layers(HostView.for_ns_pid(lab.pid1), started.cgroup)
            found = [p.xlated for layer in layers for p in layer.programs if p.name != "sd_devices"]
        finally:
            containers.delete_container(lab, name)
    if len(found) != 1:
        raise SystemExit(f"{rt.family} on {stack}: expected one runtime program, found {len(found)}")
    return decode(found[0])


def program_section(stack: str, info: dict[str, Any]) -> None:
    runtimes = info["runtimes"]
    crun_v, runc_v = runtimes["crun"].version, runtimes["runc"].version
    trace = realistic_trace()
    ktrace = kernel_trace(trace)
    print(f"### Programs on {stack} (crun {crun_v}, runc {runc_v}, systemd {info['systemd']})\n")
    print("The real programs, read from containers started on the stack with the set as")
    print("`linux.resources.devices` (systemd driver), measured in one scratch cgroup beside cgdev's;")
    print(f"the trace is bench_compile's ({len(ktrace)} real requests).\n")
    for set_name, rule_list in SETS.items():
        tag = "a" if rule_list is OCI_DEFAULT else "b"
        progs: dict[str, tuple[Insn, ...]] = {"cgdev": compile_policy(policy_of(rule_list))}
        same: dict[str, bool] = {}
        for runtime, version in (("crun", crun_v), ("runc", runc_v)):
            real = real_program(stack, runtimes[runtime], rule_list, tag)
            progs[f"{runtime} {version} (real)"] = real
            same[f"{runtime} {version} (real)"] = real == shape_program(rule_list, runtime)
        in_kernel = kernel_ns(progs, ktrace)
        print(f"#### Set {set_name}\n")
        print("| program | insns | = cgdev shape | executed mean | worst | kernel ns/check | vs cgdev |")
        print("|---|---:|---|---:|---:|---:|---:|")
        ours = in_kernel["cgdev"]
        for name, program in progs.items():
            mean, worst = executed(program, trace)
            ns = in_kernel[name]
            shape = "—" if name == "cgdev" else ("yes" if same[name] else "NO")
            ratio = "—" if name == "cgdev" else f"{ns / ours:.2f}x"
            print(f"| {name} | {len(program)} | {shape} | {mean:.1f} | {worst} | {ns:.1f} | {ratio} |")
        print()
    print("#### Anchors (same run)\n")
    rows = anchors(compile_policy(policy_of(SETS["(b) (a) + 8 GPUs"])))
    print("| what | ms |")
    print("|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", nargs="+", default=["sid", "trixie"])
    parser.add_argument("--restart", nargs="*", default=[], help="stacks that may be brought up and down")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("## Stacks (`bench/bench_stacks.py`)\n")
    print("### Roots\n")
    print("| suite | first build | cached check (median of 5) | size |")
    print("|---|---:|---:|---:|")
    for row in root_rows(args.stacks):
        print(row)
    print("\n### Labs\n")
    print("| stack | what | seconds |")
    print("|---|---|---:|")
    infos: dict[str, dict[str, Any]] = {}
    for stack in args.stacks:
        rows, info = lab_rows(stack, stack in args.restart, args.repeat)
        for row in rows:
            print(row)
        if info is not None:
            infos[stack] = info
    print()
    for stack, info in infos.items():
        if info["runtimes"]["crun"].version_tuple >= (1, 23):
            program_section(stack, info)
            break
    else:
        print("(programs: no running stack with crun >= 1.23)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
