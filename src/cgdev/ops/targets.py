"""Turn what a user types (a PID, a cgroup, a container id or name, a unit) into one cgroup.

People name containers the way their tools show them: a PID from ``ps``, a short id from
``crictl ps``, a pod UID from ``kubectl``, a scope from ``systemctl``.  The enforcement point is a
cgroup, so every form resolves to one cgroup path (relative to the cgroup2 mount) plus whatever is
known about the container (runtime, id, init pid, annotations), which later decides where device
paths are looked up and which findings apply.

Resolution order, first hit wins: an all-digit spec is a PID when that process exists (else it
may still be an id prefix); a spec starting with ``/`` (or
containing one) is a cgroup path; a name with a systemd unit suffix is a unit (through systemd
when it is reachable, else by its cgroup's name); otherwise a container id, unique id prefix or
name, from the runtimes' state and from engine-named cgroups (``crio-<id>.scope``,
``libpod-<id>.scope``, ``cri-containerd-<id>.scope``, ``docker-<id>.scope``, a 64-hex cgroup of
the cgroupfs drivers) and Kubernetes pod slices (``kubepods-*-pod<uid>.slice``).  No match and
several matches are both one-line input errors; the latter lists the candidates.

Finding an engine-named cgroup must not cost a walk of the whole tree (a node with thousands of
containers has tens of thousands of cgroups, and explain has to answer in well under 150 ms): the
search goes breadth-first, stops at the first exact id, and does not look inside a container's
own cgroup (that is where its sub-cgroups live, never another container) unless nothing was found
outside them, e.g. a container nested in another one.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

import msgspec

from cgdev.adapters import cgroupfs
from cgdev.adapters.runtime_state import ContainerState, bundle_seen_from_here, list_containers
from cgdev.core.cgroup_names import classify_name, container_of_cgroup
from cgdev.errors import CgdevError, InputError, NeedsRoot, NotFound

UNIT_SUFFIXES: Final = (".scope", ".service", ".slice", ".socket", ".mount", ".swap")
MAX_LISTED: Final = 8


class TargetKind(StrEnum):
    PID = "pid"
    CGROUP = "cgroup"
    UNIT = "unit"
    CONTAINER = "container"
    POD = "pod"


class Target(msgspec.Struct, frozen=True):
    """A resolved target: its cgroup (relative to the cgroup2 mount) and what is known about it.

    Its JSON (explain's and show's ``target``, a snapshot's) is the struct itself.
    """

    spec: str
    kind: TargetKind
    cgroup: str
    pid: int | None = None
    runtime: str | None = None
    container_id: str | None = None
    name: str | None = None
    unit: str | None = None
    annotations: dict[str, str] = {}
    bundle: str | None = None  # the OCI bundle as seen from here (its config.json holds the spec)
    pod_uid: str | None = None  # the Kubernetes pod, read from the cgroup's name (no API server)

    @staticmethod
    def of_container(spec: str, cgroup: str, state: ContainerState) -> Target:
        """A container found in a runtime's state: what the state file knows about it."""
        return Target(
            spec,
            TargetKind.CONTAINER,
            cgroup,
            pid=state.pid,
            runtime=state.runtime,
            container_id=state.id,
            name=state.name,
            annotations=dict(state.annotations),
            bundle=bundle_seen_from_here(state.bundle, state.state_file),
        )


class NamedCgroup(msgspec.Struct, frozen=True):
    """A cgroup whose name says what it is: an engine's container scope or a pod slice."""

    kind: TargetKind  # container | pod
    engine: str  # crio, docker, ..., cgroupfs, kubepods
    id: str
    cgroup: str  # relative to the mount


def classify(name: str) -> tuple[TargetKind, str, str] | None:
    """``(kind, engine, id)`` when a cgroup's own name identifies a container or a pod
    (``core.cgroup_names.classify_name``: the one reader of engine and kubelet names)."""
    named = classify_name(name)
    return None if named is None else (TargetKind(named[0].value), named[1], named[2])


def _subdirs(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):  # a cgroup that went away meanwhile
        return []
    except PermissionError:
        raise NeedsRoot(f"listing cgroup {path} needs root") from None


def find_named(spec: str, mount: str) -> list[NamedCgroup]:
    """Engine-named cgroups whose id starts with ``spec``; just the one when an id equals it.

    Breadth-first, so the usual places (``system.slice``, ``machine.slice``, ``kubepods*``, an
    engine's cgroupfs parent) are read before anything deeper; the inside of a container cgroup
    is read only when nothing matched elsewhere.
    """
    wanted = spec.replace("_", "-")  # a pod UID as kubepods spells it
    found: list[NamedCgroup] = []
    queue: deque[str] = deque([mount])
    inside_containers: list[str] = []
    while queue or (not found and inside_containers):
        if not queue:
            queue.extend(inside_containers)
            inside_containers.clear()
        for entry in _subdirs(queue.popleft()):
            named = classify(entry.name)
            if named is None:
                queue.append(entry.path)
                continue
            (inside_containers if named[0] == TargetKind.CONTAINER else queue).append(entry.path)
            key = (
                wanted if named[0] == TargetKind.POD else spec
            )  # only pod UIDs are spelled with _ in cgroups
            if named[2].startswith(key):
                cgroup = NamedCgroup(named[0], named[1], named[2], cgroupfs.relative(entry.path, mount))
                if named[2] == key:
                    return [cgroup]
                found.append(cgroup)
    return found


def cgroup_pids(host_path: str) -> list[int]:
    try:
        with open(os.path.join(host_path, "cgroup.procs")) as fh:
            return [int(x) for x in fh.read().split()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def process_leaf(host_path: str) -> str:
    """The cgroup where a container's processes really are.

    crun with the systemd driver puts them one level down (``<scope>/container``), and the
    programs there count, so a scope without processes and with one child is followed down.
    """
    current = host_path
    while current.endswith(".scope") and not cgroup_pids(current):  # never into a slice's children
        try:
            with os.scandir(current) as entries:
                children = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            break
        if len(children) != 1:
            break
        current = children[0]
    return current


def _pid_target(spec: str, mount: str) -> Target:
    pid = int(spec)
    try:
        rel = cgroupfs.process_cgroup(pid)
    except NotFound:
        raise NotFound(f"target {spec}: no such process") from None
    return Target(spec, TargetKind.PID, rel, pid=pid)


def _cgroup_target(spec: str, mount: str) -> Target:
    host, rel = cgroupfs.locate(spec, mount=mount)  # '..' never leaves the mount
    if not os.path.isdir(host):
        raise NotFound(f"target {spec}: no such cgroup under {mount}")
    pids = cgroup_pids(host)
    return Target(spec, TargetKind.CGROUP, rel, pid=pids[0] if pids else None)


class _Candidate(msgspec.Struct, frozen=True):
    label: str
    target: Target
    exact: bool


# Where runtimes see cgroup2 mounted when they record a host path (runc's cgroup_paths): ours,
# or the usual mount points of a runtime in its own mount namespace (a pure-v2 or hybrid host).
_USUAL_MOUNTS: Final = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def _recorded_cgroup(state: ContainerState, mount: str) -> str | None:
    """The recorded cgroup relative to a cgroup2 root (crun and youki record it that way)."""
    if state.cgroup is None:
        return None
    for base in (mount.rstrip("/"), *_USUAL_MOUNTS):
        if state.cgroup.startswith(base + "/"):
            return cgroupfs.relative(state.cgroup, base)
    return "/" + state.cgroup.strip("/")


def _state_cgroup(state: ContainerState, mount: str) -> tuple[str | None, ContainerState]:
    """The container's cgroup, and its state with the pid dropped when that pid is stale.

    The init pid tells where the container runs in *our* view (a runtime in a cgroup namespace
    records paths relative to it); but a stopped container's pid may have been reused by another
    process, so the pid is trusted only when its cgroup agrees with the recorded one (equal, the
    recorded path seen from outside a cgroup namespace, or a sub-cgroup of it).
    """
    recorded = _recorded_cgroup(state, mount)
    if state.pid is not None:
        try:
            live = cgroupfs.process_cgroup(state.pid)
        except CgdevError:
            live = None
        if live is not None and (
            recorded is None or (live.rstrip("/") + "/").find(recorded.rstrip("/") + "/") >= 0
        ):
            return live, state
        state = msgspec.structs.replace(state, pid=None)
    return recorded, state


def _state_candidates(spec: str, states: Sequence[ContainerState], mount: str) -> list[_Candidate]:
    out = []
    for state in states:
        exact = spec == state.id or state.named(spec)
        if not exact and not state.id.startswith(spec):
            continue
        cgroup, state = _state_cgroup(state, mount)
        if cgroup is None:
            continue
        target = Target.of_container(spec, cgroup, state)
        out.append(_Candidate(f"{state.runtime} {state.id}", target, exact))
    return out


def _named_candidates(spec: str, named: Sequence[NamedCgroup], mount: str) -> list[_Candidate]:
    out = []
    for entry in named:
        wanted = spec.replace("_", "-") if entry.kind == TargetKind.POD else spec  # pod UIDs: _ for -
        if not entry.id.startswith(wanted):
            continue
        host = cgroupfs.cgroup_path(entry.cgroup, mount=mount)
        leaf = process_leaf(host) if entry.kind == TargetKind.CONTAINER else host
        pids = cgroup_pids(leaf)
        target = Target(
            spec,
            entry.kind,
            cgroupfs.relative(leaf, mount),
            pid=pids[0] if pids else None,
            runtime=entry.engine,
            container_id=entry.id if entry.kind == TargetKind.CONTAINER else None,
            name=entry.id if entry.kind == TargetKind.POD else None,
            unit=os.path.basename(entry.cgroup) if entry.cgroup.endswith(UNIT_SUFFIXES) else None,
        )
        out.append(_Candidate(f"{entry.engine} {entry.cgroup}", target, entry.id == wanted))
    return out


def _unit_target(spec: str, mount: str, systemd: Any, systemd_root: str) -> Target | None:
    if systemd is not None:
        try:
            control_group = systemd.control_group(spec)
        except NotFound:
            return None
        if control_group:
            rel = "/" + "/".join(p for p in (systemd_root + "/" + control_group).split("/") if p)
            host = process_leaf(cgroupfs.cgroup_path(rel, mount=mount))
            pids = cgroup_pids(host)
            return Target(
                spec,
                TargetKind.UNIT,
                cgroupfs.relative(host, mount),
                pid=pids[0] if pids else None,
                unit=spec,
            )
    matches = [p for p in cgroupfs.walk(mount) if os.path.basename(p) == spec]
    if len(matches) > 1:
        listed = ", ".join(cgroupfs.relative(p, mount) for p in matches[:MAX_LISTED])
        raise InputError(f"target {spec}: ambiguous, {len(matches)} cgroups have that name: {listed}")
    if not matches:
        return None
    host = process_leaf(matches[0])
    pids = cgroup_pids(host)
    return Target(
        spec, TargetKind.UNIT, cgroupfs.relative(host, mount), pid=pids[0] if pids else None, unit=spec
    )


def _pick(spec: str, candidates: list[_Candidate]) -> Target:
    unique: dict[str, _Candidate] = {}
    for cand in candidates:
        unique.setdefault(cand.target.cgroup, cand)
    chosen = list(unique.values())
    exact = [c for c in chosen if c.exact]
    if len(exact) == 1:
        return exact[0].target
    if len(chosen) == 1:
        return chosen[0].target
    pool = exact or chosen
    listed = ", ".join(c.label for c in pool[:MAX_LISTED])
    more = f" (and {len(pool) - MAX_LISTED} more)" if len(pool) > MAX_LISTED else ""
    raise InputError(f"target {spec}: ambiguous, matches {len(pool)} containers: {listed}{more}")


def pod_containers(pod: Target, mount: str) -> list[Target]:
    """The containers of a pod: the engine-named cgroups under its slice (breadth-first, not
    inside a container), each at the cgroup its processes are in (``process_leaf``).

    A pod is not an enforcement point: each container has its own programs below the slice, so a
    verdict "for the pod" would be the slice's alone (issue 12: "allow" while a container got
    EPERM).  Callers answer for each container, or refuse the pod as ambiguous.
    """
    out: list[Target] = []
    queue: deque[str] = deque([cgroupfs.cgroup_path(pod.cgroup, mount=mount)])
    while queue:
        for entry in _subdirs(queue.popleft()):
            named = classify(entry.name)
            if named is None or named[0] != TargetKind.CONTAINER:
                queue.append(entry.path)
                continue
            leaf = process_leaf(entry.path)
            pids = cgroup_pids(leaf)
            out.append(
                Target(
                    pod.spec,
                    TargetKind.CONTAINER,
                    cgroupfs.relative(leaf, mount),
                    pid=pids[0] if pids else None,
                    runtime=named[1],
                    container_id=named[2],
                    unit=entry.name if entry.name.endswith(UNIT_SUFFIXES) else None,
                    annotations={"io.kubernetes.pod.uid": pod.name} if pod.name else {},
                )
            )
    return sorted(out, key=lambda t: t.cgroup)


def with_cgroup_names(target: Target) -> Target:
    """``target`` with what its cgroup's name says filled in where nothing better is known: the
    pod UID, and the engine and container id of a target named by PID, path or unit.

    Names alone, no API server (``core.cgroup_names``), so audit, explain and the watch daemon
    show the pod and container on any node.
    """
    named = container_of_cgroup(target.cgroup)
    if named is None:
        return target
    changes: dict[str, Any] = {}
    if target.pod_uid is None and named.pod_uid is not None:
        changes["pod_uid"] = named.pod_uid
    if target.container_id is None and target.runtime is None and target.kind != TargetKind.POD:
        changes.update(container_id=named.container_id, runtime=named.engine.value)
    return msgspec.structs.replace(target, **changes) if changes else target


def container_label(target: Target) -> str:
    """How a list of containers names one: ``crio 0123456789ab``, or its cgroup."""
    if target.container_id:
        return f"{target.runtime or 'container'} {target.container_id[:12]}"
    return target.cgroup


def resolve(
    spec: str,
    *,
    mount: str | None = None,
    runtime_roots: Sequence[tuple[str, str]] | None = None,
    systemd: Any = None,
    systemd_root: str = "/",
) -> Target:
    """Resolve ``spec`` to one target, or raise NotFound / InputError (one line, candidates listed).

    ``systemd`` is an optional ``SystemdClient`` used for unit names; ``systemd_root`` is where
    systemd's cgroup root sits in our cgroup2 view (``/`` on a host, the lab's subtree in a lab).
    A pod resolves to its one container; a pod of several is ambiguous (``resolve_all`` gives
    each).
    """
    targets = resolve_all(spec, mount=mount, runtime_roots=runtime_roots, systemd=systemd,
                          systemd_root=systemd_root)  # fmt: skip
    if len(targets) == 1:
        return targets[0]
    listed = ", ".join(container_label(t) for t in targets[:MAX_LISTED])
    more = f" (and {len(targets) - MAX_LISTED} more)" if len(targets) > MAX_LISTED else ""
    raise InputError(
        f"target {spec}: ambiguous, a pod of {len(targets)} containers: {listed}{more}; name one "
        "(explain answers for each)"
    )


def resolve_all(
    spec: str,
    *,
    mount: str | None = None,
    runtime_roots: Sequence[tuple[str, str]] | None = None,
    systemd: Any = None,
    systemd_root: str = "/",
) -> list[Target]:
    """The containers ``spec`` names: one target, or each container of a pod (the pod's own
    target when it holds none)."""
    if not spec or not spec.isprintable():
        raise InputError(f"target: {spec!r} is empty or not printable")
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    target = _resolve_one(spec, base, runtime_roots, systemd, systemd_root)
    if target.kind != TargetKind.POD:
        return [with_cgroup_names(target)]
    pod = msgspec.structs.replace(target, pod_uid=target.name)
    return [with_cgroup_names(t) for t in pod_containers(pod, base)] or [pod]


def _resolve_one(
    spec: str,
    mount: str | None,
    runtime_roots: Sequence[tuple[str, str]] | None,
    systemd: Any,
    systemd_root: str,
) -> Target:
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    if spec.isdigit() and os.path.exists(f"/proc/{int(spec)}"):
        return _pid_target(spec, base)
    if "/" in spec:
        return _cgroup_target(spec, base)
    if spec.endswith(UNIT_SUFFIXES):
        found = _unit_target(spec, base, systemd, systemd_root)
        if found is not None:
            return found
    candidates = _state_candidates(spec, list_containers(runtime_roots), base)
    if not any(c.exact for c in candidates):
        candidates += _named_candidates(spec, find_named(spec, base), base)
    if not candidates and spec.isdigit():
        raise NotFound(f"target {spec}: no such process (and no container id starts with {spec})")
    if not candidates:
        raise NotFound(f"target {spec}: no process, cgroup, container or unit by that name")
    return _pick(spec, candidates)


def container_targets(
    mount: str, walk_root: str, roots: Sequence[tuple[str, str]] | None
) -> tuple[list[Target], int]:
    """Every container under ``walk_root``: the cgroups an engine or kubelet named (one walk; a node
    agent may see cgroups whose runtime state it cannot read) plus those the runtimes' state names
    (with a live process).  Also the number of cgroups walked.  audit and watch discover this way."""
    found: dict[str, Target] = {}
    walked = 0
    for path in cgroupfs.walk(walk_root):
        walked += 1
        kind = classify(os.path.basename(path))
        if kind is None or kind[0] != TargetKind.CONTAINER:
            continue
        leaf = process_leaf(path)
        rel = cgroupfs.relative(leaf, mount)
        if rel not in found:
            pids = cgroup_pids(leaf)
            pid = pids[0] if pids else None
            found[rel] = Target(
                rel, TargetKind.CONTAINER, rel, pid=pid, runtime=kind[1], container_id=kind[2]
            )
    walk_rel = cgroupfs.relative(walk_root, mount)
    for state in list_containers(roots):
        if state.pid is None:
            continue
        try:
            rel = cgroupfs.process_cgroup(state.pid)
        except NotFound:  # a stale state file: the container's process is gone
            continue
        if walk_rel != "/" and not (rel == walk_rel or rel.startswith(walk_rel + "/")):
            continue
        found[rel] = Target.of_container(state.id, rel, state)
    return sorted((with_cgroup_names(t) for t in found.values()), key=lambda t: t.cgroup), walked
