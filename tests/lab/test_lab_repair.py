"""Issue 8's acceptance in the lab: grant and revoke on every layer, durable, exact, atomic.

Every verdict here is the kernel's: a process forked into the container's cgroup (``probe``) or
the lab's own open from inside the container.  systemd is the lab's real systemd 252; reloads and
set-property go through it.  Containers are named ``rep-*`` and deleted after each test.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import mmap
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.kernel_probe import kernel_verdicts as probe
from cgdev.adapters.systemd_client import SystemdClient
from cgdev.core.model import ACC_M, ACC_R, ACC_W, Request
from cgdev.lab import presets, scenario
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

RW = ACC_R | ACC_W
NVIDIACTL = Request("c", 195, 255, RW)
NEIGHBOURS = [
    Request("c", 1, 3, RW),
    Request("c", 1, 5, ACC_R),
    Request("c", 195, 254, RW),
    Request("c", 195, 0, RW),
]
# r2 = major; *(u32 *)(r10 - 4) = r2; r0 = 1; exit: allows everything, but the lifter does not
# follow stack traffic, so it is opaque.
OPAQUE_ALLOW_ALL = bytes.fromhex("6112040000000000632af8ff00000000b7000000010000009500000000000000")


class Lab:
    """The lab as cgdev's flags see it, plus helpers that look at the kernel and systemd."""

    def __init__(self, lab: LabHandle) -> None:
        self.lab = lab
        mount = cgroupfs.cgroup2_mount()
        self.systemd_root = "/" + os.path.relpath(str(lab.cgroup_root), mount)

    @property
    def options(self) -> list[str]:
        fs = f"/proc/{self.lab.pid1}/root"
        roots = [f"{fs}/run/{rt}" for rt in ("crun", "runc") if os.path.isdir(f"{fs}/run/{rt}")]
        return [*(a for root in roots for a in ("--runtime-root", root)), "--bus", self.lab.bus_address,
                "--systemd-root", self.systemd_root, "--systemd-fs-root", fs]  # fmt: skip

    def cgdev(self, *args: str) -> subprocess.CompletedProcess[str]:
        options = [] if args[0] == "grants" else self.options  # grants reads only cgdev's state
        return subprocess.run(
            [sys.executable, "-m", "cgdev", *args, *options], capture_output=True, text=True, timeout=60
        )

    def host_cgroup(self, container: Any) -> str:
        return str(self.lab.cgroup_root) + container.cgroup

    def path_cgroups(self, container: Any) -> list[str]:
        return cgroupfs.ancestors(self.host_cgroup(container))

    def program_ids(self, container: Any) -> list[list[int]]:
        out = []
        for path in self.path_cgroups(container):
            with bpf.open_cgroup(path) as fd:
                out.append(bpf.prog_query(fd).ids)
        return out

    def program_tags(self, container: Any) -> list[list[str]]:
        """What each layer runs, by content: ids change whenever anyone reloads the shared lab's
        systemd (a fresh sd_devices), the tag only when the program's instructions do."""
        out = []
        for layer in self.program_ids(container):
            tags = []
            for prog_id in layer:
                with bpf.prog_fd_by_id(prog_id) as fd:
                    tags.append(bpf.prog_info(fd).tag)
            out.append(tags)
        return out

    def device_allow(self, container: Any) -> tuple[tuple[str, str], ...] | None:
        if container.scope is None:
            return None
        with SystemdClient(self.lab.bus_address) as client:
            return tuple(client.unit_properties(container.scope).device_allow)

    def kernel(self, container: Any, requests: list[Request]) -> list[bool]:
        return probe(self.host_cgroup(container), requests)

    def step(self, container: Any, step: str) -> None:
        assert scenario.apply_step(self.lab.running, step, container)


@pytest.fixture(scope="module")
def lab_view(lab: LabHandle) -> Lab:
    return Lab(lab)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test keeps its entitlements apart from the machine's (the CLI children inherit it)."""
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path / "state"))
    return str(tmp_path / "state")


