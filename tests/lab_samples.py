"""Random device lists for comparing cgdev's shapes with what the real runtimes attach, on the host
stack's lab and on every other stack's (tests/lab/test_lab_shapes.py, test_lab_stacks.py)."""

from __future__ import annotations

import random
from typing import Any

LISTS_PER_RUNTIME = 12
MAJORS = (None, 1, 5, 7, 10, 136, 195, 254)
MINORS = (None, 0, 1, 3, 200, 255)


def random_devices(rng: random.Random) -> list[dict[str, Any]]:
    """A random ``linux.resources.devices`` list (deny-all first) for comparing shapes."""
    entries: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for _ in range(rng.randint(1, 8)):
        entry: dict[str, Any] = {
            "allow": rng.random() < 0.75,
            "type": rng.choices("abc", weights=(1, 3, 6))[0],  # runc resets on any a: keep it rare
            "access": "".join(c for c in "rwm" if rng.random() < 0.6) or "r",
        }
        major, minor = rng.choice(MAJORS), rng.choice(MINORS)
        if major is not None:
            entry["major"] = major
        if minor is not None:
            entry["minor"] = minor
        entries.append(entry)
    return entries
