"""OCI runtimes in the lab: which binaries, and running, inspecting and deleting containers.

All runtime commands run inside the lab (``Lab.exec``): the runtimes must see the lab's private
/run (their state), its cgroup namespace and its D-Bus system bus, exactly as on a real host.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cgdev.errors import EnvError, InputError, NotFound
from cgdev.lab.instance import Lab

Driver = Literal["systemd", "cgroupfs"]
DRIVERS: Final[tuple[Driver, ...]] = ("systemd", "cgroupfs")
RUNTIME_NAMES: Final = ("crun", "runc", "crun-1.8.1")
# Shorter spellings people (and the issue that specified the lab) use for the same runtimes.
RUNTIME_ALIASES: Final = {"crun-1.8": "crun-1.8.1"}
_VERSION = re.compile(r"version\s+(\d+(?:\.\d+)+)")
# An id both runtimes accept (crun: [A-Za-z0-9_+.-] not starting with '.'; runc: [\w+-.], not '.'
# or '..'), starting with a letter or digit so that it never reads as an option or a path, and
# without '+': systemd's driver names the scope <crun|runc>-<id>.scope and '+' is not a unit-name
# character (systemd-escape gives \x2b), so such a container would fail late, inside systemd.
_CONTAINER_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# systemd unit names have at most 255 characters, and the scope is named <crun|runc>-<id>.scope.
CONTAINER_ID_MAX: Final = 255 - len("crun-.scope")


@dataclass(frozen=True, slots=True)
class Runtime:
    """One runtime binary the lab can use; ``env`` carries e.g. the memlock shim for crun 1.8.1."""

    name: str
    path: str
    version: str
    env: tuple[tuple[str, str], ...] = ()

    @property
    def family(self) -> str:
        """``crun`` or ``runc``: the scope prefix, the cgroupsPath syntax and the state dir in /run."""
        return family_of(self.name)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.version)

    def argv(self, driver: Driver) -> list[str]:
        prefix = ["env", *(f"{k}={v}" for k, v in self.env)] if self.env else []
        flags = ["--systemd-cgroup"] if driver == "systemd" else []
        return [*prefix, self.path, *flags]


def family_of(name: str) -> str:
    """The family of a runtime name: crun-1.8.1 is a crun (and shares /run/crun with crun)."""
    return "runc" if name.startswith("runc") else "crun"


def parse_version(version: str) -> tuple[int, ...]:
    """``1.8.1`` -> ``(1, 8, 1)``: the one parser of the versions ``binary_version`` returns."""
    return tuple(int(part) for part in version.split("."))


def version_of(output: str) -> str | None:
    """``crun version 1.28`` / ``runc version 1.3.6+ds1`` (a ``--version`` output) -> ``1.28`` / ``1.3.6``."""
    match = _VERSION.search(output)
    return match.group(1) if match else None


def binary_version(path: str) -> str | None:
    """``crun version 1.21`` / ``runc version 1.1.5+ds1`` -> ``1.21`` / ``1.1.5``; None if it won't run."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(done.stdout)
    return match.group(1) if done.returncode == 0 and match else None


