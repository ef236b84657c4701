"""Container-like hierarchies on the real kernel, shared by the targets/layers/explain/audit tests.

A ``ScratchNode`` is not a fake kernel: it builds real cgroups under a scratch cgroup
(``<scratch>/system.slice/<engine>-<id>.scope[/container]``), attaches real programs captured
from crun 1.21, runc 1.1.5 and systemd 252 (reference evidence), and puts a real ``sleep`` in the
leaf, so targets, layers and verdicts are read back from the kernel and checked against probes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.cgroupfs import relative
from cgdev.core.model import ACC_R, ACC_W, Request
from evidence import PROGRAMS as PROGRAM_DIR
from kernel_requests import sample_requests  # noqa: F401  (re-exported for test modules)

EVIDENCE = f"{PROGRAM_DIR}/"
PROGRAMS = {
    "sd": "crun121-sd-default--system.slice_crun-hc-crun121-sd-default.scope--sd_devices.bin",
    "crun": "crun121-sd-default--system.slice_crun-hc-crun121-sd-default.scope_container--unnamed.bin",
    "crun_hook": (
        "crun121-sd-default_hook--system.slice_crun-hc-crun121-sd-default.scope_container--nvhook_sim.bin"
    ),
    "runc": "runc-sd-default--system.slice_runc-hc-runc-sd-default.scope--unnamed.bin",
    "runc_hook": "runc-sd-default_hook_reload--system.slice_runc-hc-runc-sd-default.scope--nvhook_sim.bin",
    "sd_runc": "runc-sd-default_hook_reload--system.slice_runc-hc-runc-sd-default.scope--sd_devices.bin",
}
NAMES = {"sd": "sd_devices", "sd_runc": "sd_devices", "crun_hook": "nvhook_sim", "runc_hook": "nvhook_sim"}
RW = ACC_R | ACC_W
NULL_RW = Request("c", 1, 3, RW)
NVIDIACTL_RW = Request("c", 195, 255, RW)


def program_bytes(key: str) -> bytes:
    path = EVIDENCE + PROGRAMS[key]
    if not os.path.exists(path):
        pytest.skip(f"reference program {path} is missing")
    with open(path, "rb") as fh:
        return fh.read()


@dataclass
class ScratchNode:
    """Real cgroups + programs + processes under one scratch cgroup; cleaned by the scratch."""

    scratch: object
    mount: str = field(default_factory=cgroupfs.cgroup2_mount)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    fds: list[bpf.Fd] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.scratch.path  # type: ignore[attr-defined]

    def cgroup(self, rel: str) -> str:
        path = os.path.join(self.root, rel)
        os.makedirs(path, exist_ok=True)
        return path

    def attach(self, path: str, key: str) -> int:
        fd = bpf.prog_load(program_bytes(key), name=NAMES.get(key, ""))
        self.fds.append(fd)
        with bpf.open_cgroup(path) as cg:
            bpf.prog_attach(cg, fd)
        return bpf.prog_info(fd).id

    def spawn(self, path: str) -> int:
        procs_file = os.path.join(path, "cgroup.procs")

        def join() -> None:
            with open(procs_file, "w") as fh:
                fh.write("0")

        proc = subprocess.Popen(["sleep", "300"], preexec_fn=join)
        self.procs.append(proc)
        return proc.pid

    def container(
        self, engine: str, cid: str, scope_key: str | None, leaf_key: str | None, *, sub: bool = True
    ) -> str:
        """``system.slice/<engine>-<cid>.scope[/container]`` with programs; returns the leaf path."""
        scope = self.cgroup(f"system.slice/{engine}-{cid}.scope")
        leaf = self.cgroup(f"system.slice/{engine}-{cid}.scope/container") if sub else scope
        if scope_key:
            self.attach(scope, scope_key)
        if leaf_key:
            self.attach(leaf, leaf_key)
        self.spawn(leaf)
        return leaf

    def rel(self, path: str) -> str:
        return relative(path, self.mount)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for fd in self.fds:
            fd.close()


@pytest.fixture
def node(scratch_cgroup: object) -> Iterator[ScratchNode]:
    made = ScratchNode(scratch_cgroup)
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def v1_devices_group(allow_lines: Sequence[str]) -> Iterator[str]:
    """A real v1 devices cgroup (hybrid hosts) that denies all but ``allow_lines``; processes
    still in it at the end go back to the v1 root so it can be removed."""
    v1_mount = cgroupfs.v1_mount("devices")
    if v1_mount is None:
        pytest.skip("no v1 devices hierarchy: a pure cgroup2 host has no such layer")
    path = os.path.join(v1_mount, f"cgdev-test-{os.getpid()}")
    os.mkdir(path)
    try:
        with open(os.path.join(path, "devices.deny"), "w") as fh:
            fh.write("a")
        for line in allow_lines:
            with open(os.path.join(path, "devices.allow"), "w") as fh:
                fh.write(line)
        yield path
    finally:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            left = fh.read().split()
        for pid in left:
            with contextlib.suppress(OSError), open(os.path.join(v1_mount, "cgroup.procs"), "w") as fh:
                fh.write(pid)
        os.rmdir(path)
