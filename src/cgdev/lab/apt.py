"""apt-get and apt-cache run the one way the lab needs them.

The lab installs its packages and fetches crun's source with apt (``install``, ``crun_build``);
both want the same non-interactive environment and the same one-line ``EnvError`` that names an
unreachable mirror instead of apt's last line.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Final

from cgdev.errors import EnvError

_UNREACHABLE = re.compile(r"(Temporary failure|Could not (connect|resolve)|Failed to fetch|Connection)", re.I)
APT_ENV: Final = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


def run_apt(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=APT_ENV)
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
