"""Collect an ``Inspection`` from the live system: kernel programs, systemd units, device nodes.

Collection is the only live part of explain/show/snapshot; everything after it runs on the
collected data, which is what makes a snapshot file answer exactly like the live node.  It reads
and never changes anything: programs by id (``BPF_PROG_QUERY`` per cgroup, non-effective so each
program is attributed to the cgroup it is attached to), units by ``GetUnit`` (never ``LoadUnit``,
which would make systemd load a unit).

systemd may see the cgroup tree from elsewhere: in the lab its root is a subtree of ours
(``systemd_root``) and its files are under ``/proc/<pid1>/root`` (``systemd_fs_root``); on a host
both are ``/``.
"""

from __future__ import annotations

import os
import stat as stat_mod
from typing import Any, Final, Literal

import msgspec

from cgdev.adapters import bpf, cgroupfs
from cgdev.errors import CgdevError, NotFound
from cgdev.ops.layers import DeviceNode, Inspection, Layer, ProgramRecord, UnitRecord
from cgdev.ops.targets import UNIT_SUFFIXES, Target

MAX_DEVICE_NODES: Final = 4096
# /dev/char/M:m, /dev/block/M:m and systemd's inaccessible nodes are parsed textually by systemd.
_TEXTUAL_PREFIXES: Final = ("/dev/char/", "/dev/block/", "/run/systemd/inaccessible/")


def program_records(cgroup_host_path: str) -> tuple[ProgramRecord, ...]:
    """The programs attached to one cgroup, in the kernel's run order; vanished ones skipped."""
    with bpf.open_cgroup(cgroup_host_path) as cg_fd:
        query = bpf.prog_query(cg_fd)
    out = []
    for index, prog_id in enumerate(query.ids):
        flags = query.prog_flags[index] if query.prog_flags is not None else query.attach_flags
        record = program_record(prog_id, flags)
        if record is not None:
            out.append(record)
    return tuple(out)


def program_record(prog_id: int, attach_flags: int = 0) -> ProgramRecord | None:
    try:
        with bpf.prog_fd_by_id(prog_id) as fd:
            info = bpf.prog_info(fd)
    except NotFound:
        return None
    return ProgramRecord(
        info.id,
        info.name,
        info.tag,
        attach_flags,
        info.xlated,
        info.blinded,
        tuple(sorted(helper_names(info.xlated).items())),
    )


def pinned_record(path: str) -> ProgramRecord | None:
    try:
        with bpf.obj_get(path) as fd:
            info = bpf.prog_info(fd)
    except CgdevError:
        return None
    return ProgramRecord(
        info.id,
        info.name,
        info.tag,
        0,
        info.xlated,
        info.blinded,
        tuple(sorted(helper_names(info.xlated).items())),
    )


def helper_names(xlated: bytes) -> dict[int, str]:
    """The kernel's names for the helper calls of a dump (empty for the usual program: no call)."""
    from cgdev.adapters.kernel_symbols import helper_symbols
    from cgdev.core.isa import Opcode, decode

    try:
        calls = {i.imm for i in decode(xlated) if i.code == Opcode.CALL and i.src == 0}
    except CgdevError:  # not decodable: the lifter says so where it matters
        return {}
    return helper_symbols(calls)


