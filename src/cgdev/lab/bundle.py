"""OCI bundles for the lab: one shared read-only busybox rootfs and a config.json per container.

Bundles live under /var/lib/cgdev/lab (not the host's /run): the lab has a private /run, and the
runtimes inside it must be able to read them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import msgspec

from cgdev.errors import EnvError, InputError
from cgdev.lab.paths import current_stack

NVIDIACTL: Final = (195, 255)
PROBE_NODES: Final = ("null", "nvidiactl")  # what every scenario opens inside the container
SLEEP_FOREVER: Final = ["sleep", "1000000000"]
BUSYBOX: Final = "/bin/busybox"


def ensure_rootfs(var: Path | None = None, busybox: str = BUSYBOX, timeout: float = 30) -> Path:
    """A static busybox with its applets as symlinks: enough for ``sleep`` and the probe script.

    A busybox that cannot be copied, fails or hangs is a one-line ``EnvError`` (within ``timeout``).
    """
    rootfs = (var or current_stack().var_dir) / "rootfs"
    if (rootfs / "bin" / "sleep").is_symlink():
        return rootfs
    try:
        for sub in ("bin", "proc", "sys", "dev", "tmp", "etc"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        done = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EnvError(f"{busybox} --list did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise EnvError(f"building the lab's rootfs from {busybox}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise EnvError(f"{busybox} --list failed: {said[-1]}")
    for applet in done.stdout.split():
        link = rootfs / "bin" / applet
        if applet != "busybox" and not link.exists():
            os.symlink("busybox", link)
    return rootfs


def _char_device(path: str, major: int, minor: int) -> dict[str, Any]:
    return {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}


def base_config(rootfs: Path) -> dict[str, Any]:
    """What ``crun spec`` gives, adjusted for the lab: detached, long-lived, own cgroup namespace.

    The container's /dev gets the node /dev/nvidiactl (195:255) but no cgroup rule for it: as
    with the NVIDIA legacy hook, granting it is left to the hook (``hook-sim``).
    """
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    no_exec = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": SLEEP_FOREVER,
            "env": ["PATH=/bin", "TERM=dumb"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "ctr",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": [*no_exec, "mode=1777"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*no_exec, "ro"]},
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": [*no_exec, "ro"],
            },
        ],
        "linux": {
            "devices": [_char_device("/dev/nvidiactl", *NVIDIACTL)],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def static_allow(config: dict[str, Any], major: int, minor: int, access: str = "rw") -> None:
    """Put a device into ``linux.resources.devices`` (what CDI does): every layer then allows it."""
    rule = {"allow": True, "type": "c", "major": major, "minor": minor, "access": access}
    config["linux"]["resources"]["devices"].append(rule)


# -- user-supplied configs ----------------------------------------------------------------------


class _Process(msgspec.Struct):
    args: list[str]


class _Root(msgspec.Struct):
    path: str


class _DeviceRule(msgspec.Struct):
    allow: bool
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = None


class _Resources(msgspec.Struct):
    devices: list[_DeviceRule] = []


class _Linux(msgspec.Struct):
    resources: _Resources | None = None


class _Config(msgspec.Struct):
    """The parts of an OCI config the lab relies on; everything else passes through unread."""

    process: _Process
    root: _Root
    linux: _Linux | None = None


def load_config(path: Path, rootfs: Path) -> dict[str, Any]:
    """Read and check an OCI config.json; a relative ``root.path`` (``crun spec``) gets the lab's rootfs."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--config: cannot read {path}: {exc.strerror}") from None
    try:
        checked = msgspec.json.decode(raw, type=_Config)
    except msgspec.ValidationError as exc:
        raise InputError(f"--config {path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InputError(f"--config {path}: not JSON ({exc})") from None
    if not checked.process.args:
        raise InputError(f"--config {path}: process.args is empty")
    config: dict[str, Any] = json.loads(raw)
    if not os.path.isabs(checked.root.path):
        config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"]["terminal"] = False  # detached: there is no console socket
    # No "linux" section (or null) is valid OCI; the lab still writes linux.cgroupsPath into it.
    if config.get("linux") is None:
        config["linux"] = {}
    return config


def write_bundle(container_id: str, config: dict[str, Any], var: Path | None = None) -> Path:
    bundle = (var or current_stack().var_dir) / "bundles" / container_id
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


def remove_bundle(container_id: str, var: Path | None = None) -> None:
    shutil.rmtree((var or current_stack().var_dir) / "bundles" / container_id, ignore_errors=True)
