"""podman in the lab: its command lines, with its storage and state on the lab's private /run.

podman runs inside the lab (``Lab.exec``) so that its systemd cgroup manager talks to the lab's
systemd over the lab's bus and its runtime keeps state in the lab's /run (``/run/crun``,
``/run/runc``: where ``cgdev explain --lab`` reads it).  Everything podman writes goes under
``/run/cgdev-engines/podman`` in the lab, which vanishes with the lab.  Flags, and why:

* ``--cgroup-manager systemd`` (or cgroupfs) and ``--runtime PATH``: the engine under test;
* ``--pids-limit=0``: the lab's cgroup2 has only the controllers the host delegates, and
  podman's default pids limit would need ``pids``;
* ``--network none``: no CNI/netavark setup in a lab with an empty network namespace;
* ``--rootfs DIR``: no registry is reachable; the lab's busybox rootfs (a private copy, since
  podman creates mount targets such as ``/etc/hosts`` in it);
* ``--storage-driver vfs``, ``--events-backend file``: no overlay on tmpfs, no journald.

podman before 5.0 reads ``--annotation`` and ``--device`` as CSV lists (pflag's StringSlice): a
value with a comma (a CDI annotation listing several names) would be split into several entries.
For those versions such a value is passed CSV-quoted, which podman reads back whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from cgdev.errors import EnvError
from cgdev.lab.engine_record import ENGINES_DIR_IN_LAB
from cgdev.lab.instance import Lab

HOME: Final = f"{ENGINES_DIR_IN_LAB}/podman"
BINARY: Final = "podman"


def global_flags(runtime_path: str, driver: str, hooks_dir: str | None) -> list[str]:
    flags = [
        BINARY,
        "--root", f"{HOME}/storage",
        "--runroot", f"{HOME}/run",
        "--tmpdir", f"{HOME}/tmp",
        "--storage-driver", "vfs",
        "--events-backend", "file",
        "--cgroup-manager", driver,
        "--runtime", runtime_path,
    ]  # fmt: skip
    return [*flags, "--hooks-dir", hooks_dir] if hooks_dir else flags


def splits_lists(podman_version: str | None) -> bool:
    """Whether this podman splits ``--annotation``/``--device`` values on commas (before 5.0).

    An unknown version is taken as a new one: a value without a comma is passed as is either way.
    """
    major = (podman_version or "").split(".", 1)[0]
    return major.isdigit() and int(major) < 5


def list_value(value: str, csv: bool) -> str:
    """``value`` as one element of a pflag StringSlice (a CSV record) when ``csv``, else as is."""
    if csv and any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def run_argv(
    base: Sequence[str],
    name: str,
    rootfs: str,
    *,
    devices: Sequence[str],
    annotations: dict[str, str],
    args: Sequence[str],
    podman_version: str | None = None,
) -> list[str]:
    csv = splits_lists(podman_version)
    argv = [*base, "run", "-d", "--replace", "--name", name, "--pids-limit=0", "--network", "none"]
    for device in devices:
        argv += ["--device", list_value(device, csv)]
    for key, value in annotations.items():
        argv += ["--annotation", list_value(f"{key}={value}", csv)]
    return [*argv, "--rootfs", rootfs, *args]


def start(lab: Lab, base: Sequence[str], run: Sequence[str], timeout: float) -> tuple[str, int, str]:
    """``podman run -d``; returns (id, pid in the lab, bundle dir in the lab)."""
    done = lab.exec(list(run), check=False, timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()
        raise EnvError(f"podman run failed: {said[-1]}")
    container_id = done.stdout.strip().splitlines()[-1]
    return inspect(lab, base, container_id)


def inspect(lab: Lab, base: Sequence[str], name: str) -> tuple[str, int, str]:
    done = lab.exec([*base, "inspect", "--type", "container", name], check=False, timeout=20)
    try:
        data = json.loads(done.stdout)[0]
        pid = int(data["State"]["Pid"])
        bundle = str(data["StaticDir"])
        container_id = str(data["Id"])
    except (ValueError, LookupError, TypeError):
        said = (done.stderr.strip() or "no output").splitlines()[-1]
        raise EnvError(f"podman inspect {name}: {said}") from None
    if pid <= 0:
        raise EnvError(f"podman container {name} is not running (state {data['State'].get('Status')!r})")
    return container_id, pid, bundle


def remove(lab: Lab, base: Sequence[str], name: str, timeout: float) -> None:
    """``podman rm -f -t 0``: gone, or an ``EnvError`` with podman's last line (a missing one is fine)."""
    done = lab.exec([*base, "rm", "-f", "-t", "0", "--ignore", name], check=False, timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()[-1]
        raise EnvError(f"podman rm {name}: {said}")


def exec_argv(base: Sequence[str], name: str, argv: Sequence[str]) -> list[str]:
    return [*base, "exec", name, *argv]


def version(lab: Lab) -> str | None:
    done = lab.exec([BINARY, "--version"], check=False, timeout=10)
    return done.stdout.strip().rsplit(" ", 1)[-1] if done.returncode == 0 else None
