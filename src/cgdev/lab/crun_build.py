"""crun >= 1.18 for Debian 12, built from trixie's upstream tarball.

Debian 12 ships crun 1.8.1, older than the first crun that hands DevicePolicy/DeviceAllow to
systemd (the cause of the double filter), and trixie's binary needs a newer glibc; so crun is
built from trixie's upstream tarball against bookworm's libraries.  The source comes through a
private apt list dir -- the system's sources.list and caches are never touched -- and the
tarball's sha256 must match trixie's Sources index before it is unpacked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cgdev.errors import EnvError
from cgdev.lab.apt import APT_ENV, run_apt
from cgdev.lab.runtime import binary_version

Progress = Callable[[str], None]

CRUN_SOURCE_VERSION: Final = os.environ.get("CGDEV_LAB_CRUN_VERSION", "1.21-1")


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine already uses (first non-security ``.../debian`` URI)."""
    candidates: list[str] = []
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if path.suffix == ".list" and line.startswith(("deb ", "deb-src ")):
                uris = [w for w in line.split()[1:] if "://" in w][:1]
            elif path.suffix == ".sources" and line.lower().startswith("uris:"):
                uris = line.split(":", 1)[1].split()
            else:
                continue
            candidates += [u.rstrip("/") for u in uris]
    for uri in candidates:
        if uri.endswith("/debian"):
            return uri
    raise EnvError(f"no Debian archive found in {etc}/sources.list*: cannot fetch crun's source")


@dataclass(frozen=True, slots=True)
class PrivateApt:
    """An apt configuration of our own (one deb-src line, own lists, no shared caches)."""

    root: Path
    mirror: str
    suite: str = "trixie"

    def options(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={self.root / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def prepare(self) -> None:
        (self.root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list.d").mkdir(exist_ok=True)
        (self.root / "sources.list").write_text(f"deb-src {self.mirror} {self.suite} main\n")

    def update(self, timeout: float) -> None:
        run_apt(
            ["apt-get", *self.options(), "update", "-q"], timeout, f"apt-get update ({self.suite} sources)"
        )

    def source_sha256(self, package: str, version: str, filename: str) -> str:
        """The sha256 the (signed) Sources index gives for one file of one source version."""
        done = run_apt(["apt-cache", *self.options(), "showsrc", package], 60, f"apt-cache showsrc {package}")
        for record in done.stdout.split("\n\n"):
            if f"\nVersion: {version}\n" not in f"\n{record}\n":
                continue
            section = record.split("Checksums-Sha256:", 1)[-1].split("\n")
            for line in section[1:]:
                if not line.startswith(" "):
                    break
                digest, _size, name = line.split()
                if name == filename:
                    return digest
        raise EnvError(f"{self.suite} Sources index has no {filename} for {package} {version}")

    def download_source(self, package: str, version: str, dest: Path, timeout: float) -> None:
        """Tolerates a failed download of the Debian packaging tarball: only the orig is used."""
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["apt-get", *self.options(), "source", "--download-only", "-q", f"{package}={version}"],
            cwd=dest,
            capture_output=True,
            timeout=timeout,
            env=APT_ENV,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_crun_source(var: Path, mirror: str, timeout: float, progress: Progress) -> Path:
    """Download and verify crun's orig tarball; returns its path."""
    upstream = CRUN_SOURCE_VERSION.rsplit("-", 1)[0]
    tarball = var / "src" / f"crun_{upstream}.orig.tar.gz"
    apt = PrivateApt(var / "apt-trixie", mirror)
    apt.prepare()
    if not any((apt.root / "lists").glob("*Sources*")):
        progress(f"fetching the trixie Sources index from {mirror}")
        apt.update(timeout)
    want = apt.source_sha256("crun", CRUN_SOURCE_VERSION, tarball.name)
    if not tarball.exists() or _sha256(tarball) != want:
        progress(f"downloading crun {CRUN_SOURCE_VERSION} source")
        apt.download_source("crun", CRUN_SOURCE_VERSION, tarball.parent, timeout)
    if not tarball.exists():
        raise EnvError(f"could not download {tarball.name} from {mirror}")
    have = _sha256(tarball)
    if have != want:
        tarball.unlink()
        raise EnvError(f"{tarball.name}: sha256 {have} does not match the Sources index ({want})")
    return tarball


def build_crun(var: Path, timeout: float, progress: Progress) -> Path:
    """Build crun from its verified upstream tarball (no Debian patches); returns the binary."""
    upstream = CRUN_SOURCE_VERSION.rsplit("-", 1)[0]
    binary = var / "bin" / f"crun-{upstream}"
    if binary_version(str(binary)) == upstream:
        return binary
    tarball = fetch_crun_source(var, apt_mirror(), timeout, progress)
    tree = var / "src" / f"crun-{upstream}"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["tar", "-C", str(tree.parent), "-xzf", str(tarball)], check=True, timeout=120)
    progress(f"building crun {upstream} (configure + make, about 25 s on 2 cores)")
    started = time.monotonic()
    jobs = f"-j{os.cpu_count() or 2}"
    # The whole default target: `make crun` alone races libocispec's generated headers.
    steps = (["./configure", "--disable-criu"], ["make", jobs])
    for number, step in enumerate(steps, 1):
        log = var / "src" / f"crun-build-{number}.log"
        with log.open("w") as out:
            done = subprocess.run(step, cwd=tree, stdout=out, stderr=subprocess.STDOUT, timeout=timeout * 10)
        if done.returncode != 0:
            raise EnvError(f"building crun {upstream}: {' '.join(step)} failed, see {log}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tree / "crun", binary)
    shutil.rmtree(tree, ignore_errors=True)
    progress(f"built crun {upstream} in {time.monotonic() - started:.1f}s: {binary}")
    return binary
