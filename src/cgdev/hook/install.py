"""hooks.d files (podman, CRI-O; format 1.0.0) for the hook, and installing one atomically.

Two variants: ``annotations`` runs the hook only for containers with a ``cdi.k8s.io/*`` or
``cgdev.io/devices`` annotation (the engine decides, the hook never starts for the others);
``always`` runs it for every container, which the node's policy needs when it grants by image or
namespace (no annotation to match on).  Both run at ``createRuntime`` (grant) and ``poststart``
(re-check after later hooks).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Final

from cgdev.errors import EnvError, InputError

VARIANTS: Final = ("annotations", "always")
HOOKS_DIRS: Final = ("/etc/containers/oci/hooks.d", "/usr/share/containers/oci/hooks.d")
FILE_NAME: Final = "cgdev-hook.json"
ANNOTATION_KEYS: Final = r"^(cdi\.k8s\.io/.+|cgdev\.io/devices)$"
STAGES: Final = ("createRuntime", "poststart")


def default_hook_path() -> str:
    """The ``cgdev-hook`` script next to this interpreter (a venv or a system install), else on
    PATH; "" when there is none (the engine would skip a hook whose path does not exist, silently:
    the container then starts without its grant)."""
    beside = os.path.join(os.path.dirname(sys.executable), "cgdev-hook")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("cgdev-hook") or ""


def check_executable(hook_path: str) -> str:
    """``hook_path`` if it is an executable file; an input error naming it otherwise."""
    if not hook_path:
        raise InputError("no cgdev-hook beside this interpreter or on PATH: name it", field="hook_path",
                         value=hook_path)  # fmt: skip
    if not (os.path.isfile(hook_path) and os.access(hook_path, os.X_OK)):
        raise InputError("not an executable file (the engine would skip the hook silently)",
                         field="hook_path", value=hook_path)  # fmt: skip
    return hook_path


def hooks_d(
    variant: str,
    hook_path: str,
    args: list[str] | None = None,
    timeout: int = 10,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, Any]:
    """The hooks.d 1.0.0 document (``stages``: the hook's own ``--stage`` names one, and then the
    file must run it at that stage only, or its log would name the wrong one)."""
    if variant not in VARIANTS:
        raise InputError(f"not one of {', '.join(VARIANTS)}", field="variant", value=variant)
    if not os.path.isabs(hook_path):
        raise InputError("not an absolute path", field="hook_path", value=hook_path)
    when: dict[str, Any] = (
        {"always": True} if variant == "always" else {"annotations": {ANNOTATION_KEYS: ".*"}}
    )
    hook = {"path": hook_path, "args": [os.path.basename(hook_path), *(args or [])], "timeout": timeout}
    return {"version": "1.0.0", "hook": hook, "when": when, "stages": list(stages)}


def install(directory: str, document: dict[str, Any], name: str = FILE_NAME) -> str:
    """Write ``document`` as ``directory/name`` atomically (temporary file, fsync, rename)."""
    if not os.path.isdir(directory):
        raise InputError("no such directory", field="dir", value=directory)
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
    data = (json.dumps(document, indent=2) + "\n").encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except PermissionError:
        raise EnvError(f"writing {path} needs root") from None
    except OSError as err:
        raise EnvError(f"writing {path}: {err.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