@contextlib.contextmanager
def container_from(lab: LabHandle, preset_name: str, name: str, *, hook: bool = True) -> Iterator[Any]:
    preset = presets.get(preset_name)
    reason = scenario.skip_reason(preset, lab.runtimes)
    if reason:
        pytest.skip(reason)
    container = lab.run(preset.name, name=name)
    try:
        if hook:
            scenario.apply_step(lab.running, "hook", container)
        yield container
    finally:
        lab.delete(container.id)


def nvidiactl_opens(lab: LabHandle, container: Any) -> bool:
    """The container's own open of /dev/nvidiactl (ENXIO: the cgroup let it through)."""
    return lab.probe(container)["nvidiactl"] in ("ok", "ENXIO")


def granted(view: Lab, container: Any) -> dict[str, bool]:
    return dict(zip(("nvidiactl", "null", "null-r", "195:254", "195:0"),
                    view.kernel(container, [NVIDIACTL, *NEIGHBOURS]), strict=True))  # fmt: skip


SYSTEMD_CASES = ["crun-sd", "runc-sd", "crun-sd-nosub", "crun181-sd"]
CGROUPFS_CASES = ["crun-fs", "runc-fs", "crun181-fs"]


@pytest.mark.parametrize("preset_name", SYSTEMD_CASES + CGROUPFS_CASES)
def test_grant_survives_reloads_and_revoke_restores_denial(
    lab: LabHandle, lab_view: Lab, preset_name: str
) -> None:
    """(a) + (b): the mission's case and its siblings, through daemon-reload and set-property."""
    with container_from(lab, preset_name, f"rep-a-{preset_name}") as container:
        if preset_name == "crun-sd":  # the mission: the hook alone does not help
            assert not nvidiactl_opens(lab, container)
        done = lab_view.cgdev("grant", container.id, "/dev/nvidiactl")
        assert done.returncode == 0, done.stderr
        assert "done" in done.stdout or "already in place" in done.stdout
        for step in ("start", "daemon-reload", "set-property", "daemon-reload"):
            if step == "set-property" and container.scope is None:
                continue  # a cgroupfs container has no unit to set a property on
            if step != "start":
                lab_view.step(container, step)
            assert nvidiactl_opens(lab, container), f"{preset_name}: after {step}"
            verdicts = granted(lab_view, container)
            # never more than asked: /dev/null stays open, the neighbours stay denied
            expected = {"nvidiactl": True, "null": True, "null-r": True, "195:254": False, "195:0": False}
            assert verdicts == expected, (step, verdicts)
        done = lab_view.cgdev("revoke", container.id, "c 195:255")
        assert done.returncode == 0, done.stderr
        for step in ("start", "daemon-reload", "set-property"):
            if step == "set-property" and container.scope is None:
                continue
            if step != "start":
                lab_view.step(container, step)
            assert not nvidiactl_opens(lab, container), f"{preset_name}: revoked, after {step}"
            assert lab_view.kernel(container, [NEIGHBOURS[0]]) == [True]


def test_every_layer_differs_by_exactly_the_grant(lab: LabHandle, lab_view: Lab) -> None:
    """(b): each program on the path, alone on a scratch cgroup, differs only on the grant."""
    from cgdev.adapters.scratch_cgroup import ScratchCgroup
    from kernel_requests import sample_requests

    requests = [r for r in sample_requests() if (r.type, r.major, r.minor) != ("c", 195, 255)]
    box = [Request("c", 195, 255, m) for m in (ACC_R, ACC_W, RW)]
    with container_from(lab, "crun-sd", "rep-b") as container:
        before = lab_view.program_ids(container)

        def alone(ids: list[list[int]]) -> list[list[bool]]:
            out = []
            for layer in ids:
                for prog_id in layer:
                    with ScratchCgroup() as scratch, bpf.prog_fd_by_id(prog_id) as fd:
                        scratch.attach(fd)
                        out.append(scratch.kernel_verdicts(requests + box))
            return out

        old = alone(before)
        done = lab_view.cgdev("grant", container.id, "195:255")
        assert done.returncode == 0, done.stderr
        new = alone(lab_view.program_ids(container))
        assert len(old) == len(new)
        for o, n in zip(old, new, strict=True):
            assert o[: len(requests)] == n[: len(requests)]  # nothing else changed
            assert all(n[len(requests) :])  # the grant is there, on every layer


