"""The kernel probe (kernel_probe, device_safety, probe_nodes, scratch_cgroup): real verdicts from the
kernel, refusal of unsafe opens, no leftovers."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Sequence

import pytest

from cgdev.adapters import bpf, cgroupfs, device_safety, probe_nodes
from cgdev.adapters import scratch_cgroup as scratch_module
from cgdev.adapters.device_safety import driverless_majors, is_safe_to_open
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.adapters.scratch_cgroup import ScratchCgroup
from cgdev.core.model import ACC_M, ACC_R, ACC_W, MKNOD_MAJOR_MAX, MKNOD_MINOR_MAX, REQUEST_MASKS, Request
from cgdev.errors import NotFound
from fixtures_kernel import ALLOW_ALL, ALLOW_C_1_3_R, DENY_ALL, requires_root_bpf

ProbeFn = Callable[[bytes | None, Sequence[Request]], list[bool]]
RW = ACC_R | ACC_W


def _mixed_requests() -> list[Request]:
    free_c = driverless_majors("c")[7]
    free_b = driverless_majors("b")[7]
    requests = [Request("c", 1, 3, mask) for mask in REQUEST_MASKS]
    requests += [Request("c", free_c, 42, mask) for mask in REQUEST_MASKS]
    requests += [Request("b", free_b, 0, mask) for mask in REQUEST_MASKS]
    requests += [Request("c", 1, 5, ACC_R), Request("b", 8, 0, ACC_M), Request("c", 10, 130, ACC_M)]
    return requests


@requires_root_bpf
def test_no_program_allows_everything(probe: ProbeFn) -> None:
    requests = _mixed_requests()
    assert probe(None, requests) == [True] * len(requests)


@requires_root_bpf
def test_allow_all_and_deny_all(probe: ProbeFn) -> None:
    requests = _mixed_requests()
    assert probe(ALLOW_ALL, requests) == [True] * len(requests)
    assert probe(DENY_ALL, requests) == [False] * len(requests)


@requires_root_bpf
def test_allow_only_c_1_3_r(probe: ProbeFn) -> None:
    requests = _mixed_requests()
    expected = [r.type == "c" and (r.major, r.minor) == (1, 3) and r.access == ACC_R for r in requests]
    assert sum(expected) == 1
    assert probe(ALLOW_C_1_3_R, requests) == expected


@requires_root_bpf
def test_programs_on_the_path_are_anded(scratch_cgroup: ScratchCgroup) -> None:
    """A process in a child cgroup is judged by its own programs and its ancestors'."""
    scratch_cgroup.attach(ALLOW_C_1_3_R)
    leaf = scratch_cgroup.child("leaf")
    with bpf.open_cgroup(leaf) as leaf_fd, bpf.prog_load(ALLOW_ALL) as allow_all:
        bpf.prog_attach(leaf_fd, allow_all)
        verdicts = kernel_verdicts(leaf, [Request("c", 1, 3, ACC_R), Request("c", 1, 5, ACC_R)])
    assert verdicts == [True, False]


@requires_root_bpf
def test_replace_changes_the_verdict(scratch_cgroup: ScratchCgroup) -> None:
    request = [Request("c", 1, 3, RW)]
    old = scratch_cgroup.attach(DENY_ALL)
    assert scratch_cgroup.kernel_verdicts(request) == [False]
    scratch_cgroup.replace(old, ALLOW_ALL)
    assert scratch_cgroup.kernel_verdicts(request) == [True]
    assert len(scratch_cgroup.program_ids()) == 1


# --- safety -----------------------------------------------------------------------------------


