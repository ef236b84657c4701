"""The acceptance test: the real kernel agrees with cgdev on >= 200 generated rule lists.

For every list and every semantics (ordered, runc, crun, systemd, v1) the policy is compiled by
cgdev's compiler and, for runc/crun/systemd, also reproduced in that runtime's own shape; each
program is loaded (the verifier must accept it), attached to a scratch cgroup, and >= 100 requests
per list are made for real (mknod / open in a child in that cgroup).  The kernel's verdicts must
equal the policy's, the interpreter's must equal the kernel's, and the lifter must give back the
policy.  Nothing is mocked: this skips only where the kernel cannot be asked (not root, no
cgroup2, no bpf), through the shared ``root_bpf`` fixture.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core import interp
from cgdev.core.compile import compile_policy
from cgdev.core.isa import Insn, encode
from cgdev.core.lift import lift
from cgdev.core.model import (
    ACC_M,
    MKNOD_MAJOR_MAX,
    MKNOD_MINOR_MAX,
    REQUEST_MASKS,
    U32_MAX,
    Request,
    Rule,
)
from cgdev.core.policy import Policy
from cgdev.core.semantics import policy_of
from cgdev.core.shapes import shape_program
from cgdev.errors import InputError

pytestmark = [pytest.mark.root, pytest.mark.slow]

LISTS = 200
REQUESTS_PER_LIST = 120
SEMANTICS = ("ordered", "runc", "crun", "crun-1.8", "systemd", "v1")
SHAPED = ("runc", "crun", "crun-1.8", "systemd")


class Pools:
    """Majors and minors the kernel can be asked about, and which of them are safe to open."""

    def __init__(self) -> None:
        from cgdev.adapters.device_safety import OPEN_ALLOWLIST, driverless_majors

        self.driverless = {t: driverless_majors(t) for t in ("b", "c")}
        self._free = {t: set(majors) for t, majors in self.driverless.items()}
        self._allowlist = OPEN_ALLOWLIST
        # a few driverless majors, so that rules land where opens may be probed
        self.rule_majors = sorted({*self.driverless["c"][1:4], *self.driverless["b"][1:3], 1, 5, 136, 4095})

    def safe_to_open(self, request: Request) -> bool:
        key = (request.type, request.major, request.minor)
        return key in self._allowlist or request.major in self._free[request.type]


_pools: Pools | None = None


def pools() -> Pools:
    global _pools
    if _pools is None:
        _pools = Pools()
    return _pools


def kernel_rules(pool: Pools) -> st.SearchStrategy[Rule]:
    majors = st.one_of(
        st.none(),
        st.sampled_from(pool.rule_majors),
        st.integers(0, MKNOD_MAJOR_MAX),
        st.just(U32_MAX),
    )
    minors = st.one_of(
        st.none(),
        st.sampled_from((0, 1, 2, 3, 5, 7, 8, 9, 254, 255, MKNOD_MINOR_MAX)),
        st.integers(0, MKNOD_MINOR_MAX),
    )
    return st.builds(Rule, st.booleans(), st.sampled_from(("a", "b", "c")), majors, minors, st.integers(0, 7))


def make_requests(rules: Sequence[Rule], rng: random.Random, pool: Pools) -> list[Request]:
    """Requests on, next to and away from the rules' constants; opens only where safe."""
    majors = {rng.randrange(MKNOD_MAJOR_MAX + 1) for _ in range(6)} | set(pool.rule_majors)
    minors = {rng.randrange(MKNOD_MINOR_MAX + 1) for _ in range(6)} | {1}
    for rule in rules:
        for value, bag, top in ((rule.major, majors, MKNOD_MAJOR_MAX), (rule.minor, minors, MKNOD_MINOR_MAX)):
            if value is not None:
                bag.update(v for v in (value - 1, value, value + 1) if 0 <= v <= top)
    major_list, minor_list = sorted(majors), sorted(minors)
    out = []
    while len(out) < REQUESTS_PER_LIST:
        t = rng.choice(("b", "c"))
        request = Request(t, rng.choice(major_list), rng.choice(minor_list), rng.choice(REQUEST_MASKS))
        if request.major == 0 and request.minor == 0:
            continue  # the kernel never checks rdev 0
        if request.access != ACC_M and not pool.safe_to_open(request):
            if rng.random() < 0.5:
                request = Request(t, request.major, request.minor, ACC_M)
            else:
                request = Request(t, rng.choice(pool.driverless[t][1:]), request.minor, request.access)
        out.append(request)
    return out


