"""containerd in the lab: a transient unit of the lab's systemd with its own socket, root and state.

containerd runs as ``cgdev-containerd.service`` of the lab's systemd (started on first use with
``systemd-run``, so a lab started before this module existed gets it too), configured to keep
everything under ``/run/cgdev-engines/containerd`` in the lab's private /run: root, state, the
gRPC and ttRPC sockets.  The CRI plugin and the snapshotters the lab cannot use are disabled: ``ctr
run --rootfs`` needs no image and no snapshot.  Its runc shim keeps the runtime's state under
``/run/containerd/runc/<namespace>`` (fixed by the shim), which is where ``cgdev explain --lab``
looks.

Containers are run the way the issue measured on this host: ``ctr run -d --rootfs --runc-binary
PATH --runc-systemd-cgroup --cgroup system.slice:cri-containerd:ID --cpu-shares 0 --env PATH=/bin``
(``--cpu-shares 0``: ctr's default 1024 needs the ``cpu`` controller, which the lab's cgroup2 may
lack; the env because a ``--rootfs`` container gets no image config).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cgdev.errors import EnvError
from cgdev.lab.engine_record import ENGINES_DIR_IN_LAB
from cgdev.lab.instance import Lab
from cgdev.lab.processes import wait_until

HOME: Final = f"{ENGINES_DIR_IN_LAB}/containerd"
SOCKET: Final = f"{HOME}/containerd.sock"
CONFIG: Final = f"{HOME}/config.toml"
UNIT: Final = "cgdev-containerd.service"
NAMESPACE: Final = "cgdev"
# The runc shim's state root for our namespace (``--root`` of every runtime call it makes).
RUNTIME_ROOT: Final = f"/run/containerd/runc/{NAMESPACE}"
SHIM_STATE: Final = f"{HOME}/state/io.containerd.runtime.v2.task/{NAMESPACE}"
DISABLED_PLUGINS: Final = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)


def config_toml() -> str:
    disabled = ", ".join(f'"{p}"' for p in DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f'root = "{HOME}/root"\n'
        f'state = "{HOME}/state"\n'
        f"disabled_plugins = [{disabled}]\n"
        "[grpc]\n"
        f'  address = "{SOCKET}"\n'
        "[ttrpc]\n"
        f'  address = "{SOCKET}.ttrpc"\n'
    )


def ctr(*argv: str) -> list[str]:
    """ctr on our socket and namespace; a daemon that is gone fails the dial instead of retrying it."""
    return ["ctr", "--address", SOCKET, "--namespace", NAMESPACE, "--connect-timeout", "5s", *argv]


def _answers(lab: Lab) -> bool:
    """containerd answers on its socket; without a socket ctr would retry its dial for a long time."""
    if not Path(f"/proc/{lab.pid1}/root{SOCKET}").is_socket():
        return False
    return lab.exec(ctr("version"), check=False, timeout=10).returncode == 0


def ensure_daemon(lab: Lab, timeout: float) -> None:
    """containerd answering on its socket: started as a transient unit when it is not."""
    if _answers(lab):
        return
    lab.exec(["sh", "-c", f"mkdir -p {HOME} && cat > {CONFIG}"], input=config_toml(), timeout=10)
    lab.exec(["systemctl", "reset-failed", UNIT], check=False, timeout=10)
    lab.exec(
        ["systemd-run", "--unit", UNIT, "--collect", "--property=Delegate=yes", "--property=KillMode=process",
         "containerd", "--config", CONFIG],
        timeout=timeout,
    )  # fmt: skip
    if not wait_until(lambda: _answers(lab), timeout, 0.1):
        tail = lab.exec(["journalctl", "-u", UNIT, "-n", "3", "--no-pager"], check=False, timeout=10)
        raise EnvError(
            f"containerd did not answer on {SOCKET} within {timeout:g}s: {tail.stdout.strip()[-200:]}"
        )


def cgroup_option(name: str, driver: str) -> list[str]:
    if driver == "systemd":
        return ["--runc-systemd-cgroup", "--cgroup", f"system.slice:cri-containerd:{name}"]
    return ["--cgroup", f"/cgdev-containerd/{name}"]


def run_argv(
    name: str,
    rootfs: str,
    runtime_path: str,
    driver: str,
    *,
    devices: Sequence[str],
    annotations: dict[str, str],
    args: Sequence[str],
) -> list[str]:
    argv = ctr("run", "-d", "--rootfs", "--runc-binary", runtime_path, *cgroup_option(name, driver),
               "--cpu-shares", "0", "--env", "PATH=/bin")  # fmt: skip
    for device in devices:
        argv += ["--device", device]
    for key, value in annotations.items():
        argv += ["--annotation", f"{key}={value}"]
    return [*argv, rootfs, name, *args]


def start(lab: Lab, run: Sequence[str], name: str, timeout: float) -> tuple[str, int, str]:
    """``ctr run -d``; returns (id, pid in the lab, bundle dir in the lab)."""
    done = lab.exec(list(run), check=False, timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()
        raise EnvError(f"ctr run {name} failed: {said[-1]}")
    bundle = f"{SHIM_STATE}/{name}"
    pid_text = lab.exec(["cat", f"{bundle}/init.pid"], check=False, timeout=10).stdout.strip()
    if not pid_text.isdigit():
        raise EnvError(f"ctr run {name}: no init.pid in {bundle}")
    return name, int(pid_text), bundle


def remove(lab: Lab, name: str, timeout: float) -> None:
    """Kill and delete the task, then the container; one that is already gone is fine.

    containerd not answering is an ``EnvError``: its containers cannot be removed through it
    (stopping the lab still kills them).
    """
    if not _answers(lab):
        raise EnvError(f"containerd does not answer on {SOCKET}: cannot remove {name}")
    lab.exec(ctr("task", "kill", "--signal", "SIGKILL", name), check=False, timeout=timeout)
    lab.exec(ctr("task", "delete", "--force", name), check=False, timeout=timeout)
    done = lab.exec(ctr("container", "delete", name), check=False, timeout=timeout)
    if done.returncode != 0 and "not found" not in done.stderr:
        raise EnvError(f"ctr container delete {name}: {(done.stderr.strip() or 'failed').splitlines()[-1]}")


def listed(lab: Lab) -> list[str]:
    """The containers containerd has in our namespace ([] when it is not running)."""
    if not _answers(lab):
        return []
    done = lab.exec(ctr("container", "list", "--quiet"), check=False, timeout=10)
    return done.stdout.split() if done.returncode == 0 else []


def exec_argv(name: str, exec_id: str, argv: Sequence[str]) -> list[str]:
    return ctr("task", "exec", "--exec-id", exec_id, name, *argv)


def version(lab: Lab) -> str | None:
    done = lab.exec(["containerd", "--version"], check=False, timeout=10)
    words = done.stdout.split()  # containerd github.com/containerd/containerd[/v2] 2.1.9+unknown ...
    found = re.match(r"\d+(?:\.\d+)+", words[2]) if done.returncode == 0 and len(words) > 2 else None
    return found.group(0) if found else None