def node_of(path: str) -> DeviceNode | None:
    """``(type, major, minor)`` of a device node, None if it is missing or not a device."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat_mod.S_ISCHR(st.st_mode):
        return "c", os.major(st.st_rdev), os.minor(st.st_rdev)
    if stat_mod.S_ISBLK(st.st_mode):
        return "b", os.major(st.st_rdev), os.minor(st.st_rdev)
    return None


def container_devices(root: str) -> dict[str, DeviceNode]:
    """Device nodes under ``<root>/dev`` (two levels), keyed by the path the container sees."""
    found: dict[str, DeviceNode] = {}
    stack = [("/dev", 0)]
    while stack and len(found) < MAX_DEVICE_NODES:
        inner, depth = stack.pop()
        try:
            with os.scandir(root.rstrip("/") + inner) as entries:
                items = list(entries)
        except OSError:
            continue
        for entry in items:
            path = f"{inner}/{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < 1:
                        stack.append((path, depth + 1))
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat_mod.S_ISCHR(st.st_mode) or stat_mod.S_ISBLK(st.st_mode):
                kind: Literal["b", "c"] = "c" if stat_mod.S_ISCHR(st.st_mode) else "b"
                found[path] = (kind, os.major(st.st_rdev), os.minor(st.st_rdev))
    return found


def systemd_view(rel: str, systemd_root: str) -> str | None:
    """A cgroup (relative to our mount) as systemd names it, or None when outside its tree."""
    root = "/" + systemd_root.strip("/")
    if root == "/":
        return rel
    if rel == root:
        return "/"
    if rel.startswith(root + "/"):
        return rel[len(root) :]
    return None


def unit_record(systemd: Any, sd_path: str, systemd_fs_root: str) -> UnitRecord | None:
    """The unit whose own cgroup is ``sd_path`` (systemd's naming), if any."""
    name = "-.slice" if sd_path == "/" else sd_path.rsplit("/", 1)[-1]
    if not name.endswith(UNIT_SUFFIXES):
        return None
    try:
        props = systemd.unit_properties(name)
    except NotFound:
        return None
    if (props.control_group or "/") != sd_path:
        return None
    nodes: dict[str, DeviceNode] = {}
    for path, _access in props.device_allow:
        if path.startswith("/dev/") and not path.startswith(_TEXTUAL_PREFIXES):
            node = node_of(os.path.join(systemd_fs_root, path.lstrip("/")))
            if node is not None:
                nodes[path] = node
    return UnitRecord(
        unit=name,
        control_group=props.control_group,
        delegate=props.delegate,
        device_policy=props.device_policy,
        device_allow=tuple((str(p), str(a)) for p, a in props.device_allow),
        bpf_program=tuple((str(k), str(p)) for k, p in props.bpf_program),
        need_daemon_reload=props.need_daemon_reload,
        device_nodes=nodes,
        on_disk=_on_disk(props, systemd_fs_root) if props.need_daemon_reload else None,
    )


def _on_disk(props: Any, systemd_fs_root: str) -> Any:
    """What a daemon-reload would load for a unit whose files changed (``adapters.unit_files``)."""
    from cgdev.adapters.unit_files import read_unit_devices

    return read_unit_devices(systemd_fs_root, props.unit, props.fragment_path, props.drop_in_paths)


def read_or_empty(path: str) -> str:
    """A small kernel text file (``/proc/devices``), or "" where it cannot be read (offline, gone)."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def collect(
    target: Target,
    *,
    mount: str | None = None,
    systemd: Any = None,
    systemd_status: str = "off",
    systemd_root: str = "/",
    systemd_fs_root: str = "/",
    with_devices: bool = True,
) -> Inspection:
    """Read every layer of ``target`` from the kernel (and systemd, when a client is given)."""
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    layers = []
    pins: dict[str, ProgramRecord] = {}
    for host_path in cgroupfs.ancestors(target.cgroup, mount=base):
        rel = cgroupfs.relative(host_path, base)
        unit = None
        if systemd is not None:
            sd_path = systemd_view(rel, systemd_root)
            if sd_path is not None:
                unit = unit_record(systemd, sd_path, systemd_fs_root)
        if unit is not None:
            for kind, pin in unit.bpf_program:
                if kind == "device" and pin not in pins:
                    record = pinned_record(os.path.join(systemd_fs_root, pin.lstrip("/")))
                    if record is not None:
                        pins[pin] = record
        layers.append(Layer(rel, program_records(host_path), unit))
    v1 = None
    devices: dict[str, DeviceNode] = {}
    if target.pid is not None:
        try:
            lines = cgroupfs.v1_devices_list(target.pid)
        except NotFound:  # the process ended between resolving and reading: no v1 layer to show
            lines = None
        v1 = None if lines is None else tuple(lines)
        if with_devices:
            devices = container_devices(f"/proc/{target.pid}/root")
    return Inspection(
        target=target,
        layers=tuple(layers),
        proc_devices=read_or_empty("/proc/devices"),
        v1_devices=v1,
        pins=pins,
        devices=devices,
        systemd=systemd_status if systemd is not None or systemd_status != "off" else "off",
        systemd_version=systemd_version(systemd),
    )


def refresh(
    before: Inspection,
    *,
    units: frozenset[str] = frozenset(),
    mount: str | None = None,
    systemd: Any = None,
    systemd_fs_root: str = "/",
) -> Inspection:
    """``before`` re-read where a change can have made it differ: every layer's programs and
    every pin (from the kernel, each time: that is what a verification must see), the v1 devices
    list, and the properties of ``units`` (the ones the change wrote).

    Why not a second ``collect``: the other units, the container's device nodes, /proc/devices
    and systemd's version cannot change because of what cgdev did, and reading them again costs
    a D-Bus round trip per unit for nothing (``cgdev grant`` is latency-bound).
    """
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    layers = []
    for layer in before.layers:
        unit = layer.unit
        if unit is not None and unit.unit in units and systemd is not None:
            unit = unit_record(systemd, unit.control_group or "/", systemd_fs_root)
        layers.append(
            Layer(layer.cgroup, program_records(cgroupfs.cgroup_path(layer.cgroup, mount=base)), unit)
        )
    pins: dict[str, ProgramRecord] = {}
    for layer in layers:
        for kind, pin in layer.unit.bpf_program if layer.unit is not None else ():
            if kind == "device" and pin not in pins:
                record = pinned_record(os.path.join(systemd_fs_root, pin.lstrip("/")))
                if record is not None:
                    pins[pin] = record
    v1 = before.v1_devices
    if before.target.pid is not None and v1 is not None:
        try:
            lines = cgroupfs.v1_devices_list(before.target.pid)
        except NotFound:
            lines = None
        v1 = None if lines is None else tuple(lines)
    return msgspec.structs.replace(before, layers=tuple(layers), pins=pins, v1_devices=v1)


def systemd_version(systemd: Any) -> str:
    """systemd's ``Version``, or "" without a client or an answer (the reload model then is 252's)."""
    if systemd is None:
        return ""
    try:
        return str(systemd.version())
    except CgdevError:
        return ""
