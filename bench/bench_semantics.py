"""Benchmark: 10,000 rules -> Policy under every semantics, and Policy -> rules.

Run as ``python bench/bench_semantics.py``.  Prints milliseconds (best of 3) so regressions show;
the acceptance target is well under 0.5 s per conversion.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from cgdev.core.model import Rule
from cgdev.core.render import to_rules, to_systemd, to_v1_lines
from cgdev.core.semantics import policy_of


def _rules(n: int, seed: int, allow_only: bool, with_a: bool) -> list[Rule]:
    rng = random.Random(seed)
    types = "abc" if with_a else "bc"
    return [
        Rule(
            True if allow_only else rng.random() < 0.8,
            rng.choice(types),  # type: ignore[arg-type]
            rng.choice([None, *range(4000)]),
            rng.choice([None, *range(300)]),
            rng.randint(1, 7),
        )
        for _ in range(n)
    ]


def _best(fn: Callable[[], object], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    mixed = _rules(10_000, 1, allow_only=False, with_a=True)
    allows = _rules(10_000, 2, allow_only=True, with_a=False)
    for semantics, rule_list in (
        ("ordered", mixed),
        ("crun", mixed),
        ("v1", _rules(10_000, 3, allow_only=False, with_a=False)),
        ("runc", allows),
        ("systemd", allows),
    ):
        ms = _best(lambda s=semantics, r=rule_list: policy_of(r, s))
        size = policy_of(rule_list, semantics).size
        print(f"policy_of 10k rules ({semantics:8}): {ms:7.1f} ms  ({size} boxes)")
    policy = policy_of(allows, "ordered")
    for name, fn in (("to_rules", to_rules), ("to_v1_lines", to_v1_lines), ("to_systemd", to_systemd)):
        ms = _best(lambda f=fn: f(policy), rounds=1)
        print(f"{name:11} of that policy: {ms:7.1f} ms")


if __name__ == "__main__":
    main()