def _nothing_changed(view: Lab, container: Any, args: list[str], status: int, words: str) -> None:
    tags, allow = view.program_tags(container), view.device_allow(container)
    done = view.cgdev(*args)
    assert done.returncode == status, (args, done.stderr)
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert view.program_tags(container) == tags and view.device_allow(container) == allow


def test_bad_input_is_one_line_and_changes_nothing(lab: LabHandle, lab_view: Lab, state_dir: str) -> None:
    """(c): unknown device, malformed access, a missing target, an opaque program on the path."""
    with container_from(lab, "crun-sd", "rep-c") as container:
        _nothing_changed(lab_view, container, ["grant", container.id, "/dev/no-such-gpu"], 2, "DEVICE")
        _nothing_changed(lab_view, container, ["grant", container.id, "c 195:x"], 2, "DEVICE")
        _nothing_changed(
            lab_view, container, ["grant", container.id, "c 195:255", "--access", "rwx"], 2, "--access"
        )
        _nothing_changed(
            lab_view, container, ["grant", container.id, "c 195:255", "--access", ""], 2, "--access"
        )
        _nothing_changed(
            lab_view, container, ["grant", "rep-no-such-container", "c 195:255"], 2, "rep-no-such"
        )
        with bpf.open_cgroup(lab_view.host_cgroup(container)) as cg, bpf.prog_load(OPAQUE_ALLOW_ALL) as prog:
            bpf.prog_attach(cg, prog)
            try:
                _nothing_changed(lab_view, container, ["grant", container.id, "c 195:255"], 2, "opaque")
                _nothing_changed(lab_view, container, ["revoke", container.id, "c 1:3"], 2, "opaque")
            finally:
                bpf.prog_detach(cg, prog)
        assert not os.path.exists(os.path.join(state_dir, "entitlements.json"))


def test_entitlements_follow_grants_and_drop_gone_containers(lab: LabHandle, lab_view: Lab) -> None:
    with container_from(lab, "crun-sd", "rep-e") as container:
        assert lab_view.cgdev("grant", container.id, "c 195:255", "--why", "gpu job 7").returncode == 0
        listed = json.loads(lab_view.cgdev("grants", "--json").stdout)["entitlements"]
        assert [
            (e["container_id"], e["major"], e["minor"], e["granted"], e["status"], e["why"]) for e in listed
        ] == [(container.id, 195, 255, "rw", "done", "gpu job 7")]
        assert lab_view.cgdev("revoke", container.id, "c 195:255", "--access", "w").returncode == 0
        (entry,) = json.loads(lab_view.cgdev("grants", container.id, "--json").stdout)["entitlements"]
        assert (entry["granted"], entry["revoked"], entry["change"]) == ("r", "w", "revoke")
        assert nvidiactl_opens(lab, container) is False  # rw asks w too
        # r stays, w and rw are gone; m stays too (crun's default c *:* m, never granted by cgdev)
        assert lab_view.kernel(container, [Request("c", 195, 255, m) for m in (ACC_R, ACC_W, RW, ACC_M)]) == [
            True, False, False, True]  # fmt: skip
    assert json.loads(lab_view.cgdev("grants", "--json").stdout)["entitlements"] == []


def _kill_before_action(kill_at: int) -> None:  # pragma: no cover - runs in a child
    """Make this process's next apply_plan die by SIGKILL just before action ``kill_at``."""
    from cgdev.ops.repair import apply

    original = apply.apply_plan

    def on_step(i: int) -> None:
        if i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def killing(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs, on_step=on_step)

    apply.apply_plan = killing  # type: ignore[assignment]


