"""The runtimes' state files as msgspec structs, holding only the fields cgdev reads.

A separate module so ``runtime_state`` can import it (and msgspec, about 9 ms, a good part of
``cgdev explain``'s budget) only when a state file is actually read: a host with no runtime state,
or a target given as a PID or cgroup, never needs it.  Unknown fields are ignored, so a newer
runtime adding fields never breaks us.
"""

from __future__ import annotations

import msgspec

DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError)
decode = msgspec.json.decode


class CrunStatus(msgspec.Struct, rename={"cgroup_path": "cgroup-path", "systemd_cgroup": "systemd-cgroup"}):
    """crun's ``<root>/<id>/status``; crun writes systemd-cgroup as the string "true"/"false"."""

    pid: int = 0
    cgroup_path: str = ""
    bundle: str = ""
    systemd_cgroup: str | bool = False


class RuncCgroups(msgspec.Struct):
    path: str = ""
    name: str = ""
    parent: str = ""
    Systemd: bool = False


class RuncConfig(msgspec.Struct):
    labels: list[str] | None = None
    cgroups: RuncCgroups | None = None


class RuncState(msgspec.Struct):
    """runc's libcontainer ``state.json`` (the whole config; only these fields are decoded)."""

    id: str
    init_process_pid: int = 0
    cgroup_paths: dict[str, str] | None = None
    config: RuncConfig | None = None


class OciState(msgspec.Struct, rename="camel"):
    """youki's ``state.json`` (and any runtime writing the plain OCI state there)."""

    id: str
    pid: int | None = None
    bundle: str = ""
    annotations: dict[str, str] | None = None
    use_systemd: bool = False


class BundleConfig(msgspec.Struct):
    """A bundle's ``config.json``: crun keeps a container's annotations only there."""

    annotations: dict[str, str] | None = None


class StorageContainer(msgspec.Struct):
    """One entry of containers/storage's ``<driver>-containers/containers.json`` (podman, CRI-O)."""

    id: str
    names: list[str] | None = None