@dataclass(frozen=True, slots=True)
class Container:
    """A container the lab started: enough to probe it, hook it and find its cgroup layers."""

    id: str
    runtime: str
    driver: Driver
    preset: str | None
    bundle: str
    pid: int  # as seen inside the lab
    cgroup: str  # the container's own cgroup, as the lab names it
    scope: str | None  # the transient systemd unit, for the systemd driver

    def to_json(self) -> str:
        return json.dumps(
            {f: getattr(self, f) for f in self.__slots__},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Container:
        return cls(**json.loads(text))


def check_container_id(value: str, field: str = "container id") -> str:
    """``value`` if crun and runc both accept it as a container id; InputError naming ``field`` if not."""
    if not _CONTAINER_ID.fullmatch(value):
        raise InputError(
            f"{field} {value!r}: a container id is a letter or digit followed by letters, digits, "
            "'_', '.' or '-'"
        )
    if len(value) > CONTAINER_ID_MAX:
        raise InputError(
            f"{field} {value[:16]!r}...: a container id has at most {CONTAINER_ID_MAX} characters"
        )
    return value


def cgroups_path(runtime: Runtime, driver: Driver, container_id: str) -> str:
    """The OCI ``linux.cgroupsPath``: ``slice:prefix:name`` for systemd, a plain path for cgroupfs."""
    if driver == "systemd":
        return f"system.slice:{runtime.family}:{container_id}"
    return f"/{container_id}"


def scope_name(runtime: Runtime, driver: Driver, container_id: str) -> str | None:
    return f"{runtime.family}-{container_id}.scope" if driver == "systemd" else None


def start(
    lab: Lab, runtime: Runtime, driver: Driver, container_id: str, bundle: Path, timeout: float
) -> None:
    """``<runtime> run -d``: the container's stdio go to a log file, never to our pipes.

    A detached container inherits the runtime's stdout and stderr; on a pipe we would wait for
    EOF for as long as the container lives.
    """
    log = bundle / "runtime.log"
    with log.open("w") as out:
        done = lab.exec(
            [*runtime.argv(driver), "run", "-d", "-b", str(bundle), container_id],
            check=False,
            stdout=out,
            stderr=out,
            timeout=timeout,
        )
    if done.returncode != 0:
        text = log.read_text(errors="replace").strip().splitlines()
        raise EnvError(f"{runtime.name} run {container_id} failed: {text[-1] if text else done.returncode}")


def state_pid(lab: Lab, runtime: Runtime, driver: Driver, container_id: str) -> int | None:
    """The container's pid (as the lab sees it), or None when the runtime does not know the id.

    One ``<runtime> state`` call answers both "does it exist" and "where is it".
    """
    done = lab.exec([*runtime.argv(driver), "state", container_id], check=False, timeout=10)
    if done.returncode != 0:
        return None
    try:
        return int(json.loads(done.stdout)["pid"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EnvError(f"{runtime.name} state {container_id}: unexpected output ({exc})") from None


def lab_process_cgroup(lab: Lab, pid: int) -> str:
    """The cgroup v2 path of a lab process, read from the lab's own /proc (the lab's naming)."""
    done = lab.exec(["cat", f"/proc/{pid}/cgroup"], check=False, timeout=10)
    for line in done.stdout.splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise NotFound(f"process {pid} has no cgroup v2 entry in the lab (exited?)")


def delete(
    lab: Lab, runtime: Runtime, driver: Driver, container_id: str, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """``<runtime> delete -f``, unchecked: a caller that must know it is gone asks ``state_pid``."""
    return lab.exec([*runtime.argv(driver), "delete", "-f", container_id], check=False, timeout=timeout)


def listed(lab: Lab, runtime: Runtime) -> list[str]:
    done = lab.exec([runtime.path, "list", "-q"], check=False, timeout=10)
    return done.stdout.split() if done.returncode == 0 else []


def state_driver(lab: Lab, runtime: Runtime, container_id: str) -> Driver:
    """The cgroup driver a container was created with, from the runtime's own state in the lab's /run.

    crun writes ``"systemd-cgroup": true`` to ``/run/crun/<id>/status``; runc keeps the cgroup
    config, with ``"Systemd": true``, in ``/run/runc/<id>/state.json``.  Unreadable: cgroupfs.
    """
    base = Path(f"/proc/{lab.pid1}/root/run/{runtime.family}/{container_id}")
    try:
        if runtime.family == "crun":
            systemd = json.loads((base / "status").read_text())["systemd-cgroup"]
        else:
            systemd = json.loads((base / "state.json").read_text())["config"]["cgroups"]["Systemd"]
    except (OSError, ValueError, KeyError, TypeError):
        return "cgroupfs"
    return "systemd" if systemd is True else "cgroupfs"


# The probe opens each node read-write (what NVML does) and names the errno; there is no NVIDIA
# driver in the lab, so an *allowed* open of /dev/nvidiactl fails with ENXIO, a denied one EPERM.
# A missing node is ENOENT and a non-device "notdev" without opening it: the shell's <> creates a
# missing file (an engine's /dev is a writable tmpfs), and that open would read as allowed.
PROBE_SCRIPT: Final = """
for d in "$@"; do
  if [ ! -e "/dev/$d" ]; then r=ENOENT
  elif [ ! -c "/dev/$d" ] && [ ! -b "/dev/$d" ]; then r=notdev
  elif e=$( (exec 3<>"/dev/$d") 2>&1 ); then r=ok; else
    case $e in
      *"Operation not permitted"*) r=EPERM;;
      *"No such device or address"*) r=ENXIO;;
      *"No such file"*) r=ENOENT;;
      *) r=other;;
    esac
  fi
  printf '%s=%s\\n' "$d" "$r"
done
"""


def open_in_container(
    lab: Lab, runtime: Runtime, driver: Driver, container_id: str, nodes: tuple[str, ...]
) -> dict[str, str]:
    """Open ``/dev/<node>`` from inside the container; ``{node: ok|EPERM|ENXIO|...}``."""
    done = lab.exec(
        [*runtime.argv(driver), "exec", container_id, "sh", "-c", PROBE_SCRIPT, "probe", *nodes],
        check=False,
        timeout=15,
    )
    return parse_probe(done, nodes, container_id)


def parse_probe(
    done: subprocess.CompletedProcess[str], nodes: tuple[str, ...], container_id: str
) -> dict[str, str]:
    """``PROBE_SCRIPT``'s answer: ``{node: verdict}``; an ``EnvError`` when a node has none."""
    verdicts = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    missing = [n for n in nodes if n not in verdicts]
    if missing:
        raise EnvError(
            f"probe in {container_id} failed: {(done.stderr.strip() or 'no output').splitlines()[-1]}"
        )
    return verdicts


def check_driver(value: str) -> Driver:
    if value not in DRIVERS:
        raise InputError(f"--cgroup-driver: {value!r} is not one of {', '.join(DRIVERS)}")
    return value
