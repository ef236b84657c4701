"""The OCI runtime binaries a host has, and their versions.

Why: what a runtime does to a device depends on its release (runc 1.1.3-1.1.6 drop a spec device
from systemd's ``DeviceAllow`` when its ``/dev/char`` link is missing; core/semantics/runc_dev_char),
and a container's state does not record which release created it.  The binary the host would run
is the best evidence there is: looked up on the PATH systemd's root gives (``fs_root``: ``/`` on a
node, ``/proc/PID/root`` for the lab or a node container) and asked for ``--version``.  Unknown
stays unknown (None).
"""

from __future__ import annotations

import os
import subprocess
from typing import Final

SEARCH_DIRS: Final = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
VERSION_TIMEOUT_S: Final = 5.0


def find_binary(name: str, fs_root: str = "/") -> str | None:
    """``name`` in the standard PATH directories under ``fs_root``, or None."""
    for directory in SEARCH_DIRS:
        path = os.path.join(fs_root, directory.lstrip("/"), name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def binary_version(name: str, fs_root: str = "/") -> str | None:
    """The first line of ``name --version`` (``runc version 1.1.5``), or None when there is no such
    binary or it does not answer."""
    path = find_binary(name, fs_root)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
                              check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    first = done.stdout.strip().splitlines()[:1]
    return first[0] if done.returncode == 0 and first else None