def test_the_fast_exit_still_unmounts_the_probe_tmpfs(lab: LabHandle, lab_view: Lab) -> None:
    """A grant verifies with the kernel probe, which mounts a node tmpfs and unmounts it in an exit
    handler; the executable ends with ``os._exit`` (cli.main.entry) after running the handlers, so
    no ``cgdev-probe-<pid>-`` mount may be left behind."""
    from cgdev.adapters import cgroupfs, probe_nodes

    with container_from(lab, "crun-sd", "rep-exit") as container:
        argv = [sys.executable, "-m", "cgdev", "grant", container.id, "c 195:255", *lab_view.options]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "verified: kernel probe" in out  # the probe (and its tmpfs) was used
        marker = f"{probe_nodes.PROBE_MOUNT_PREFIX}{child.pid}-"
        assert [m.mountpoint for m in cgroupfs.mounts() if marker in m.mountpoint] == []


def test_a_grant_killed_half_way_is_finished_by_a_rerun(lab: LabHandle, lab_view: Lab) -> None:
    """Crash safety at each step: the child dies before action i; the layers are old or new, the
    container keeps /dev/null, and a rerun completes the grant."""
    from cgdev.cli.main import main

    with container_from(lab, "crun-sd", "rep-k", hook=False) as container:
        dry = json.loads(lab_view.cgdev("grant", container.id, "c 195:255", "--dry-run", "--json").stdout)
        steps = len(dry["actions"])
        assert steps == 2  # the scope's DeviceAllow and crun's program on scope/container
        for kill_at in range(steps):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child dies by SIGKILL
                _kill_before_action(kill_at)
                with contextlib.redirect_stdout(io.StringIO()):
                    main(["grant", container.id, "c 195:255", *lab_view.options])
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            assert lab_view.kernel(container, [NEIGHBOURS[0]]) == [True]
            listed = json.loads(lab_view.cgdev("grants", "--json").stdout)["entitlements"]
            assert [e["status"] for e in listed] == ["pending"]
            # every layer still has exactly one program or more: never without a filter
            assert all(ids for ids in lab_view.program_ids(container)[-2:])
        done = lab_view.cgdev("grant", container.id, "c 195:255")
        assert done.returncode == 0, done.stderr
        assert nvidiactl_opens(lab, container)
        listed = json.loads(lab_view.cgdev("grants", "--json").stdout)["entitlements"]
        assert [e["status"] for e in listed] == ["done"]


# -- (d) atomicity -------------------------------------------------------------------------------

# The parent publishes a generation counter: odd while a grant or revoke runs, 4k+2 while granted,
# 4k while revoked.  A verdict counts only when the counter was the same (even) before and after it.


def _generation(shared: mmap.mmap) -> int:
    return int.from_bytes(shared[0:8], "little")


def _watcher(cgroup: str, nvidiactl: str, shared: mmap.mmap, stop_fd: int) -> None:  # pragma: no cover
    """In the container's cgroup: open /dev/null and nvidiactl in a loop; count wrong verdicts."""
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    libc = ctypes.CDLL(None, use_errno=True)
    counts = [0, 0, 0, 0]  # loops, null denied, nvidiactl wrong while granted, wrong while revoked
    while True:
        try:
            os.read(stop_fd, 1)
            break
        except BlockingIOError:
            pass
        before = _generation(shared)
        try:
            os.close(os.open("/dev/null", os.O_RDWR))
        except OSError as err:
            if err.errno == errno.EPERM:
                counts[1] += 1
        fd = libc.open(nvidiactl.encode(), os.O_RDWR)
        allowed = fd >= 0 or ctypes.get_errno() != errno.EPERM
        if fd >= 0:
            os.close(fd)
        if before == _generation(shared) and before % 2 == 0:
            if before % 4 == 2 and not allowed:
                counts[2] += 1
            if before % 4 == 0 and allowed:
                counts[3] += 1
        counts[0] += 1
    shared[8:40] = b"".join(c.to_bytes(8, "little") for c in counts)


