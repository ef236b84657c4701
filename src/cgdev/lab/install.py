"""What the lab needs on the machine, installed from the machine's own apt configuration.

Debian 13 ships crun >= 1.18 (the first crun that hands DevicePolicy/DeviceAllow to systemd, the
cause of the double filter); on Debian 12 ``prepare`` installs the build packages and has
``crun_build`` build it, and compiles the memlock shim Debian 12's crun 1.8.1 needs.
``installed_runtimes`` says which runtimes are there now.  A non-host stack installs nothing on
the host: its root (``roots``) brings that suite's systemd, dbus, crun and runc.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Final

from cgdev.errors import EnvError
from cgdev.lab.apt import run_apt
from cgdev.lab.crun_build import build_crun
from cgdev.lab.paths import current_stack
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


def debian_major(path: Path = Path("/etc/debian_version")) -> int:
    """12 for bookworm, 13 for trixie; testing/sid (``trixie/sid``) counts as 13 or later."""
    try:
        text = path.read_text().strip()
    except OSError:
        raise EnvError("the lab needs Debian 12 or 13 (no /etc/debian_version)") from None
    match = re.match(r"(\d+)", text)
    return int(match.group(1)) if match else 13


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
        run_apt(install, timeout, "apt-get install")
    except EnvError:
        run_apt(["apt-get", "update", "-q"], timeout, "apt-get update")
        run_apt(install, timeout, "apt-get install")
    return missing


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


def stack_runtimes(root: Path, var: Path) -> dict[str, Runtime]:
    """A stack root's crun and runc (paths as the lab sees them), versions from the root's dpkg.

    crun cannot run outside its lab (it re-executes itself through /proc), so before the lab is
    up the package database is what can be read; ``control.lab_runtimes`` reads the binaries.
    A crun older than 1.18 (bookworm's 1.8.1) gets the host stack's name for it, ``crun-1.8.1``,
    and the memlock shim from the stack's var dir (which the lab sees at the same path).
    """
    from cgdev.lab.roots import ROOT_PACKAGES, package_versions

    versions = package_versions(root, ["crun", "runc"])
    found: dict[str, Runtime] = {}
    for name in ("crun", "runc"):
        upstream = re.match(r"\d+(?:\.\d+)+", versions.get(name, ""))
        if not upstream:
            continue
        path, version = "/" + ROOT_PACKAGES[name], upstream.group(0)
        if name == "crun" and parse_version(version) < MIN_DOUBLE_FILTER_CRUN:
            shim = var / "memlock-shim.so"
            if version == "1.8.1" and shim.exists():
                found["crun-1.8.1"] = Runtime("crun-1.8.1", path, version, (("LD_PRELOAD", str(shim)),))
            continue
        found[name] = Runtime(name, path, version)
    return found


def installed_runtimes(var: Path | None = None) -> dict[str, Runtime]:
    """The runtimes present now: ``crun`` (>= 1.18), ``runc`` and, on Debian 12, ``crun-1.8.1``.

    For a non-host stack: its root's crun and runc, whatever their versions.
    """
    stack = current_stack()
    if stack.root_dir is not None:
        return stack_runtimes(stack.root_dir, stack.var_dir)
    var = var or stack.var_dir
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


def prepare(timeout: float, progress: Progress, var: Path | None = None) -> dict[str, Runtime]:
    """Packages, crun >= 1.18, the crun 1.8.1 shim: idempotent, a no-op when all is there.

    For a non-host stack: its cached root (built on first use) and busybox for the containers.
    """
    stack = current_stack()
    if stack.root_dir is not None:
        from cgdev.lab.roots import ensure_root

        ensure_packages(["busybox-static", "util-linux"], timeout * 5, progress)
        ensure_root(stack.name, timeout * 10, progress, stack.root_dir.parent)
        from cgdev.lab.roots import package_versions

        if package_versions(stack.root_dir, ["crun"]).get("crun", "").startswith("1.8.1"):
            ensure_packages(["gcc", "libc6-dev"], timeout * 5, progress)
            memlock_shim(stack.var_dir)  # bookworm's crun 1.8.1 needs it, as on a Debian 12 host
        return installed_runtimes()
    var = var or stack.var_dir
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
