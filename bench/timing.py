"""The one way the benchmarks time an action: the median of ``runs`` calls, in milliseconds, after
``warmup`` untimed calls.  A helper module, not a benchmark (``run.py`` runs ``bench_*.py`` only);
the scripts import it as a sibling, since ``python bench/bench_x.py`` puts bench/ on the path."""

from __future__ import annotations

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
