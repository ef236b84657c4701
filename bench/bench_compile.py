"""Benchmark: cgdev's compiler against the programs runc 1.1.5, crun 1.21 and systemd 252 attach.

Run as ``python bench/bench_compile.py`` (root for the in-kernel columns; without root they are
reported as not measured).  Prints one Markdown section.  Everything is measured in this one run:

- size and executed instructions per request (interpreter; mean and worst over a realistic trace)
  for (a) the OCI default device set and (b) that set plus 8 GPUs and 2 more nvidia nodes;
- in-kernel ns per check: the four programs attached together to one scratch cgroup (every request
  runs each of them), bpf stats on, a trace of real mknod/open requests made from a child,
  run_time_ns / run_cnt per program, median over repeats with the attach order rotated;
- anchors from the same run: ``python3 -c pass``, ``bpftool prog show id N``, ``bpftool prog dump
  xlated id N``, and ``cgdev compile`` as a command, all wall time (median);
- compile and lift of a 10,000-rule list, and whether the kernel loads the result.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from cgdev.core import interp
from cgdev.core.compile import compile_policy
from cgdev.core.isa import Insn, encode
from cgdev.core.model import ACC_M, ACC_R, ACC_W, Request, Rule
from cgdev.core.semantics import policy_of
from cgdev.core.shapes import shape_program

KERNEL_ROUNDS = 20
KERNEL_REPEATS = 8
WALL_ROUNDS = 15

OCI_DEFAULT: list[Rule] = [
    Rule(False, "a", None, None, 7),
    Rule(True, "c", None, None, ACC_M),
    Rule(True, "b", None, None, ACC_M),
    *(Rule(True, "c", 1, minor, 7) for minor in (3, 5, 7, 8, 9)),
    *(Rule(True, "c", 5, minor, 7) for minor in (0, 1, 2)),
    Rule(True, "c", 136, None, 7),
]
GPUS: list[Rule] = [
    *(Rule(True, "c", 195, minor, 6) for minor in (*range(8), 254, 255)),
    Rule(True, "c", 508, 0, 6),
    Rule(True, "c", 508, 1, 6),
]
SETS = {"(a) OCI default": OCI_DEFAULT, "(b) (a) + 8 GPUs": OCI_DEFAULT + GPUS}


def realistic_trace(seed: int = 1) -> list[Request]:
    """What a GPU container does: opens of its devices, some mknods, some denials, some noise."""
    rng = random.Random(seed)
    devices = [
        *(("c", 1, m) for m in (3, 5, 7, 8, 9)),
        *(("c", 5, m) for m in (0, 1, 2)),
        *(("c", 136, m) for m in range(4)),
        *(("c", 195, m) for m in (*range(8), 254, 255)),
        ("c", 508, 0),
        ("c", 508, 1),
    ]
    denied = [
        ("c", 10, 200),
        ("c", 4, 1),
        ("b", 8, 0),
        ("b", 7, 0),
        ("c", 195, 9),
        ("c", 226, 0),
        ("c", 13, 64),
    ]
    trace = []
    for t, major, minor in devices:
        trace.extend(Request(t, major, minor, mask) for mask in (ACC_R, ACC_W, ACC_R | ACC_W))
        trace.append(Request(t, major, minor, ACC_M))
    for t, major, minor in denied:
        trace.extend(Request(t, major, minor, mask) for mask in (ACC_M, ACC_R | ACC_W))
    for _ in range(40):
        trace.append(
            Request(rng.choice("bc"), rng.randrange(4096), rng.randrange(1 << 20), rng.choice((1, 2, 4, 6)))
        )  # type: ignore[arg-type]
    return trace


def programs(rule_list: list[Rule]) -> dict[str, tuple[Insn, ...]]:
    return {
        "cgdev": compile_policy(policy_of(rule_list)),
        **{shape: shape_program(rule_list, shape) for shape in ("runc", "crun", "systemd")},
    }


def executed(program: tuple[Insn, ...], trace: Sequence[Request]) -> tuple[float, int]:
    interp.check(program)
    counts = [interp.run(program, r, checked=True).executed for r in trace]
    return statistics.fmean(counts), max(counts)


# -- the kernel --------------------------------------------------------------------------------


def kernel_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    try:
        from cgdev.adapters import cgroupfs

        cgroupfs.cgroup2_mount()
    except Exception as exc:  # report, do not crash the whole benchmark
        return str(exc)
    return None


def kernel_trace(trace: Sequence[Request]) -> list[Request]:
    """The trace made safe for real syscalls: opens only on driverless or allowlisted nodes."""
    from cgdev.adapters.device_safety import is_safe_to_open

    out = []
    for r in trace:
        if r.major == 0 and r.minor == 0:
            continue
        out.append(r if r.access == ACC_M or is_safe_to_open(r) else Request(r.type, r.major, r.minor, ACC_M))
    return out


def kernel_ns(progs: dict[str, tuple[Insn, ...]], trace: Sequence[Request]) -> dict[str, float]:
    """Median in-kernel ns per run of each program, all measured under the very same requests.

    All programs are attached together (ALLOW_MULTI) to one scratch cgroup, so every request runs
    each of them once, back to back, in the same syscall: noise from other load hits them all
    alike.  The attach order is rotated between repeats and the median over repeats is kept.
    """
    from cgdev.adapters import bpf
    from cgdev.adapters.scratch_cgroup import ScratchCgroup

    names = [n for n, p in progs.items() if p]
    samples: dict[str, list[float]] = {n: [] for n in names}
    for repeat in range(KERNEL_REPEATS):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        with ScratchCgroup() as scratch, bpf.bpf_stats():
            fds = {n: scratch.attach(encode(progs[n]), name="cgdev_bench") for n in order}
            for _ in range(KERNEL_ROUNDS):
                scratch.kernel_verdicts(trace)
            for n, fd in fds.items():
                info = bpf.prog_info(fd)
                samples[n].append(info.run_time_ns / max(info.run_cnt, 1))
    return {n: statistics.median(v) for n, v in samples.items()}


# -- wall-time anchors ---------------------------------------------------------------------------


def median_wall(fn: Callable[[], object], rounds: int = WALL_ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run_quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def anchors(program: tuple[Insn, ...]) -> list[tuple[str, float]]:
    cgdev_cli = [sys.executable, "-m", "cgdev", "compile", *(str(r) for r in OCI_DEFAULT + GPUS)]
    rows = [
        ("python3 -c pass", median_wall(lambda: run_quiet([sys.executable, "-c", "pass"]))),
        ("cgdev compile set (b) (CLI, whole process)", median_wall(lambda: run_quiet(cgdev_cli))),
        (
            "cgdev compile set (b) (in process)",
            median_wall(lambda: compile_policy(policy_of(OCI_DEFAULT + GPUS))),
        ),
    ]
    bpftool = shutil.which("bpftool")
    if bpftool and kernel_unavailable() is None:
        from cgdev.adapters import bpf

        with bpf.prog_load(encode(program), name="cgdev_anchor") as fd:
            prog_id = str(bpf.prog_info(fd).id)
            rows.append(
                (
                    "bpftool prog show id N",
                    median_wall(lambda: run_quiet([bpftool, "prog", "show", "id", prog_id])),
                )
            )
            dump = [bpftool, "prog", "dump", "xlated", "id", prog_id]
            rows.append(("bpftool prog dump xlated id N", median_wall(lambda: run_quiet(dump))))
    return rows


# -- 10,000 rules --------------------------------------------------------------------------------


def big_list(n: int = 10_000, seed: int = 7) -> list[Rule]:
    rng = random.Random(seed)
    return [
        Rule(
            rng.random() < 0.9,
            rng.choice("bc"),
            rng.randrange(4096),
            rng.randrange(1 << 20),
            rng.choice((2, 4, 6, 7)),
        )  # type: ignore[arg-type]
        for _ in range(n)
    ]


def big_rows() -> list[str]:
    from cgdev.core.lift import lift

    rules = big_list()
    policy = policy_of(rules)
    start = time.perf_counter()
    program = compile_policy(policy)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    lifted = lift(program)
    lift_s = time.perf_counter() - start
    accepted = "not tried (needs root)"
    if kernel_unavailable() is None:
        from cgdev.adapters import bpf
        from cgdev.errors import CgdevError

        try:
            with bpf.prog_load(encode(program), name="cgdev_big") as fd:
                accepted = f"yes (verifier processed {bpf.prog_info(fd).verified_insns} insns)"
        except CgdevError as exc:
            accepted = f"NO: {exc}"
    from cgdev.core.shapes import shape_program

    runc_chain = shape_program(rules, "runc")  # a chain: its lift also reads as a rule list
    start = time.perf_counter()
    chain_lifted = lift(runc_chain)
    chain_s = time.perf_counter() - start
    return [
        f"| rules | {len(rules)} |",
        f"| policy boxes | {policy.size} |",
        f"| program instructions | {len(program)} |",
        f"| compile | {compile_s * 1000:.0f} ms |",
        f"| lift | {lift_s * 1000:.0f} ms (round trip exact: {lifted.policy == policy}) |",
        f"| kernel loads it | {accepted} |",
        f"| lift of runc's shape for the same list ({len(runc_chain)} insns) | {chain_s * 1000:.0f} ms "
        f"(exact: {chain_lifted.policy == policy_of(rules, 'runc')}; reads as rules: "
        f"{chain_lifted.reads_as_rules}) |",
    ]


# -- report --------------------------------------------------------------------------------------


def main() -> int:
    trace = realistic_trace()
    skip = kernel_unavailable()
    ktrace = kernel_trace(trace) if skip is None else []
    print("## Compiler (`bench/bench_compile.py`)\n")
    print(
        f"Trace: {len(trace)} requests (opens r/w/rw and mknods of the allowed devices, "
        "denied devices, random);"
    )
    print(
        f"in kernel: all four programs attached together, {len(ktrace)} real requests x "
        f"{KERNEL_ROUNDS} rounds, median of {KERNEL_REPEATS} repeats with rotated attach order"
        + (f" (skipped: {skip})" if skip else "")
        + ".\n"
    )
    for set_name, rule_list in SETS.items():
        progs = programs(rule_list)
        measured: dict[str, tuple[int, float, int, float | None]] = {}
        in_kernel = kernel_ns(progs, ktrace) if skip is None else {}
        for name, program in progs.items():
            mean, worst = executed(program, trace)
            measured[name] = (len(program), mean, worst, in_kernel.get(name))
        print(f"### Set {set_name}\n")
        print(
            "| program | instructions | executed mean | executed worst | kernel ns/check "
            "| cgdev is faster by |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        ours_ns = measured["cgdev"][3]
        for name, (size, mean, worst, ns) in measured.items():
            ns_text = f"{ns:.1f}" if ns is not None else "n/a"
            ratio = f"{ns / ours_ns:.2f}x" if ns is not None and ours_ns else "n/a"
            shown = "—" if name == "cgdev" else ratio
            print(f"| {name} | {size} | {mean:.1f} | {worst} | {ns_text} | {shown} |")
        print()
    print(f"### Wall-time anchors (median of {WALL_ROUNDS}, same run)\n")
    rows = anchors(programs(OCI_DEFAULT + GPUS)["cgdev"])
    base = rows[0][1]
    print("| what | ms | vs. `python3 -c pass` |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms / base:.2f}x |")
    bpftool_dump = next((ms for name, ms in rows if name.startswith("bpftool prog dump")), None)
    if bpftool_dump:
        cli = rows[1][1]
        print(f"\n`cgdev compile` (CLI) / `bpftool prog dump xlated`: {cli / bpftool_dump:.2f}x\n")
    print("### 10,000 rules\n")
    print("| | |\n|---|---|")
    print("\n".join(big_rows()))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