def test_a_request_of_no_device_type_cannot_be_made() -> None:
    """The probe's type refusal, moved to where a Request is made (typed kinds, issue 7)."""
    with pytest.raises(ValueError, match="'x' is not a valid DevType"):
        Request("x", 1, 3, ACC_R)


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (Request("c", 10, 130, ACC_R), "driver"),  # the watchdog: would arm a reboot
        (Request("c", 1, 1, ACC_R), "driver"),  # /dev/mem
        (Request("c", 5, 1, RW), "driver"),  # console
        (Request("c", MKNOD_MAJOR_MAX + 1, 0, ACC_M), "major"),
        (Request("c", 0, MKNOD_MINOR_MAX + 1, ACC_M), "minor"),
        (Request("c", -1, 0, ACC_M), "major"),
        (Request("c", 1, 3, ACC_M | ACC_R), "access"),
    ],
)
@requires_root_bpf
def test_refusals_happen_before_anything_runs(
    request_: Request, why: str, scratch_cgroup: ScratchCgroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real cgroup, so nothing but the request's own check can stop the probe; a fork would
    fail the test."""

    def no_fork() -> int:
        raise AssertionError("probe forked before refusing an unsafe request")

    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(ValueError, match=why):
        kernel_verdicts(scratch_cgroup.path, [Request("c", 1, 3, ACC_R), request_])


def test_safe_to_open_follows_proc_devices() -> None:
    registered = device_safety.registered_majors()
    assert 1 in registered["c"]  # mem is always there
    assert is_safe_to_open(Request("c", 1, 3, ACC_R))
    assert not is_safe_to_open(Request("c", 1, 1, ACC_R))
    assert not is_safe_to_open(Request("c", 10, 130, RW))
    for dev_type in ("b", "c"):
        free = driverless_majors(dev_type)  # type: ignore[arg-type]
        assert free and not set(free) & registered[dev_type]
        assert max(free) <= MKNOD_MAJOR_MAX
        assert is_safe_to_open(Request(dev_type, free[-1], 12345, RW))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="type"):
        driverless_majors("a")  # type: ignore[arg-type]


def test_allowlist_is_tiny_and_harmless() -> None:
    harmless = {("c", 1, m) for m in (3, 5, 7, 8, 9)} | {("c", 5, 0)}
    assert device_safety.OPEN_ALLOWLIST.issubset(harmless)


# --- cleanup ----------------------------------------------------------------------------------


@requires_root_bpf
def test_scratch_cgroup_leaves_nothing_even_after_a_failure() -> None:
    ids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), ScratchCgroup() as scratch:
        path = scratch.path
        ids.append(bpf.prog_info(scratch.attach(DENY_ALL)).id)
        leaf = scratch.child("leaf")
        with bpf.open_cgroup(leaf) as leaf_fd, bpf.prog_load(ALLOW_ALL) as extra:
            bpf.prog_attach(leaf_fd, extra)
            ids.append(bpf.prog_info(extra).id)
        scratch.kernel_verdicts([Request("c", 1, 3, ACC_M)])
        raise RuntimeError("boom")
    assert not os.path.exists(path)
    for prog_id in ids:
        with pytest.raises(NotFound):
            bpf.prog_fd_by_id(prog_id)
    mount = cgroupfs.cgroup2_mount()
    mine = f"{scratch_module.SCRATCH_PREFIX}{os.getpid()}-"
    assert not [n for n in os.listdir(mount) if n.startswith(mine) and os.path.join(mount, n) == path]


@requires_root_bpf
def test_sweep_removes_scratch_of_dead_processes() -> None:
    mount = cgroupfs.cgroup2_mount()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that is certainly dead now
    stale = os.path.join(mount, f"{scratch_module.SCRATCH_PREFIX}{pid}-0")
    os.mkdir(stale)
    os.mkdir(os.path.join(stale, "inner"))
    try:
        with bpf.open_cgroup(stale) as fd, bpf.prog_load(DENY_ALL) as prog:
            bpf.prog_attach(fd, prog)
        assert stale in scratch_module.sweep_stale_scratch()
        assert not os.path.exists(stale)
    finally:  # the test's own cleanup, should the sweep under test regress
        for path in (os.path.join(stale, "inner"), stale):
            with contextlib.suppress(OSError):
                os.rmdir(path)


# --- speed ------------------------------------------------------------------------------------


@requires_root_bpf
def test_probe_in_batches(scratch_cgroup: ScratchCgroup, capsys: pytest.CaptureFixture[str]) -> None:
    """10,000 requests in batches of 250 all answered (deny-all but 1:3 r); the rate is printed,
    not asserted: speed belongs in bench/."""
    rng = random.Random(7)
    majors = {t: driverless_majors(t) for t in ("b", "c")}  # type: ignore[arg-type]
    scratch_cgroup.attach(ALLOW_C_1_3_R)
    batches = []
    for _ in range(40):
        batch = []
        for _ in range(250):
            t = rng.choice("bc")
            batch.append(Request(t, rng.choice(majors[t]), rng.randrange(64), rng.choice(REQUEST_MASKS)))  # type: ignore[arg-type]
        batches.append(batch)
    start = time.perf_counter()
    for batch in batches:
        assert scratch_cgroup.kernel_verdicts(batch) == [False] * len(batch)
    rate = 40 * 250 / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nprobe: {rate:,.0f} requests/s (batches of 250)")


@requires_root_bpf
def test_sweep_unmounts_probe_tmpfs_of_dead_processes() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: mount its own node dir, then die without cleanup
        code = 1
        try:
            probe_nodes.node_dir.ensure()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    marker = f"{probe_nodes.PROBE_MOUNT_PREFIX}{pid}-"
    (left,) = [m.mountpoint for m in cgroupfs.mounts() if marker in m.mountpoint]
    assert left in scratch_module.sweep_stale_scratch()
    assert not os.path.exists(left)
    assert left not in [m.mountpoint for m in cgroupfs.mounts()]


@requires_root_bpf
def test_probe_of_a_missing_cgroup_is_not_found() -> None:
    with pytest.raises(NotFound, match="cgroup /nonexistent-cgroup not found"):
        kernel_verdicts("/nonexistent-cgroup", [Request("c", 1, 3, ACC_R)])
