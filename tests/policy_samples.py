"""Rule lists and probe points shared by the compiler, shape and lifter tests: the benchmark sets
(bench/bench_compile.py measures the same lists) and the requests at the edges of a policy's boxes."""

from __future__ import annotations

from collections.abc import Iterator

from cgdev.core.model import REQUEST_MASKS, U32_MAX, Request, Rule
from cgdev.core.policy import Policy

OCI_DEFAULT = [
    Rule(False, "a", None, None, 7),
    Rule(True, "c", None, None, 1),
    Rule(True, "b", None, None, 1),
    *(Rule(True, "c", major, minor, 7) for major, minor in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)]),
    *(Rule(True, "c", 5, minor, 7) for minor in (0, 1, 2)),
    Rule(True, "c", 136, None, 7),
]
GPUS = [
    *(Rule(True, "c", 195, minor, 6) for minor in range(8)),
    Rule(True, "c", 195, 254, 6),
    Rule(True, "c", 195, 255, 6),
    Rule(True, "c", 508, 0, 6),
    Rule(True, "c", 508, 1, 6),
]


def probe_points(policy: Policy) -> Iterator[Request]:
    """Both ends of every constant box and their neighbours, for every request mask."""
    for t, mlo, mhi, nlo, nhi, _ms in policy.regions():
        for major in {mlo, mhi, max(mlo - 1, 0), min(mhi + 1, U32_MAX)}:
            for minor in {nlo, nhi, max(nlo - 1, 0), min(nhi + 1, U32_MAX)}:
                for mask in REQUEST_MASKS:
                    yield Request(t, major, minor, mask)
