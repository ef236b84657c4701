"""The engines' packages where the lab runs them: installed on first use, on the host or in a stack's root.

The host stack runs the machine's own podman and containerd (``scripts/bootstrap`` installs them;
a machine without them gets them here, as ``lab up`` installs what the lab needs).  A suite's lab
runs its root's packages: podman and containerd are installed into the cached root with the
root's own apt (``chroot ROOT apt-get install``), never changing what the root already has (apt
reports any upgrade and we refuse it), so a running lab of that stack keeps its systemd, crun and
runc.  The lab's network namespace is empty, so apt runs from the host side, in a chroot; a
``policy-rc.d`` keeps maintainer scripts from starting services.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Final

from cgdev.errors import EnvError
from cgdev.lab.engine_record import Engine
from cgdev.lab.instance import Lab
from cgdev.lab.paths import current_stack

# engine -> (Debian package, the binary that proves it is there)
ENGINE_PACKAGES: Final[dict[Engine, tuple[str, str]]] = {
    Engine.PODMAN: ("podman", "podman"),
    Engine.CONTAINERD: ("containerd", "ctr"),
}
POLICY_RC_D: Final = "usr/sbin/policy-rc.d"
_UPGRADED: Final = re.compile(r"^(\d+) upgraded, \d+ newly installed, (\d+) to remove", re.M)


def has_engine(lab: Lab, engine: Engine) -> bool:
    binary = ENGINE_PACKAGES[engine][1]
    return lab.exec(["sh", "-c", f"command -v {binary}"], check=False, timeout=10).returncode == 0


def ensure_engine(lab: Lab, engine: Engine, timeout: float) -> None:
    """``engine`` runnable inside ``lab``: installed first when it is not (EnvError when that fails)."""
    if has_engine(lab, engine):
        return
    package = ENGINE_PACKAGES[engine][0]
    root = current_stack().root_dir
    if root is None:
        from cgdev.lab.install import ensure_packages

        ensure_packages([package], timeout * 10, lambda _message: None)
    else:
        install_in_root(root, [package], timeout * 10)
    if not has_engine(lab, engine):
        raise EnvError(f"{package} was installed but {ENGINE_PACKAGES[engine][1]} is not on the lab's PATH")


def install_in_root(root: Path, packages: list[str], timeout: float) -> None:
    """``apt-get install`` into a stack's root, refusing to upgrade or remove anything it has."""
    from cgdev.lab.apt import run_apt

    chroot = ["chroot", str(root), "apt-get", "-q", "--no-install-recommends"]
    plan = run_apt(
        [*chroot, "install", "-s", *packages], timeout, f"apt-get install {' '.join(packages)} (plan)"
    )
    counts = _UPGRADED.search(plan.stdout)
    if counts is None or counts.group(1) != "0" or counts.group(2) != "0":
        said = counts.group(0) if counts else "no plan"
        raise EnvError(f"installing {' '.join(packages)} into {root} would change its packages ({said})")
    guard = root / POLICY_RC_D
    created = not guard.exists()
    if created:
        guard.write_text(
            "#!/bin/sh\n# cgdev: no service starts while packages are installed into a lab root\nexit 101\n"
        )
        guard.chmod(0o755)
    try:
        run_apt(
            [*chroot, "install", "-y", *packages], timeout, f"apt-get install {' '.join(packages)} in {root}"
        )
    except subprocess.SubprocessError as exc:
        raise EnvError(f"apt-get install in {root}: {exc}") from None
    finally:
        if created:
            guard.unlink(missing_ok=True)
