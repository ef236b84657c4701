"""The roots a non-host lab stack runs from: ``debootstrap --variant=minbase`` of a Debian suite, cached.

A lab of stack ``sid`` runs sid's own systemd, dbus, crun and runc: it pivots into a root made
by debootstrap from the machine's own apt mirror (read from its apt sources, never written down
here).  The root is built once into ``ROOTS_DIR/<suite>`` and reused while its stamp is complete
(suite, mirror, build date and seconds, the versions of the packages the lab runs); a missing
root or an incomplete stamp (an interrupted build) is rebuilt from scratch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from cgdev.errors import EnvError
from cgdev.lab.paths import ROOTS_DIR

Progress = Callable[[str], None]

# What the lab runs from the root: package -> the file proving it is there (paths inside the root).
ROOT_PACKAGES: Final[dict[str, str]] = {
    "systemd": "usr/lib/systemd/systemd",
    "dbus": "usr/bin/dbus-daemon",
    "crun": "usr/bin/crun",
    "runc": "usr/sbin/runc",
}
STAMP_NAME: Final = "cgdev-root.json"
APT_SOURCES: Final = Path("/etc/apt")


class RootStamp(msgspec.Struct):
    """What a root was built from and with: a root is reused only when this is complete."""

    suite: str
    mirror: str
    built: str  # UTC, ISO 8601
    seconds: float
    packages: dict[str, str]  # name -> Debian version, read from the root's dpkg database


@dataclass(frozen=True, slots=True)
class RootReport:
    path: Path
    stamp: RootStamp
    built: bool  # False: the cached root was reused
    seconds: float  # this call's time (the build's when built)


def mirror_uri(apt_dir: Path = APT_SOURCES) -> str:
    """The URI of the machine's main Debian archive, from its deb822 ``.sources`` or ``sources.list``.

    The security archive is skipped (it has no ``sid``); the first other ``deb`` source wins.
    """
    candidates: list[str] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", _read(path)):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, v in (ln.split(":", 1) for ln in stanza.splitlines() if ":" in ln and ln[:1].isalpha())
            )
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            if all(s.endswith("-security") for s in fields.get("suites", "").split()):
                continue
            candidates += fields.get("uris", "").split()[:1]
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        for line in _read(path).splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and not words[2].endswith("-security"):
                candidates.append(words[1])
    if not candidates:
        raise EnvError(f"no Debian archive found in {apt_dir}/sources.list(.d): debootstrap needs a mirror")
    return candidates[0]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def root_path(suite: str, roots: Path = ROOTS_DIR) -> Path:
    return roots / suite


def read_stamp(root: Path) -> RootStamp | None:
    """The root's stamp, or None when it is missing, unreadable or incomplete."""
    try:
        stamp = msgspec.json.decode((root / STAMP_NAME).read_bytes(), type=RootStamp)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not all(stamp.packages.get(name) for name in ROOT_PACKAGES):
        return None
    if not all((root / proof).exists() for proof in ROOT_PACKAGES.values()):
        return None
    return stamp


def package_versions(root: Path, names: list[str]) -> dict[str, str]:
    """Versions from the root's own dpkg database (what is installed there, not what was asked)."""
    done = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Package} ${Version}\\n", *names],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def ensure_root(suite: str, timeout: float, progress: Progress, roots: Path = ROOTS_DIR) -> RootReport:
    """The cached root of ``suite``, built first when it is missing or its stamp is incomplete."""
    started = time.monotonic()
    root = root_path(suite, roots)
    stamp = read_stamp(root)
    if stamp is not None:
        return RootReport(root, stamp, False, time.monotonic() - started)
    if shutil.which("debootstrap") is None:
        from cgdev.lab.install import ensure_packages

        ensure_packages(["debootstrap"], timeout, progress)
    mirror = mirror_uri()
    partial = roots / f"{suite}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    roots.mkdir(parents=True, exist_ok=True)
    progress(f"debootstrap --variant=minbase {suite} (first time only; about a minute)")
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(ROOT_PACKAGES)}",
        suite,
        str(partial),
        mirror,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(partial, ignore_errors=True)
        raise EnvError(f"debootstrap {suite} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("E:")), lines[-1] if lines else "")
        raise EnvError(f"debootstrap {suite} failed (log in {partial}/debootstrap): {reason.strip()}")
    versions = package_versions(partial, list(ROOT_PACKAGES))
    stamp = RootStamp(
        suite=suite,
        mirror=mirror,
        built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=round(time.monotonic() - started, 1),
        packages=versions,
    )
    (partial / STAMP_NAME).write_bytes(msgspec.json.encode(stamp))
    if read_stamp(partial) is None:
        missing = [n for n in ROOT_PACKAGES if n not in versions]
        lacking = ", ".join(missing) or "a package the lab runs"
        raise EnvError(f"debootstrap {suite}: the root lacks {lacking}")
    partial.rename(root)
    return RootReport(root, stamp, True, time.monotonic() - started)


def stamp_json(stamp: RootStamp) -> dict[str, object]:
    return json.loads(msgspec.json.encode(stamp))