def rules_for(semantics: str, rules: list[Rule]) -> list[Rule]:
    """The list as that runtime would accept it: runc refuses empty access, systemd has no deny."""
    if semantics == "runc":
        return [r for r in rules if r.access]
    if semantics == "systemd":
        return [r for r in rules if r.allow]
    return rules


def programs_for(semantics: str, rules: list[Rule], policy: Policy) -> list[tuple[str, tuple[Insn, ...]]]:
    out = [("cgdev", compile_policy(policy))]
    if semantics in SHAPED:
        out.append((semantics, shape_program(rules, semantics)))
    return out


def test_kernel_agrees_with_compiler_shapes_interpreter_and_lifter(scratch_cgroup: object) -> None:
    from cgdev.adapters.scratch_cgroup import ScratchCgroup

    scratch: ScratchCgroup = scratch_cgroup  # type: ignore[assignment]
    pool = pools()
    stats: Counter[str] = Counter()

    @settings(
        max_examples=LISTS,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(kernel_rules(pool), max_size=50), st.integers(0, 2**32))
    def one_list(rules: list[Rule], seed: int) -> None:
        stats["lists"] += 1
        requests = make_requests(rules, random.Random(seed), pool)
        stats["requests"] += len(requests)
        for semantics in SEMANTICS:
            chosen = rules_for(semantics, rules)
            try:
                policy = policy_of(chosen, semantics)
            except InputError:
                stats[f"refused by {semantics}"] += 1  # runc: hole in a wildcard
                continue
            for name, program in programs_for(semantics, chosen, policy):
                stats[f"programs {name}"] += 1
                mismatches = check_program(f"{semantics}/{name}", chosen, program, policy, requests)
                # per example, so that hypothesis shrinks to the list that really fails
                assert not mismatches, "\n".join(mismatches[:5])

    def check_program(
        label: str, rules: list[Rule], program: tuple[Insn, ...], policy: Policy, requests: list[Request]
    ) -> list[str]:
        mismatches: list[str] = []
        if program:
            fd = scratch.attach(encode(program), name="cgdev_diff")
            try:
                kernel = scratch.kernel_verdicts(requests)
            finally:
                scratch.detach(fd)
        else:
            kernel = scratch.kernel_verdicts(requests)  # no program: the shape attaches nothing
        stats["probes"] += len(requests)
        for request, verdict in zip(requests, kernel, strict=True):
            if verdict != policy.allows(request):
                mismatches.append(
                    f"{label}: kernel {verdict}, policy {not verdict} for {request}; rules {rules}"
                )
            if program:
                ran = interp.run(program, request)
                if bool(ran.verdict) != verdict:
                    mismatches.append(f"{label}: interpreter {ran.verdict}, kernel {verdict} for {request}")
        if program:
            lifted = lift(program)
            if lifted.policy != policy:
                mismatches.append(f"{label}: lift != policy ({lifted.opaque or 'differs'}); rules {rules}")
            elif not label.endswith("/cgdev"):  # a runtime's chain: its printed rules, first match deciding
                if not lifted.reads_as_rules:
                    mismatches.append(f"{label}: lifted rules do not read as a chain; rules {rules}")
                for request, verdict in zip(requests, kernel, strict=True):
                    if lifted.reads_as_rules and lifted.first_match(request).allow != verdict:
                        mismatches.append(f"{label}: rule {lifted.first_match(request)} misreads {request}")
        return mismatches

    one_list()
    assert stats["lists"] >= LISTS, stats
    assert stats["requests"] >= LISTS * 100
    for name in ("cgdev", *SHAPED):
        assert stats[f"programs {name}"] >= LISTS // 2, stats
    print(dict(stats))
