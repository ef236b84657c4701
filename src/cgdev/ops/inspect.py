"""One way to look at a target: a ``HostView`` says where to look, ``inspect`` looks.

Every front end (the CLI, the lab, later the OCI hook, the wrapper runtime and the node daemon)
describes the machine it looks at as a ``HostView`` -- where the runtimes keep their state, which
D-Bus reaches systemd, where systemd's cgroup root and root directory are in our view -- and calls
``inspect``; no front end opens a bus or walks cgroups itself, so they all answer alike.

A nested systemd (the lab, a kind or minikube node container, a chroot with its own systemd) is
one constructor call: ``HostView.for_ns_pid(pid)`` or ``HostView.for_root(dir)`` derive all four
settings that would otherwise take four command-line flags.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

import msgspec

from cgdev.adapters import cgroupfs
from cgdev.adapters.runtime_state import DEFAULT_ROOTS, runtime_roots
from cgdev.errors import BusUnreachable, InputError, NotFound
from cgdev.ops.layers import Inspection, Layer, SystemdStatus
from cgdev.ops.targets import Target

BUS_SOCKET: Final = "run/dbus/system_bus_socket"
_PROC_ROOT: Final = re.compile(r"^/proc/(\d+)/root/?$")


class HostView(msgspec.Struct, frozen=True, kw_only=True):
    """Where a host's container state and systemd are, as seen from this process.

    ``bus`` None is the default system bus; ``require_bus`` says a bus that does not answer is an
    error (an address the user gave) rather than a reason to go on without systemd (a default or
    derived one, which may simply not run there).  ``systemd_root`` is systemd's cgroup root in our
    cgroup2 tree, ``systemd_fs_root`` the directory systemd sees as ``/`` (its pins, DeviceAllow
    paths).
    """

    runtime_roots: tuple[tuple[str, str], ...] = DEFAULT_ROOTS
    bus: str | None = None
    require_bus: bool = False
    systemd: bool = True
    systemd_root: str = "/"
    systemd_fs_root: str = "/"

    @staticmethod
    def local() -> HostView:
        """This machine as it is: the default runtime roots, the system bus, systemd at ``/``."""
        return HostView()

    @staticmethod
    def for_ns_pid(pid: int) -> HostView:
        """The host a process's namespaces show (the lab's PID 1, a node container's init)."""
        if pid <= 0 or not os.path.isdir(f"/proc/{pid}"):
            raise NotFound("no such process", field="ns_pid", value=pid)
        return HostView.for_root(f"/proc/{pid}/root")

    @staticmethod
    def for_root(directory: str, *, systemd_root: str | None = None) -> HostView:
        """The host whose root directory is ``directory``; everything else derived from it.

        Runtime state under ``DIR/run``, the bus socket ``DIR/run/dbus/system_bus_socket``,
        systemd's files under ``DIR``.  systemd's cgroup root: for ``/proc/PID/root``, the root of
        that process's cgroup namespace in our tree (what its cgroup2 mount shows); for a plain
        directory (a chroot) ``systemd_root``, default ``/``.
        """
        root = os.path.normpath(directory)
        if not os.path.isdir(root):
            raise InputError("not a directory", field="host_root", value=directory)
        holder = _PROC_ROOT.match(root + "/")
        if systemd_root is None:
            systemd_root = "/" if holder is None else namespace_cgroup_root(int(holder.group(1)))
        base = root.rstrip("/")
        return HostView(
            runtime_roots=tuple((name, f"{base}/{path.lstrip('/')}") for name, path in DEFAULT_ROOTS),
            bus=f"unix:path={base}/{BUS_SOCKET}",
            systemd_root=systemd_root,
            systemd_fs_root=root,
        )

    def with_runtime_roots(self, directories: Sequence[str]) -> HostView:
        """This host with more runtime state roots, each checked to be a directory (named after
        its last component, as the runtimes name theirs)."""
        extra = runtime_roots(directories)[len(DEFAULT_ROOTS) :]
        return msgspec.structs.replace(self, runtime_roots=self.runtime_roots + tuple(extra))