def run_cycles(view: Lab, container: Any, cycles: int) -> list[int]:
    """``cycles`` grant/revoke pairs (in-process, as the CLI runs them) while a watcher loops."""
    from cgdev.cli.main import main

    shared = mmap.mmap(-1, 64)
    generation = 0
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK)
    with open(os.path.join(view.host_cgroup(container), "cgroup.procs")) as fh:
        host_pid = int(fh.read().split()[0])  # the container's init, as our pid namespace sees it
    nvidiactl = f"/proc/{host_pid}/root/dev/nvidiactl"
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            _watcher(view.host_cgroup(container), nvidiactl, shared, stop_r)
        finally:
            os._exit(0)
    try:
        for _ in range(cycles):
            for change in ("grant", "revoke"):
                generation += 1
                shared[0:8] = generation.to_bytes(8, "little")
                with contextlib.redirect_stdout(io.StringIO()):
                    status = main([change, container.id, "c 195:255", *view.options])
                assert status == 0, change
                generation += 1
                shared[0:8] = generation.to_bytes(8, "little")
    finally:
        os.write(stop_w, b"x")
        os.waitpid(pid, 0)
        os.close(stop_r)
        os.close(stop_w)
    return [int.from_bytes(shared[8 + 8 * i : 16 + 8 * i], "little") for i in range(4)]


def test_grant_revoke_cycles_never_give_a_wrong_verdict(lab: LabHandle, lab_view: Lab) -> None:
    with container_from(lab, "crun-sd", "rep-d") as container:
        loops, null_denied, wrong_granted, wrong_revoked = run_cycles(lab_view, container, 15)
        assert loops > 100
        assert (null_denied, wrong_granted, wrong_revoked) == (0, 0, 0)


def test_a_pinned_program_is_rewritten_so_a_reload_keeps_the_grant(lab: LabHandle, lab_view: Lab) -> None:
    """crun >= 1.23's layout (BPFProgram=device:PIN, the pinned program attached by systemd),
    reproduced with a unit of the lab's systemd: the pin must hold the repaired program, else the
    next reload attaches the old one beside it and the grant is lost."""
    from cgdev.core import shapes
    from cgdev.core.isa import encode
    from cgdev.core.model import Rule

    rules = [Rule(False, "a"), Rule(True, "c", None, None, ACC_M), Rule(True, "c", 1, 3, 7)]
    pin = "/sys/fs/bpf/rep-pin-test"
    host_pin = f"/proc/{lab.pid1}/root{pin}"
    unit = "rep-pin-test.service"
    with bpf.prog_load(encode(shapes.shape_program(rules, "crun")), name="crun_pinned") as prog:
        bpf.obj_pin(prog, host_pin)
    try:
        lab.exec(["systemd-run", "--unit", unit, "-p", f"BPFProgram=device:{pin}", "sleep", "600"])
        cgroup = f"{lab.cgroup_root}/system.slice/{unit}"
        with bpf.open_cgroup(cgroup) as fd:
            (attached,) = bpf.prog_query(fd).ids
        with bpf.obj_get(host_pin) as fd:
            assert bpf.prog_info(fd).id == attached  # systemd attached what the pin holds
        done = lab_view.cgdev("grant", unit, "c 195:255")
        assert done.returncode == 0, done.stderr
        with bpf.obj_get(host_pin) as fd:
            repinned = bpf.prog_info(fd).id
        with bpf.open_cgroup(cgroup) as fd:
            assert bpf.prog_query(fd).ids == [repinned] != [attached]
        lab.exec(["systemctl", "daemon-reload"])
        assert probe(cgroup, [NVIDIACTL, NEIGHBOURS[0], NEIGHBOURS[2]]) == [True, True, False]
    finally:
        lab.exec(["systemctl", "stop", unit], check=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(host_pin)
