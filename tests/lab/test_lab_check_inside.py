"""Issue 10's acceptance "In-container check": ``cgdev check /dev/nvidiactl /dev/null`` run inside lab
containers of every preset agrees with the kernel at every scenario step (start, hook-sim,
daemon-reload, set-property).

The lab's containers are busybox only, so the check runs with this machine's Python: the test
starts each preset's container (``chk-<preset>``) from the preset's own config plus read-only
bind mounts of ``/usr`` (the C library), this interpreter's prefix and cgdev's ``src`` (and
nothing else: no site-packages, ``python -S``), on a copy of the lab's rootfs with mount points
for them.  The check is then started by the runtime's own ``exec``: in every namespace of the
container (mount: its /dev; pid, net, ipc, uts, cgroup) and in its cgroup, with its capabilities
(no CAP_MKNOD, no CAP_SYS_ADMIN) and no_new_privs: exactly where an entrypoint script or a probe
would run it.  Its verdict is compared, per step, with

- the lab's own open from inside the container (the shell probe every scenario uses),
- cgdev's kernel probe: a process forked into the container's cgroup from the host,
- the preset's measured expectation for this systemd.

What this does not prove: the check with a container image's own Python (the image test runs it
in the podman-built image), nor nodes other than a character device without a driver (ENXIO).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

import cgdev
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.lab import bundle, containers, hooksim, presets, runtime, scenario
from cgdev.lab.instance import system_version
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

SRC = Path(cgdev.__file__).resolve().parents[1]
PYTHON = Path(os.path.realpath(sys.executable))
PREFIX = Path(sys.base_prefix)
NODES = ["/dev/nvidiactl", "/dev/null"]
REQUESTS = [Request("c", 195, 255, ACC_R | ACC_W), Request("c", 1, 3, ACC_R | ACC_W)]
SHELL = {"ENXIO": "allowed", "ok": "allowed", "EPERM": "denied", "ENOENT": "missing"}


def _ro_bind(path: Path) -> dict[str, Any]:
    return {"destination": str(path), "type": "bind", "source": str(path),
            "options": ["rbind", "ro", "nosuid", "nodev"]}  # fmt: skip


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's busybox rootfs, copied, with mount points for /usr, the Python prefix and src."""
    if not PYTHON.is_relative_to(PREFIX):
        pytest.skip(f"this interpreter {PYTHON} is not under its prefix {PREFIX}: nothing to bind")
    root = tmp_path_factory.mktemp("check-rootfs") / "rootfs"
    shutil.copytree(bundle.ensure_rootfs(), root, symlinks=True)
    for where in ("usr", PREFIX, SRC):
        (root / str(where).lstrip("/")).mkdir(parents=True, exist_ok=True)
    for link in ("lib", "lib64"):  # merged /usr: the loader is /lib64/ld-linux-x86-64.so.2
        if os.path.islink(f"/{link}"):
            (root / link).symlink_to(os.readlink(f"/{link}"))
    return root


def _config(preset: presets.Preset, root: Path) -> dict[str, Any]:
    config = scenario.preset_config(preset)
    config["root"] = {"path": str(root), "readonly": True}
    config["mounts"] += [_ro_bind(Path("/usr")), _ro_bind(PREFIX), _ro_bind(SRC)]
    return config


def _check_inside(lab: LabHandle, rt: runtime.Runtime, driver: str, cid: str) -> dict[str, Any]:
    argv = [*rt.argv(driver), "exec", cid, "env", f"PYTHONPATH={SRC}", "PYTHONDONTWRITEBYTECODE=1",
            str(PYTHON), "-S", "-m", "cgdev", "check", "--json", *NODES]  # fmt: skip
    done = lab.exec(argv, check=False, timeout=30)
    assert done.returncode in (0, 1), f"check inside {cid}: exit {done.returncode}: {done.stderr[-1500:]}"
    document = json.loads(done.stdout)
    assert document["allowed"] is (done.returncode == 0)  # the exit status says the same
    return {d["path"]: d for d in document["devices"]}


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_check_inside_agrees_with_the_kernel(lab: LabHandle, rootfs: Path, name: str) -> None:
    preset = presets.get(name)
    reason = scenario.skip_reason(preset, lab.runtimes)
    if reason:
        pytest.skip(reason)
    rt = lab.runtimes[preset.runtime]
    version = system_version(lab.running, check=False)
    kept = presets.spec_device_kept(preset, rt.version, version)  # runc's /dev/char check (runc-sd-allow)
    if kept is None:
        pytest.skip(f"whether runc {rt.version} keeps the spec's device under systemd {version} is unknown")
    timeline = presets.expectation(preset, version, kept)
    cid = f"chk-{preset.name}"
    container = containers.start_container(
        lab.running, cid, rt, preset.driver, _config(preset, rootfs)
    ).container
    seen = []
    try:
        for step, expected in zip(presets.STEPS, timeline, strict=True):
            if step != "start":
                try:
                    if not scenario.apply_step(lab.running, step, container):
                        continue  # set-property: a cgroupfs container has no scope
                except hooksim.HookRefused:
                    assert preset.hook_fails, f"{step}: the hook failed on {name}"
            inside = _check_inside(lab, rt, preset.driver, cid)
            shell = runtime.open_in_container(lab.running, rt, preset.driver, cid, bundle.PROBE_NODES)
            kernel = kernel_verdicts(str(lab.running.host_cgroup(container.cgroup)), REQUESTS)
            ctl, null = inside["/dev/nvidiactl"], inside["/dev/null"]
            assert (ctl["device"]["major"], ctl["device"]["minor"]) == (195, 255)
            want = SHELL[expected or ""]
            if not kept and not kernel[0]:  # runc left it out of DeviceAllow: the first reload, ours or
                want = "denied"  # another session's on the shared lab, denies it; it may come early
            row = (step, ctl["verdict"], SHELL.get(shell["nvidiactl"]), "allowed" if kernel[0] else "denied",
                   want)  # fmt: skip
            seen.append(row)
            assert len({row[1], row[2], row[3], row[4]}) == 1, (
                f"{name}: check, shell, kernel, expected: {seen}"
            )
            assert (ctl["errno"], null["verdict"], kernel[1]) == (
                "EPERM" if ctl["verdict"] == "denied" else "ENXIO", "allowed", True)  # fmt: skip
    finally:
        containers.delete_container(lab.running, cid)
    assert [s for s, *_ in seen][:3] == ["start", "hook", "daemon-reload"]