def namespace_cgroup_root(pid: int) -> str:
    """The root of ``pid``'s cgroup namespace, relative to our cgroup2 mount.

    Its cgroup2 mount's root field, read from here, is that root in our view (the kernel shows a
    cgroup mount's root relative to the reader's namespace).  Without one (no cgroup2 mounted in
    there), the cgroup of the process, less systemd's ``/init.scope`` when it is a PID 1.
    """
    ours = _our_cgroup2_root()
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            theirs = [m for m in cgroupfs.parse_mountinfo(fh.read()) if m.fstype == "cgroup2"]
    except OSError:
        theirs = []
    if theirs:
        return _under(theirs[0].root, ours)
    try:
        own = cgroupfs.process_cgroup(pid)
    except NotFound:
        raise NotFound("no such process", field="ns_pid", value=pid) from None
    return own.removesuffix("/init.scope") or "/"


def _our_cgroup2_root() -> str:
    mount = cgroupfs.cgroup2_mount()
    return next((m.root for m in cgroupfs.mounts() if m.mountpoint == mount and m.fstype == "cgroup2"), "/")


def _under(path: str, root: str) -> str:
    """``path`` (in the kernel's hierarchy) relative to our mount's ``root``."""
    path, root = "/" + path.strip("/"), "/" + root.strip("/")
    if root == "/":
        return path
    if path == root:
        return "/"
    return path[len(root) :] if path.startswith(root + "/") else path


@contextlib.contextmanager
def systemd_session(host: HostView) -> Iterator[tuple[Any, str]]:
    """A systemd client for ``host`` (None when not asked or unreachable) and the status text
    results record; the connection is closed on leaving, whatever happened."""
    if not host.systemd:
        yield None, SystemdStatus.OFF
        return
    from cgdev.adapters.systemd_client import SystemdClient

    try:
        client = SystemdClient(host.bus)
    except BusUnreachable as err:
        if host.require_bus:
            raise
        yield None, f"{SystemdStatus.UNREACHABLE}: {err}"
        return
    try:
        yield client, SystemdStatus.OK
    finally:
        client.close()


def systemd_warning(status: str) -> str | None:
    """The warning a front end prints when systemd could not be asked (None: nothing to say)."""
    prefix = f"{SystemdStatus.UNREACHABLE}: "
    return f"systemd not asked: {status[len(prefix) :]}" if status.startswith(prefix) else None


def inspect(target_spec: str, host: HostView, *, with_devices: bool = True) -> Inspection:
    """Resolve ``target_spec`` on ``host`` and collect its layers (kernel, systemd, device nodes)."""
    from cgdev.ops.targets import resolve

    with systemd_session(host) as (client, status):
        target = resolve(
            target_spec, runtime_roots=host.runtime_roots, systemd=client, systemd_root=host.systemd_root
        )
        return _collect(target, host, client, status, with_devices)


def _collect(target: Target, host: HostView, client: Any, status: str, with_devices: bool) -> Inspection:
    from cgdev.ops.collect import collect

    return collect(
        target,
        systemd=client,
        systemd_status=status,
        systemd_root=host.systemd_root,
        systemd_fs_root=host.systemd_fs_root,
        with_devices=with_devices,
    )


def inspect_all(target_spec: str, host: HostView, *, with_devices: bool = True) -> list[Inspection]:
    """Like ``inspect``, for every container ``target_spec`` names: one, or each container of a
    pod (a pod is not an enforcement point; its containers are)."""
    from cgdev.ops.targets import resolve_all

    with systemd_session(host) as (client, status):
        targets = resolve_all(
            target_spec, runtime_roots=host.runtime_roots, systemd=client, systemd_root=host.systemd_root
        )
        return [_collect(target, host, client, status, with_devices) for target in targets]


def systemd_layers(host: HostView, cgroup: str) -> list[Layer]:
    """The device programs on every level from systemd's cgroup root down to ``cgroup`` (named as
    that systemd names it, e.g. a lab's own view), outermost first; no unit, no bus."""
    from cgdev.ops.collect import program_records

    mount = cgroupfs.cgroup2_mount()
    root = cgroupfs.cgroup_path(host.systemd_root, mount=mount)
    leaf = cgroupfs.cgroup_path(host.systemd_root.rstrip("/") + "/" + cgroup.strip("/"), mount=mount)
    return [
        Layer(cgroupfs.relative(path, root), program_records(path))
        for path in cgroupfs.ancestors(leaf, mount=root)
    ]
