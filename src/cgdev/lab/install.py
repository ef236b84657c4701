"""What the lab needs on the machine, installed from the machine's own apt configuration.

Debian 13 ships crun >= 1.18 (the first crun that hands DevicePolicy/DeviceAllow to systemd, the
cause of the double filter); Debian 12 ships crun 1.8.1, so there crun is built from trixie's
upstream tarball against bookworm's libraries (trixie's binary needs a newer glibc).  The source
comes through a private apt list dir -- the system's sources.list and caches are never touched --
and the tarball's sha256 must match trixie's Sources index before it is unpacked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from cgdev.errors import EnvError
from cgdev.lab.paths import VAR_DIR
from cgdev.lab.runtime import Runtime, binary_version, parse_version

Progress = Callable[[str], None]

# Packages the lab runs on, on every release: name -> a file proving it is installed.
BASE_PACKAGES: Final[dict[str, str]] = {
    "systemd": "/usr/lib/systemd/systemd",
    "dbus": "/usr/bin/dbus-daemon",
    "util-linux": "/usr/bin/nsenter",
    "busybox-static": "/bin/busybox",
    "runc": "/usr/sbin/runc",
    "crun": "/usr/bin/crun",
}
# Debian 12 only: to build crun from source and the memlock shim for its crun 1.8.1.
BUILD_PACKAGES: Final = (
    "gcc",
    "libc6-dev",
    "make",
    "pkgconf",
    "gperf",
    "libsystemd-dev",
    "libyajl-dev",
    "libseccomp-dev",
    "libcap-dev",
)
MIN_DOUBLE_FILTER_CRUN: Final = (1, 18)
CRUN_SOURCE_VERSION: Final = os.environ.get("CGDEV_LAB_CRUN_VERSION", "1.21-1")
_UNREACHABLE = re.compile(r"(Temporary failure|Could not (connect|resolve)|Failed to fetch|Connection)", re.I)
_APT_ENV: Final = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


def debian_major(path: Path = Path("/etc/debian_version")) -> int:
    """12 for bookworm, 13 for trixie; testing/sid (``trixie/sid``) counts as 13 or later."""
    try:
        text = path.read_text().strip()
    except OSError:
        raise EnvError("the lab needs Debian 12 or 13 (no /etc/debian_version)") from None
    match = re.match(r"(\d+)", text)
    return int(match.group(1)) if match else 13


def _apt(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_APT_ENV)
    except subprocess.TimeoutExpired:
        raise EnvError(f"{what}: apt did not finish within {timeout:g}s (mirror unreachable?)") from None
    except FileNotFoundError:
        raise EnvError(f"{what}: {args[0]} not found (the lab needs Debian's apt)") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if _UNREACHABLE.search(ln)), None)
        if reason:
            raise EnvError(f"{what}: apt cannot reach the package mirror: {reason.strip()}")
        raise EnvError(f"{what}: {lines[-1].strip() if lines else f'exit status {done.returncode}'}")
    return done


def missing_packages(names: list[str]) -> list[str]:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package}\\n", *names],
        capture_output=True,
        text=True,
        timeout=30,
    )
    installed = {ln.split()[-1] for ln in done.stdout.splitlines() if ln.startswith("ii")}
    return [n for n in names if n not in installed]


def ensure_packages(names: list[str], timeout: float, progress: Progress) -> list[str]:
    """apt-get install what is missing; update the indexes only if the install cannot find them."""
    missing = missing_packages(names)
    if not missing:
        return []
    progress(f"apt-get install {' '.join(missing)}")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        _apt(install, timeout, "apt-get install")
    except EnvError:
        _apt(["apt-get", "update", "-q"], timeout, "apt-get update")
        _apt(install, timeout, "apt-get install")
    return missing


# -- crun from trixie's source ------------------------------------------------------------------


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
        _apt(["apt-get", *self.options(), "update", "-q"], timeout, f"apt-get update ({self.suite} sources)")

    def source_sha256(self, package: str, version: str, filename: str) -> str:
        """The sha256 the (signed) Sources index gives for one file of one source version."""
        done = _apt(["apt-cache", *self.options(), "showsrc", package], 60, f"apt-cache showsrc {package}")
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
            env=_APT_ENV,
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


def memlock_shim(var: Path) -> Path:
    """Compile the LD_PRELOAD shim that lets crun < 1.14 load BPF without CAP_SYS_RESOURCE."""
    source = resources.files("cgdev.lab") / "memlock_shim.c"
    shim = var / "memlock-shim.so"
    text = source.read_text()
    stamp = var / "memlock-shim.sha256"
    digest = hashlib.sha256(text.encode()).hexdigest()
    if shim.exists() and stamp.exists() and stamp.read_text() == digest:
        return shim
    var.mkdir(parents=True, exist_ok=True)
    c_file = var / "memlock-shim.c"
    c_file.write_text(text)
    done = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(c_file), "-ldl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        first_error = next((ln for ln in done.stderr.splitlines() if "error" in ln), done.stderr.strip())
        raise EnvError(f"compiling the memlock shim failed: {first_error}")
    stamp.write_text(digest)
    return shim


# -- the set of runtimes ------------------------------------------------------------------------


def installed_runtimes(var: Path = VAR_DIR) -> dict[str, Runtime]:
    """The runtimes present now: ``crun`` (>= 1.18), ``runc`` and, on Debian 12, ``crun-1.8.1``."""
    found: dict[str, Runtime] = {}
    runc = binary_version("/usr/sbin/runc")
    if runc:
        found["runc"] = Runtime("runc", "/usr/sbin/runc", runc)
    system_crun = binary_version("/usr/bin/crun")
    built = sorted(
        ((v, p) for p in (var / "bin").glob("crun-*") if (v := binary_version(str(p)))),
        key=lambda vp: parse_version(vp[0]),
    )
    if built:
        version, path = built[-1]
        found["crun"] = Runtime("crun", str(path), version)
    elif system_crun and parse_version(system_crun) >= MIN_DOUBLE_FILTER_CRUN:
        found["crun"] = Runtime("crun", "/usr/bin/crun", system_crun)
    shim = var / "memlock-shim.so"
    if system_crun == "1.8.1" and shim.exists():
        found["crun-1.8.1"] = Runtime(
            "crun-1.8.1", "/usr/bin/crun", system_crun, (("LD_PRELOAD", str(shim)),)
        )
    return found


def prepare(timeout: float, progress: Progress, var: Path = VAR_DIR) -> dict[str, Runtime]:
    """Packages, crun >= 1.18, the crun 1.8.1 shim: idempotent, a no-op when all is there."""
    release = debian_major()
    ensure_packages(list(BASE_PACKAGES), timeout * 5, progress)
    system_crun = binary_version("/usr/bin/crun")
    if system_crun is None or parse_version(system_crun) < MIN_DOUBLE_FILTER_CRUN:
        if release >= 13:
            raise EnvError(f"Debian {release}'s crun is {system_crun}: the lab needs crun >= 1.18")
        ensure_packages(list(BUILD_PACKAGES), timeout * 5, progress)
        build_crun(var, timeout, progress)
        if system_crun == "1.8.1":
            memlock_shim(var)
    for name, proof in BASE_PACKAGES.items():
        if not Path(proof).exists():
            raise EnvError(f"{proof} is missing although {name} is installed")
    return installed_runtimes(var)
