"""Which pod and container a cgroup belongs to, from the cgroup's path alone (no API server).

A node agent has to name the container behind a cgroup without asking anyone: the kubelet and
the engines spell their cgroups in fixed ways, so the path says it all.

- kubelet, systemd driver: ``kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice``
  (Guaranteed pods sit directly in ``kubepods.slice``: ``kubepods-pod<uid>.slice``; the UID's
  dashes become ``_`` because ``-`` is systemd's slice separator; a kubelet ``--cgroup-root``
  prefixes every slice name, e.g. ``kubelet-kubepods-burstable-pod<uid>.slice``);
- kubelet, cgroupfs driver: ``kubepods/<qos>/pod<uid>`` (Guaranteed: ``kubepods/pod<uid>``);
- engines, systemd driver: ``cri-containerd-<id>.scope``, ``crio-<id>.scope``,
  ``docker-<id>.scope``, ``libpod-<id>.scope`` (and crun's, runc's, youki's own ``<rt>-<id>.scope``);
  the conmon scopes (``crio-conmon-<id>.scope``, ``libpod-conmon-<id>.scope``) hold no container;
- engines, cgroupfs driver: the 64-hex id itself (containerd, docker), or ``crio-<id>`` /
  ``libpod-<id>`` without ``.scope``;
- crun with systemd puts the processes one level below the scope (``<scope>/container``, its
  ``run.oci.systemd.subgroup``); whatever lies below the container's cgroup is its ``subgroup``.

The innermost container-named component wins (a container nested in another one), and the pod is
the innermost pod component above it.  Pure: strings in, values out, for the audit, explain and
the watch daemon alike.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

import msgspec


class CgroupEngine(StrEnum):
    """Who named a container's cgroup (``cgroupfs``: a bare 64-hex id, any engine)."""

    CRIO = "crio"
    LIBPOD = "libpod"
    CRI_CONTAINERD = "cri-containerd"
    DOCKER = "docker"
    CRUN = "crun"
    RUNC = "runc"
    YOUKI = "youki"
    CGROUPFS = "cgroupfs"


class QosClass(StrEnum):
    """A pod's Kubernetes QoS class, as its cgroup path spells it."""

    GUARANTEED = "guaranteed"
    BURSTABLE = "burstable"
    BESTEFFORT = "besteffort"


class CgroupDriver(StrEnum):
    """How the cgroups were named: systemd units (``.slice``/``.scope``) or plain directories."""

    SYSTEMD = "systemd"
    CGROUPFS = "cgroupfs"


class NameKind(StrEnum):
    """What one cgroup name identifies (values match ``ops.targets.TargetKind``)."""

    CONTAINER = "container"
    POD = "pod"


ENGINE_NAMES: Final = tuple(e.value for e in CgroupEngine if e is not CgroupEngine.CGROUPFS)
_ENGINE_SCOPE: Final = re.compile(rf"^({'|'.join(map(re.escape, ENGINE_NAMES))})-(?!conmon-)(.+)\.scope$")
_ENGINE_DIR: Final = re.compile(r"^(crio|libpod|cri-containerd|docker)-([0-9a-f]{64})$")  # cgroupfs driver
_HEX_ID: Final = re.compile(r"^[0-9a-f]{64}$")
_POD_SLICE: Final = re.compile(r"^(?:.+-)?kubepods(?:-(burstable|besteffort))?-pod([0-9a-fA-F_]+)\.slice$")
_POD_DIR: Final = re.compile(r"^pod([0-9a-fA-F-]{32,36})$")
_QOS_DIRS: Final = {"burstable": QosClass.BURSTABLE, "besteffort": QosClass.BESTEFFORT}


class ContainerCgroup(msgspec.Struct, frozen=True):
    """A container found in a cgroup path, and its pod when the kubelet made it.

    ``cgroup`` is the path up to and including the container's own cgroup (the scope, or the
    cgroupfs directory), ``subgroup`` what lies below it in the path asked (``container`` under
    crun), ``pod_uid`` the pod's UID with dashes (as ``kubectl`` prints it) or None outside a pod.
    """

    engine: CgroupEngine
    container_id: str
    cgroup: str
    driver: CgroupDriver
    subgroup: str = ""
    pod_uid: str | None = None
    qos: QosClass | None = None
    pod_cgroup: str | None = None


