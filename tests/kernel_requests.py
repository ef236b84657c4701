"""Requests worth asking the kernel about a policy: on and next to every box it has, on the probe
nodes the lab uses, and on a few driverless majors; opens only where ``probe`` deems them safe."""

from __future__ import annotations

from cgdev.adapters.probe import driverless_majors, is_safe_to_open
from cgdev.core.model import MKNOD_MAJOR_MAX, MKNOD_MINOR_MAX, REQUEST_MASKS, Request
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
