"""Requests worth asking the kernel: a fixed sample for a device set, or the points around every
box of a given policy.  Opens only where ``probe`` deems them safe (no driver is ever opened)."""

from __future__ import annotations

import random

from cgdev.adapters.device_safety import driverless_majors, is_safe_to_open
from cgdev.core.model import ACC_M, ACC_R, ACC_W, MKNOD_MAJOR_MAX, MKNOD_MINOR_MAX, REQUEST_MASKS, Request
from cgdev.core.policy import Policy

FIXED_POINTS = (
    ("c", 1, 3),
    ("c", 1, 5),
    ("c", 1, 7),
    ("c", 195, 255),
    ("b", 7, 0),
    ("c", 136, 2),
    ("c", 10, 200),
)


def requests_around(policy: Policy) -> list[Request]:
    points = {(t, major, minor) for t, major, _, minor, _, _ in policy.regions()}
    points |= {(t, major, m) for t in ("b", "c") for major in driverless_majors(t)[1:4] for m in (0, 7)}
    points |= set(FIXED_POINTS)
    out = []
    for t, major, minor in sorted(points):
        for M, m in ((major, minor), (major, minor + 1)):
            if not (0 < M <= MKNOD_MAJOR_MAX and 0 <= m <= MKNOD_MINOR_MAX):
                continue
            for mask in REQUEST_MASKS:
                request = Request(t, M, m, mask)  # type: ignore[arg-type]
                if mask == 1 or is_safe_to_open(request):
                    out.append(request)
    return out


def sample_requests(seed: int = 4) -> list[Request]:
    """>= 100 requests of both types and every mask, all safe to make (no driver is ever opened)."""
    rng = random.Random(seed)
    safe_open = [("c", 1, m) for m in (3, 5, 7, 8, 9)] + [("c", 5, 0)]
    for dev_type in ("c", "b"):
        majors = [m for m in driverless_majors(dev_type) if m]  # type: ignore[arg-type]  # rdev 0: never asked
        picked = sorted({majors[0], majors[-1], *rng.sample(majors, 4)})
        safe_open += [
            (dev_type, major, minor) for major in picked for minor in (0, rng.randrange(1, 1 << 20))
        ]
    if is_safe_to_open(Request("c", 195, 255, ACC_R | ACC_W)):
        safe_open += [("c", 195, 255), ("c", 195, 0)]
    requests = [Request(t, M, m, mask) for t, M, m in safe_open for mask in REQUEST_MASKS]  # type: ignore[arg-type]
    mknod_only = [
        ("c", 136, 0),
        ("c", 5, 1),
        ("c", 5, 2),
        ("c", 10, 200),
        ("c", 1, 1),
        ("b", 8, 0),
        ("b", 7, 0),
    ]
    requests += [Request(t, M, m, ACC_M) for t, M, m in mknod_only]  # type: ignore[arg-type]
    assert len(requests) >= 100
    return requests


def known_and_free_devices(rng: random.Random) -> list[Request]:
    """The devices runtimes and GPU hooks name, plus random driverless ones; every mask, safe only."""
    free_c, free_b = driverless_majors("c")[:40], driverless_majors("b")[:40]
    devices = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
               ("c", 5, 2), ("c", 136, 4), ("c", 10, 200), ("c", 195, 255), ("c", 195, 0), ("b", 8, 0),
               ("b", 1, 3), ("c", 508, 0)]  # fmt: skip
    devices += [("c", rng.choice(free_c), rng.randrange(1 << 20)) for _ in range(6)]
    devices += [("b", rng.choice(free_b), rng.randrange(1 << 20)) for _ in range(4)]
    out = []
    for t, major, minor in devices:
        for mask in REQUEST_MASKS:
            request = Request(t, major, minor, mask)  # type: ignore[arg-type]
            if mask == 1 or is_safe_to_open(request):
                out.append(request)
    return out
