"""The watcher's I/O: find containers, poll their program ids, look at them, repair them (issue 10).

``ops.reconcile`` decides; this module carries out what it decides, synchronously, one call per
action, so the daemon front end can run each in a worker thread.  Everything here reuses the
one-shot commands' pieces: ``collect`` and the layer analysis (explain's), ``change_devices``
(grant's transaction, durable: it writes the unit's DeviceAllow too), ``entitlements`` (the state
file grant writes and the watcher restores from), ``spec_devices.spec_rules`` (the container's own
spec) -- and one ``LiftCache`` for the daemon's life, so a program is lifted once per distinct
instructions, whatever its id.

Cheap first: between events only ``BPF_PROG_QUERY`` runs (program ids of every cgroup on each
watched path, each cgroup asked once per poll); a container is looked at again only when its ids
change or systemd says something changed.

The seam for the OCI hook's node policy (which annotation entitlements the node trusts): a
``trusted`` callable given to ``Watch`` that returns, per target, the devices the policy entitles
(as ``Wanted`` with source ``policy``).  Without it only the entitlements file and the spec count:
an annotation alone never entitles.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cgdev.adapters import bpf, cgroupfs
from cgdev.core.model import Access
from cgdev.errors import CgdevError, NotFound
from cgdev.ops import entitlements
from cgdev.ops.layers import LiftCache, all_allow, analyse_layers, effective_policy
from cgdev.ops.reconcile import DeviceKey, DeviceState, Observation, Wanted, WantedSource, wanted_union
from cgdev.ops.targets import Target, TargetKind

if TYPE_CHECKING:
    from cgdev.ops.inspect import HostView

Trusted = Callable[[Target], Sequence[Wanted]]


def runtime_defaults(runtime: str | None) -> tuple[Wanted, ...]:
    """The exact devices the container's runtime allows whatever its spec says (runc's and crun's
    forced defaults: /dev/null, zero, full, random, urandom, tty, ptmx): the container had them
    from its start, so losing one is a loss (a ``set-property DeviceAllow=`` took /dev/null and
    nothing noticed).  For crun, only what every crun release forces (1.8.1 lacks /dev/net/tun),
    never more than the container surely had; wildcards (ptys, mknod of anything) are not
    devices to check.  Unknown runtime: none."""
    from cgdev.core.semantics.defaults import forced_defaults

    name = (runtime or "").lower()
    readings = (
        ("runc",) if name.startswith("runc") else ("crun", "crun-1.8") if name.startswith("crun") else ()
    )
    exact = [
        {(str(r.type), r.major, r.minor, r.access) for r in forced_defaults(reading)
         if r.allow and r.major is not None and r.minor is not None}
        for reading in readings
    ]  # fmt: skip
    common = set.intersection(*exact) if exact else set()
    return tuple(
        Wanted((t, major, minor), access, WantedSource.RUNTIME_DEFAULT)
        for t, major, minor, access in sorted(common)
    )


def node_policy_trust(policy_path: str, cdi_dirs: Sequence[str]) -> Trusted:
    """The node policy's decision for a running container, made as the hook makes it at creation
    (``ops.entitled.entitled_devices``): only claims the policy trusts, never wider than it or the
    CDI spec lists, so an annotation alone never entitles the watcher to repair anything.

    Why cached: a container's annotations do not change while it runs, and the decision reads the
    policy and the CDI specs; it is made once per container and policy file version (mtime), not
    at every poll.  A policy or spec that cannot be read entitles nothing (the error is the
    hook's to report at creation; the watcher must not repair on a guess).
    """
    from cgdev.core.cdi import access_bits
    from cgdev.errors import CgdevError
    from cgdev.ops.entitled import entitled_devices

    cache: dict[tuple[str, str, float], tuple[Wanted, ...]] = {}

    def trusted(target: Target) -> Sequence[Wanted]:
        try:
            version = os.stat(policy_path).st_mtime
        except OSError:
            version = 0.0  # no policy file: the default policy (installed CDI specs only)
        key = (target.cgroup, target.container_id or "", version)
        found = cache.get(key)
        if found is None:
            try:
                decision = entitled_devices(dict(target.annotations), {}, policy_path=policy_path,
                                            cdi_dirs=cdi_dirs)  # fmt: skip
            except (CgdevError, OSError):
                found = ()
            else:
                rules = decision.resolution.device_rules if decision.resolution is not None else ()
                found = tuple(
                    Wanted((r.type, r.major, r.minor), access_bits(r.access), WantedSource.POLICY)
                    for r in rules
                    if r.allow and r.type in ("b", "c") and access_bits(r.access)
                )
            cache[key] = found
        return found

    return trusted


IdsOfPath = tuple[tuple[int, ...], ...]


def _bits(text: str) -> int:
    return int(Access.parse(text, "access")) if text else 0


class Watch:
    """The watcher's view of one host: containers, their entitlements, their programs.

    ``client`` is a ``SystemdClient`` (or None: no systemd); the daemon replaces it after a
    reconnect.  ``mount`` is the cgroup2 mount (looked up once).
    """

    def __init__(self, host: HostView, *, client: Any = None, trusted: Trusted | None = None,
                 mount: str | None = None) -> None:  # fmt: skip
        self.host = host
        self.client = client
        self.trusted = trusted
        self.mount = mount if mount is not None else cgroupfs.cgroup2_mount()
        self.cache = LiftCache()
        self._entitlements: dict[str, list[Wanted]] = {}
        self._state_stamp: tuple[int, int] | None = None
        self._paths: dict[str, list[str]] = {}
        self.vanished: list[str] = []  # entitled cgroups the last discovery found gone

    # -- discovery --------------------------------------------------------------------------------

    def discover(self) -> dict[str, Target]:
        """Every container to watch, by cgroup: those the runtimes' state names (with a live
        process), the cgroups an engine or kubelet named under systemd's root (a node agent may
        not see every runtime's state), and every cgroup the entitlements file names that still
        exists (those that do not are listed in ``vanished``, for their entitlements to be
        dropped)."""
        from cgdev.ops.targets import container_targets

        walk_root = cgroupfs.cgroup_path(self.host.systemd_root, mount=self.mount)
        try:
            targets, _ = container_targets(self.mount, walk_root, self.host.runtime_roots)
        except (NotFound, OSError):  # systemd's root went away (a lab going down): nothing to watch
            targets = []
        found: dict[str, Target] = {t.cgroup: t for t in targets}
        self.entitlements_changed()
        self.vanished = []
        for cgroup in self._entitlements:
            if cgroup in found:
                continue
            if os.path.isdir(cgroupfs.cgroup_path(cgroup, mount=self.mount)):
                found[cgroup] = Target(cgroup, TargetKind.CGROUP, cgroup)
            else:  # gone before we saw it go (between polls, or while the watcher was down)
                self.vanished.append(cgroup)
        return found

    @property
    def entitlements_stamp(self) -> tuple[int, int] | None:
        """Which version of the entitlements file ``wanted`` answers from."""
        return self._state_stamp

    def entitlements_changed(self) -> bool:
        """Re-read the entitlements file if it changed since the last read (grant, revoke, a
        repair); True when it did."""
        try:
            st = os.stat(entitlements.state_path())
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._state_stamp and (stamp is not None or not self._entitlements):
            return False
        self._state_stamp = stamp
        before = {(cgroup, w.key): w for cgroup, ws in self._entitlements.items() for w in ws}
        wanted: dict[str, list[Wanted]] = {}
        for e in entitlements.read():
            mine = wanted.setdefault(e.cgroup, [])  # named at all: watched (a grant may be pending)
            key = (e.type, e.major, e.minor)
            if e.status != "done":  # a grant or revoke in progress: what was wanted stays wanted
                if (e.cgroup, key) in before:
                    mine.append(before[(e.cgroup, key)])
                continue
            access = _bits(e.granted)
            if access:
                mine.append(Wanted(key, access, WantedSource.ENTITLEMENT))
        self._entitlements = wanted
        return True

    def wanted(self, target: Target) -> tuple[Wanted, ...]:
        """What the container is entitled to: the entitlements file, its spec's exact device
        rules, and what the node policy (``trusted``) accepts."""
        from cgdev.ops.spec_devices import spec_rules

        spec = [
            Wanted((str(r.type), r.major, r.minor), r.access, WantedSource.SPEC)
            for r in spec_rules(target) or ()
            if r.allow and str(r.type) in "bc" and r.major is not None and r.minor is not None and r.access
        ]
        policy = list(self.trusted(target)) if self.trusted is not None else []
        defaults = runtime_defaults(target.runtime)
        return wanted_union([self._entitlements.get(target.cgroup, []), spec, defaults, policy])

    def gone(self, cgroup: str) -> None:
        """Drop what is cached about a cgroup that is gone."""
        self._paths.pop(cgroup, None)

    def forget(self, cgroup: str) -> bool:
        """Drop the entitlements of a container that is gone -- only once its cgroup is gone too
        (False: not yet): a container briefly missing from the runtime's state, or whose cgroup
        systemd has not removed yet, must not lose what it is entitled to."""

        def drop(entries: dict[tuple[str, str, int, int], entitlements.Entitlement]) -> None:
            for key in [k for k in entries if k[0] == cgroup]:
                del entries[key]

        if os.path.isdir(cgroupfs.cgroup_path(cgroup, mount=self.mount)):
            return False  # not gone (yet): its entitlements stay; ask again later
        if cgroup in self._entitlements:
            entitlements.update(drop)
            self._entitlements.pop(cgroup, None)
        return True

    # -- polling ----------------------------------------------------------------------------------

    def program_ids(self, targets: Sequence[Target]) -> dict[str, IdsOfPath | None]:
        """The attached program ids on every cgroup of each target's path (BPF_PROG_QUERY only;
        each cgroup asked once); None for a container whose cgroup is gone."""
        asked: dict[str, tuple[int, ...] | None] = {}
        out: dict[str, IdsOfPath | None] = {}
        for target in targets:
            paths = self._paths.get(target.cgroup)
            if paths is None:  # a cgroup's path never changes: computed once
                leaf = cgroupfs.cgroup_path(target.cgroup, mount=self.mount)
                paths = self._paths[target.cgroup] = cgroupfs.ancestors(leaf, mount=self.mount)
            ids: list[tuple[int, ...]] = []
            for path in paths:
                if path not in asked:
                    try:
                        with bpf.open_cgroup(path) as fd:
                            asked[path] = tuple(bpf.prog_query(fd).ids)
                    except CgdevError:
                        asked[path] = None
                got = asked[path]
                if got is None:
                    break
                ids.append(got)
            out[target.cgroup] = tuple(ids) if len(ids) == len(paths) else None
        return out

    # -- looking ----------------------------------------------------------------------------------

    def observe(self, target: Target, wanted: tuple[Wanted, ...], *, causes: bool = True) -> Observation:
        """Look at one container: every wanted device's verdict on the whole path, the layer and
        program that deny it and why, and the effective policy (for devices gained)."""
        from cgdev.ops.collect import collect

        inspection = collect(target, mount=self.mount, systemd=self.client,
                             systemd_status="ok" if self.client is not None else "off",
                             systemd_root=self.host.systemd_root, systemd_fs_root=self.host.systemd_fs_root,
                             with_devices=False)  # fmt: skip
        views = analyse_layers(inspection, self.cache)
        effective = effective_policy(views)
        devices: dict[DeviceKey, DeviceState] = {}
        codes: list[str] = []
        for w in wanted:
            state = DeviceState(True)
            for request in w.requests():
                verdicts = [(view, p, p.verdict(request).allowed) for view in views for p in view.programs]
                allowed = all_allow(v for _, _, v in verdicts)
                if allowed is True:
                    continue
                denier = next(((view, p) for view, p, v in verdicts if v is False), None)
                if denier is None:
                    unknown = next((view, p) for view, p, v in verdicts if v is None)
                    state = DeviceState(None, unknown[0].cgroup, _program_name(unknown[1]),
                                        f"program cannot be read: {unknown[1].opaque}")  # fmt: skip
                    continue
                view, program = denier
                cause, found = self._cause(inspection, request, view, program) if causes else ("", [])
                codes += found
                state = DeviceState(False, view.cgroup, _program_name(program), cause)
                break
            devices[w.key] = state
        return Observation(target.cgroup, label(target), wanted, devices, effective, tuple(codes))

    def _cause(self, inspection: Any, request: Any, view: Any, program: Any) -> tuple[str, list[str]]:
        """Why this layer denies: who attached the program, and explain's findings' codes."""
        from cgdev.ops.explain import explain

        if program.owned_by_systemd:
            unit = view.unit.unit if view.unit is not None else "the unit"
            cause = (f"systemd re-applied {unit}'s DevicePolicy/DeviceAllow (daemon-reload or "
                     "set-property) and DeviceAllow does not name the device")  # fmt: skip
        else:
            cause = f"the {program.generator} program on this layer does not allow it"
        try:
            found = explain(inspection, request, cache=self.cache).findings
        except CgdevError:
            found = ()
        if found:
            cause += f" ({found[0].code}: {found[0].message})"
        return cause, [str(f.code) for f in found]

    # -- repairing --------------------------------------------------------------------------------

    def repair(self, target: Target, devices: Sequence[Wanted]) -> str | None:
        """Grant ``devices`` again on every layer, durably (grant's transaction); the error's one
        line, or None when done and verified."""
        from cgdev.core.model import access_to_str
        from cgdev.ops.repair import change_devices
        from cgdev.ops.repair.plan import Change

        spec = target.container_id or target.cgroup
        by_access: dict[int, list[str]] = {}
        for w in devices:
            by_access.setdefault(w.access, []).append(f"{w.key[0]} {w.key[1]}:{w.key[2]}")
        try:
            for access, names in sorted(by_access.items()):
                result = change_devices(spec, self.host, Change.GRANT, names, access_to_str(access),
                                        why="cgdev watch: restored an entitled device")  # fmt: skip
                if result.exit_code != 0:
                    outcome = result.outcome
                    why = outcome.message if outcome is not None else f"exit status {result.exit_code}"
                    return f"grant {outcome.status if outcome else 'failed'}: {why}"
        except CgdevError as err:
            return str(err)
        return None


def label(target: Target) -> str:
    """How the watcher's reports name a container: ``runc 0123...`` with the whole id (a log line
    must identify it exactly), or its cgroup."""
    if target.container_id:
        return f"{target.runtime or 'container'} {target.container_id}"
    return target.cgroup


def _program_name(program: Any) -> str:
    record = program.record
    return f"{record.name or 'unnamed'} (id {record.id}, {program.generator})"
