"""deploy/container/Containerfile builds with podman and the image runs cgdev (issue 10, acceptance
"Manifests": the Containerfile builds where a builder is available and the image runs `cgdev
check` and `cgdev watch --help`).

No registry is reachable here, so the base is made locally: the lab's cached ``debootstrap`` root
of bookworm (no Python in it) plus Debian's python3.11 packages from apt's cache, imported with
``podman import``.  The build context is the wheels of this checkout and its dependencies
(``deploy/container/build-context.sh``), so the build itself runs with ``--network none``.

podman runs with a private storage and run root (removed afterwards), runc (crun refuses this
host's hybrid cgroup layout) and explicit ulimits (podman's defaults exceed this host's hard
limits).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from capabilities import skip_unless_ci
from cgdev.lab.paths import ROOTS_DIR

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
BUILD_CONTEXT = ROOT / "deploy" / "container" / "build-context.sh"
BASE_ROOT = ROOTS_DIR / "bookworm"
APT_CACHE = Path("/var/cache/apt/archives")
PYTHON_DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
IMAGE = "localhost/cgdev:test"
BASE = "localhost/cgdev-test-base:bookworm"


DOWNLOADS = Path("/var/cache/cgdev/test-debs")  # apt-get download's, kept between runs


def _python_debs() -> list[str]:
    """Debian's python3.11 packages: from apt's cache, else fetched once with ``apt-get download``
    from the machine's own apt sources (a fresh machine has them installed, not cached)."""
    found = []
    for name in PYTHON_DEBS:
        matches = sorted(glob.glob(str(APT_CACHE / f"{name}_3.11*_amd64.deb")))
        matches += sorted(glob.glob(str(DOWNLOADS / f"{name}_3.11*_amd64.deb")))
        if not matches:
            DOWNLOADS.mkdir(parents=True, exist_ok=True)
            got = _run(["apt-get", "download", name], cwd=str(DOWNLOADS), timeout=300)
            matches = sorted(glob.glob(str(DOWNLOADS / f"{name}_3.11*_amd64.deb")))
            if not matches:
                last = (got.stderr.strip().splitlines() or ["no message"])[-1]
                pytest.skip(f"no base: {name} is neither in apt's cache nor in this machine's apt sources "
                            f"({last})")  # fmt: skip
        found.append(matches[-1])
    return found


def _run(args: list[str], timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


class Podman:
    def __init__(self, top: str) -> None:
        runtime = ["--runtime", "runc"] if shutil.which("runc") else []
        self.base = ["podman", "--root", f"{top}/s", "--runroot", f"{top}/r", "--tmpdir", f"{top}/t",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none", *runtime]  # fmt: skip
        os.makedirs(f"{top}/t")

    def __call__(self, *args: str, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
        return _run([*self.base, *args], timeout=timeout, **kw)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--rm", "--network", "none", "--pids-limit=0", *ULIMITS, *args)


def _make_base(podman: Podman, work: Path) -> None:
    """The bookworm root (hard links, never written) with python3.11 unpacked over a copy."""
    stage = work / "stage"
    subprocess.run(["cp", "-al", str(BASE_ROOT), str(stage)], check=True)
    unpacked = work / "python"
    for deb in _python_debs():
        subprocess.run(["dpkg-deb", "-x", deb, str(unpacked)], check=True)
    (unpacked / "usr" / "bin" / "python3").symlink_to("python3.11")
    # --remove-destination: never write through a hard link into the cached root
    subprocess.run(["cp", "-a", "--remove-destination", f"{unpacked}/.", f"{stage}/"], check=True)
    tar = subprocess.Popen(["tar", "-C", str(stage), "--exclude=./var/cache/apt/archives", "-cf", "-", "."],
                           stdout=subprocess.PIPE)  # fmt: skip
    done = podman("import", "--change", 'CMD ["/usr/bin/python3"]', "-", BASE, stdin=tar.stdout)
    tar.wait()
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if shutil.which("podman") is None:
        skip_unless_ci("podman is not installed (Debian's podman builds the Containerfile)")
    if os.geteuid() != 0:
        pytest.skip("needs root for podman's private storage and runc")
    if not (BASE_ROOT / "usr" / "bin").is_dir():
        skip_unless_ci(f"no base: the cached debootstrap root {BASE_ROOT} is missing (`cgdev lab up --stack "
                       "bookworm` makes it; .ci/run does)")  # fmt: skip
    _python_debs()
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    wheels = _run(["sh", str(BUILD_CONTEXT), str(context)], env={**os.environ, "PYTHON": sys.executable})
    if wheels.returncode != 0:
        last = [ln for ln in wheels.stderr.splitlines() if ln.strip() and "is ignored" not in ln][-1:]
        pytest.skip(f"cannot make the wheels of the build context (pip: {last})")
    top = tempfile.mkdtemp(prefix="cgi", dir="/tmp")  # podman's run root wants a short path
    podman = Podman(top)
    try:
        _make_base(podman, work)
        built = podman("build", "--network", "none", *ULIMITS, "--build-arg", f"BASE={BASE}", "-t", IMAGE,
                       "-f", str(CONTAINERFILE), str(context), timeout=600)  # fmt: skip
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
        yield podman
    finally:
        podman("rmi", "--all", "--force")
        subprocess.run(["rm", "-rf", top], check=False)


def test_image_runs_check(image: Podman) -> None:
    done = image.run(IMAGE, "check", "/dev/null")
    assert (done.returncode, done.stdout) == (0, "/dev/null: allowed (c 1:3, open rw: done)\n"), done.stderr
    missing = image.run(IMAGE, "check", "/dev/null", "/dev/nvidiactl")
    assert missing.returncode == 1
    assert "/dev/nvidiactl: missing" in missing.stdout


def test_image_check_needs_no_root_and_no_writable_root(image: Podman) -> None:
    """As a liveness probe in someone's pod runs it: another user, a read-only root file system."""
    done = image.run("--user", "65534:65534", "--read-only", IMAGE, "check", "--access", "r", "/dev/null")
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_help_and_daemonset_entrypoint(image: Podman) -> None:
    done = image.run(IMAGE)  # CMD: --help
    assert done.returncode == 0 and "check" in done.stdout, done.stderr
    nsenter = image.run("--entrypoint", "nsenter", IMAGE, "--version")  # the DaemonSet's command
    assert nsenter.returncode == 0, nsenter.stderr


def test_image_runs_watch_help(image: Podman) -> None:
    done = image.run(IMAGE, "watch", "--help")
    assert done.returncode == 0 and "--repair" in done.stdout, done.stderr
