"""Pod and container from cgroup names alone (issue 10 item 4): every kubelet and engine spelling,
round-tripped from generated names, and the paths real nodes show."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgdev.core.cgroup_names import (
    CgroupDriver,
    CgroupEngine,
    ContainerCgroup,
    NameKind,
    QosClass,
    classify_name,
    container_cgroup_name,
    container_of_cgroup,
    pod_cgroup_name,
)

HEX = "0123456789abcdef"
hex64 = st.text(HEX, min_size=64, max_size=64)
pod_uids = st.one_of(st.uuids().map(str), st.text(HEX, min_size=32, max_size=32))  # static pods: a hash
# what systemd allows in a unit name; an id must not look like a conmon scope's
scope_ids = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.-", min_size=1,
                    max_size=70).filter(lambda s: not s.startswith("conmon-"))  # fmt: skip
plain_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..") and classify_name(s) is None and classify_name(s + ".slice") is None
)
prefixes = st.lists(plain_names, max_size=3)
subgroups = st.one_of(
    st.just(""), st.just("container"), st.lists(plain_names, min_size=1, max_size=2).map("/".join)
)


@st.composite
def containers(draw: st.DrawFn) -> tuple[ContainerCgroup, str]:
    """A container as kubelet and engines would name it, and the path they would make for it."""
    driver = draw(st.sampled_from(CgroupDriver))
    if driver is CgroupDriver.SYSTEMD:
        engine = draw(st.sampled_from([e for e in CgroupEngine if e is not CgroupEngine.CGROUPFS]))
        cid = draw(hex64 if engine in (CgroupEngine.CRIO, CgroupEngine.DOCKER) else scope_ids)
    else:
        engine = draw(st.sampled_from([CgroupEngine.CGROUPFS, CgroupEngine.CRIO, CgroupEngine.LIBPOD,
                                       CgroupEngine.DOCKER, CgroupEngine.CRI_CONTAINERD]))  # fmt: skip
        cid = draw(hex64)
    parts = draw(prefixes)
    uid = qos = pod_cgroup = None
    if draw(st.booleans()):
        uid, qos = draw(pod_uids), draw(st.sampled_from(QosClass))
        cgroup_root = draw(st.sampled_from(["", "kubelet"])) if driver is CgroupDriver.SYSTEMD else ""
        parts += pod_cgroup_name(uid, qos, driver, cgroup_root)
        pod_cgroup = "/" + "/".join(parts)
    parts.append(container_cgroup_name(engine, cid, driver))
    cgroup = "/" + "/".join(parts)
    sub = draw(subgroups)
    path = cgroup + ("/" + sub if sub else "")
    return ContainerCgroup(engine, cid, cgroup, driver, sub, uid, qos, pod_cgroup), path


@given(containers())
def test_round_trip_from_generated_names(case: tuple[ContainerCgroup, str]) -> None:
    expected, path = case
    assert container_of_cgroup(path) == expected


@given(containers())
def test_relative_paths_map_alike(case: tuple[ContainerCgroup, str]) -> None:
    """A path relative to a mount (as audit holds them, without the leading /) names the same."""
    expected, path = case
    found = container_of_cgroup(path.lstrip("/"))
    assert found is not None
    assert (
        msgspec.structs.replace(found, cgroup="/" + found.cgroup, pod_cgroup=expected.pod_cgroup) == expected
    )
    assert found.pod_cgroup is None or "/" + found.pod_cgroup == expected.pod_cgroup


@given(st.lists(plain_names, max_size=6))
def test_paths_without_an_engine_name_map_to_nothing(parts: list[str]) -> None:
    assert container_of_cgroup("/" + "/".join(parts)) is None


UID = "12345678-90ab-cdef-1234-567890abcdef"
CID = "4f1c" * 16


@pytest.mark.parametrize(
    ("path", "engine", "qos", "sub"),
    [
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
         f"cri-containerd-{CID}.scope", "cri-containerd", "burstable", ""),
        (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope/container",
         "crio", "guaranteed", "container"),
        (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
         f"docker-{CID}.scope", "docker", "besteffort", ""),
        (f"/kubepods/burstable/pod{UID}/{CID}", "cgroupfs", "burstable", ""),
        (f"/kubepods/pod{UID}/crio-{CID}", "crio", "guaranteed", ""),
        (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
         f"kubelet-kubepods-besteffort-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
         "cri-containerd", "besteffort", ""),  # kind's --cgroup-root=/kubelet
    ],
)  # fmt: skip
def test_kubelet_paths_real_nodes_show(path: str, engine: str, qos: str, sub: str) -> None:
    found = container_of_cgroup(path)
    assert found is not None
    assert (found.engine, found.container_id, found.pod_uid, found.qos, found.subgroup) == (
        engine, CID, UID, qos, sub)  # fmt: skip


@pytest.mark.parametrize(
    ("path", "engine", "cid"),
    [
        (f"/machine.slice/libpod-{CID}.scope/container", "libpod", CID),
        (f"/system.slice/docker-{CID}.scope", "docker", CID),
        (f"/docker/{CID}", "cgroupfs", CID),
        (f"/libpod_parent/libpod-{CID}", "libpod", CID),
        ("/cgdev-lab/system.slice/crun-box1.scope/container", "crun", "box1"),
    ],
)
def test_engine_paths_outside_kubernetes(path: str, engine: str, cid: str) -> None:
    found = container_of_cgroup(path)
    assert found is not None
    assert (found.engine, found.container_id, found.pod_uid, found.qos) == (engine, cid, None, None)


def test_conmon_and_pod_cgroups_are_not_containers() -> None:
    assert container_of_cgroup(f"/machine.slice/libpod-conmon-{CID}.scope") is None
    assert container_of_cgroup(f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice") is None
    assert classify_name(f"kubepods-pod{UID.replace('-', '_')}.slice") == (NameKind.POD, "kubepods", UID)


def test_the_innermost_container_wins() -> None:
    """A container nested in another (podman in a pod): the inner one is what the path names."""
    inner = "a" * 64
    found = container_of_cgroup(f"/kubepods/pod{UID}/{CID}/machine.slice/libpod-{inner}.scope/container")
    assert found is not None
    assert (found.engine, found.container_id, found.pod_uid, found.subgroup) == (
        "libpod",
        inner,
        UID,
        "container",
    )