def classify_name(name: str) -> tuple[NameKind, str, str] | None:
    """``(kind, engine, id)`` when one cgroup name identifies a container or a pod.

    Pods come back with engine ``kubepods`` and their UID with dashes.
    """
    match = _ENGINE_SCOPE.match(name) or _ENGINE_DIR.match(name)
    if match:
        return NameKind.CONTAINER, match.group(1), match.group(2)
    match = _POD_SLICE.match(name)
    if match:
        return NameKind.POD, "kubepods", match.group(2).replace("_", "-")
    match = _POD_DIR.match(name)
    if match:
        return NameKind.POD, "kubepods", match.group(1)
    if _HEX_ID.match(name):
        return NameKind.CONTAINER, CgroupEngine.CGROUPFS.value, name
    return None


def _pod_qos(parts: list[str], index: int) -> QosClass | None:
    """The QoS class of the pod component ``parts[index]``: in a slice's own name (systemd), or
    the directory above it (cgroupfs: ``burstable``/``besteffort``, ``kubepods`` = Guaranteed)."""
    name = parts[index]
    slice_match = _POD_SLICE.match(name)
    if slice_match:
        return QosClass(slice_match.group(1)) if slice_match.group(1) else QosClass.GUARANTEED
    parent = parts[index - 1] if index > 0 else ""
    if parent in _QOS_DIRS:
        return _QOS_DIRS[parent]
    return QosClass.GUARANTEED if parent == "kubepods" else None


def _join(parts: list[str], absolute: bool) -> str:
    return ("/" if absolute else "") + "/".join(parts)


def container_of_cgroup(path: str) -> ContainerCgroup | None:
    """The container (and pod) a cgroup path names, or None when no component names one.

    ``path`` may be relative to any cgroup2 mount or absolute on the host; it is split on ``/``
    and nothing is read.  A path inside a container (``.../crio-<id>.scope/container``) maps to
    that container, its remainder in ``subgroup``.
    """
    parts = [p for p in path.split("/") if p]
    absolute = path.startswith("/")
    found: tuple[int, tuple[NameKind, str, str]] | None = None
    for index in range(len(parts) - 1, -1, -1):
        named = classify_name(parts[index])
        if named is not None and named[0] is NameKind.CONTAINER:
            found = (index, named)
            break
    if found is None:
        return None
    index, (_, engine, container_id) = found
    own = parts[index]
    driver = CgroupDriver.SYSTEMD if own.endswith(".scope") else CgroupDriver.CGROUPFS
    pod_uid = qos = pod_cgroup = None
    for above in range(index - 1, -1, -1):
        named = classify_name(parts[above])
        if named is not None and named[0] is NameKind.POD:
            pod_uid, qos, pod_cgroup = named[2], _pod_qos(parts, above), _join(parts[: above + 1], absolute)
            break
    return ContainerCgroup(
        engine=CgroupEngine(engine),
        container_id=container_id,
        cgroup=_join(parts[: index + 1], absolute),
        driver=driver,
        subgroup="/".join(parts[index + 1 :]),
        pod_uid=pod_uid,
        qos=qos,
        pod_cgroup=pod_cgroup,
    )


def pod_cgroup_name(uid: str, qos: QosClass, driver: CgroupDriver, prefix: str = "") -> list[str]:
    """The kubelet's cgroup components for a pod (below the cgroup root), outermost first.

    ``prefix`` is a systemd ``--cgroup-root`` slice prefix (``kubelet``); the inverse of
    ``container_of_cgroup`` for pods, used to build lab cgroups and in tests.
    """
    if driver is CgroupDriver.CGROUPFS:
        levels = ["kubepods"] + ([] if qos is QosClass.GUARANTEED else [qos.value])
        return [*levels, f"pod{uid}"]
    stem = f"{prefix}-kubepods" if prefix else "kubepods"
    slices = [stem] + ([] if qos is QosClass.GUARANTEED else [f"{stem}-{qos.value}"])
    return [*(s + ".slice" for s in slices), f"{slices[-1]}-pod{uid.replace('-', '_')}.slice"]


def container_cgroup_name(engine: CgroupEngine, container_id: str, driver: CgroupDriver) -> str:
    """The one cgroup name an engine gives a container (the inverse of ``classify_name``)."""
    if engine is CgroupEngine.CGROUPFS:
        return container_id
    if driver is CgroupDriver.SYSTEMD:
        return f"{engine.value}-{container_id}.scope"
    return f"{engine.value}-{container_id}"
