"""The one way the benchmarks time an action: the median of ``runs`` calls, in milliseconds, after
``warmup`` untimed calls.  A helper module, not a benchmark (``run.py`` runs ``bench_*.py`` only);
the scripts import it as a sibling, since ``python bench/bench_x.py`` puts bench/ on the path."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable


def median_ms(action: Callable[[], object], runs: int, warmup: int = 0) -> float:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def cpu_ms() -> float:
    """CPU time (user + system) of this process and its waited-for children so far, in ms."""
    used = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        used += usage.ru_utime + usage.ru_stime
    return used * 1000


def median_wall_cpu_ms(action: Callable[[], object], runs: int, warmup: int = 0) -> tuple[float, float]:
    """The medians of wall and of CPU time (ours and our children's) of ``runs`` calls, in ms.

    On a loaded machine the wall time of a short process is mostly waiting for a core; its CPU
    time is what it costs, and compares across runs."""
    for _ in range(warmup):
        action()
    walls, cpus = [], []
    for _ in range(runs):
        cpu = cpu_ms()
        start = time.perf_counter()
        action()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append(cpu_ms() - cpu)
    return statistics.median(walls), statistics.median(cpus)
