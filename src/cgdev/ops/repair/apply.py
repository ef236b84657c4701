"""Apply a repair plan as a transaction: every action with its undo, verified, rolled back.

The one module that changes the system for a grant or a revoke.  Order of work:

1. the intent goes to the entitlement state first (``pending``), so a run killed half-way is
   finished by a rerun: planning again sees the layers already changed and plans only the rest;
2. each action is applied in plan order and its undo kept.  A program swap never leaves a moment
   without a filter or with a deny-all: ``BPF_F_REPLACE`` when the old program is the only one on
   its cgroup (one atomic swap), else the new one is attached beside (``BPF_F_ALLOW_MULTI``; both
   run, so the cgroup sees the AND of old and new) and the old one detached after.  The old
   program is held open by fd until the end, so an undo can attach it again;
3. verification: a fresh inspection whose every layer differs from before by exactly the request,
   the kernel's own verdict from a process forked into the target's cgroup, and the after-reload
   prediction (``ops.reload``) must keep the change;
4. on any failure every applied action is undone in reverse and the entitlement restored.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec

from cgdev.adapters import bpf, cgroupfs
from cgdev.core.model import Request
from cgdev.core.policy import Policy
from cgdev.errors import CgdevError, EnvError
from cgdev.ops import entitlements
from cgdev.ops.layers import Inspection, LiftCache, analyse_layers, devices_list_policy, effective_policy
from cgdev.ops.repair.plan import (
    Action,
    Change,
    Plan,
    ReplaceProgram,
    SetUnitDeviceAllow,
    SwapMode,
    V1DevicesWrite,
    changed_policy,
)

Undo = Callable[[], None]


class Status(StrEnum):
    DONE = "done"
    NOTHING_TO_DO = "nothing-to-do"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"


class VerifyFailed(CgdevError):
    """The change did not have the effect it must have (exit status 1: nothing was granted)."""

    exit_code = 1


class Outcome(msgspec.Struct):
    status: Status
    message: str
    applied: list[str] = msgspec.field(default_factory=list)
    checks: list[str] = msgspec.field(default_factory=list)
    cause_exit_code: int = 1  # of the error that made a change roll back (1: verification)

    @property
    def exit_code(self) -> int:
        """0 done; a rolled-back change keeps its cause's status (1 verification failed, 2 input,
        3 environment); a rollback that failed is 3, whatever the cause."""
        if self.status in (Status.DONE, Status.NOTHING_TO_DO):
            return 0
        return self.cause_exit_code if self.status is Status.ROLLED_BACK else 3

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "message": self.message,
            "applied": self.applied,
            "checks": self.checks,
        }


# -- actions ---------------------------------------------------------------------------------------


class _Held:
    """Program and cgroup fds an undo needs; closed when the transaction ends."""

    def __init__(self) -> None:
        self.fds: list[bpf.Fd] = []

    def keep(self, fd: bpf.Fd) -> bpf.Fd:
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            fd.close()
        self.fds.clear()


def _repin(path: str, prog: bpf.Fd) -> None:
    """Point the pin at ``path`` to ``prog`` in one step: pin beside, then rename over (bpffs
    renames atomically), so systemd never finds the pin missing."""
    fresh = f"{path}_cgdev_{os.getpid()}"  # no dot: bpffs refuses (EPERM) any name with one
    if os.path.lexists(fresh):
        os.unlink(fresh)
    bpf.obj_pin(prog, fresh)
    try:
        os.rename(fresh, path)
    except OSError:
        os.unlink(fresh)
        raise


def _repin_all(pins: list[str], new: Any, old: Any) -> None:
    """Point every pin at ``new``; if one fails, the pins done so far go back to ``old``."""
    repinned: list[str] = []
    try:
        for path in pins:
            _repin(path, new)
            repinned.append(path)
    except (CgdevError, OSError):
        for path in repinned:
            _repin(path, old)
        raise


def _repin_only(action: ReplaceProgram, held: _Held, fs_root: str) -> Undo:
    """A pinned program that is not attached now: only its pins change (systemd attaches the new
    one on the next reload)."""
    old = held.keep(bpf.prog_fd_by_id(action.old_id))
    new = held.keep(bpf.prog_load(action.insns, name=action.name))
    pins = [os.path.join(fs_root, pin.lstrip("/")) for pin in action.pins]
    _repin_all(pins, new, old)

    def undo() -> None:
        for path in pins:
            _repin(path, old)

    return undo


def _replace_program(action: ReplaceProgram, held: _Held, mount: str, fs_root: str) -> Undo:
    if action.mode is SwapMode.PIN_ONLY:
        return _repin_only(action, held, fs_root)
    cg = held.keep(bpf.open_cgroup(cgroupfs.cgroup_path(action.cgroup, mount=mount)))
    old = held.keep(bpf.prog_fd_by_id(action.old_id))
    new = held.keep(bpf.prog_load(action.insns, name=action.name))
    new_id = bpf.prog_info(new).id
    bpf.swap_program(cg, old, action.old_id, new)
    pins = [os.path.join(fs_root, pin.lstrip("/")) for pin in action.pins]
    try:
        _repin_all(pins, new, old)
    except (CgdevError, OSError):
        bpf.swap_program(cg, new, new_id, old)
        raise

    def undo() -> None:
        for path in pins:
            _repin(path, old)
        bpf.swap_program(cg, new, new_id, old)

    return undo


def _set_unit(action: SetUnitDeviceAllow, systemd: Any) -> Undo:
    if systemd is None:
        raise EnvError(f"updating {action.unit} needs systemd's bus")

    def write(allow: tuple[tuple[str, str], ...]) -> None:
        systemd.set_unit_property_list(
            action.unit,
            [
                ("DeviceAllow", []),
                ("DeviceAllow", [list(p) for p in allow]),
                ("DevicePolicy", action.device_policy),
            ],
            runtime=action.runtime,
        )
        systemd.version()  # one more round trip: systemd has realized the cgroup change by then

    write(action.new_allow)
    return lambda: write(action.old_allow)


def _v1_write(action: V1DevicesWrite) -> Undo:
    directory = cgroupfs.v1_devices_dir(action.pid)
    if directory is None:
        raise EnvError(f"process {action.pid} has no v1 devices cgroup any more")
    other = "deny" if action.file == "allow" else "allow"

    def write(name: str) -> None:
        with open(os.path.join(directory, f"devices.{name}"), "w") as fh:
            fh.write(action.line)

    write(action.file)
    return lambda: write(other)


def _do(action: Action, held: _Held, systemd: Any, mount: str, fs_root: str) -> Undo:
    if isinstance(action, ReplaceProgram):
        return _replace_program(action, held, mount, fs_root)
    if isinstance(action, SetUnitDeviceAllow):
        return _set_unit(action, systemd)
    return _v1_write(action)


# -- verification ----------------------------------------------------------------------------------


def _layer_policies(inspection: Inspection, cache: LiftCache) -> dict[str, Policy | None]:
    """Per cgroup, the AND of its programs (None: no program there)."""
    out: dict[str, Policy | None] = {}
    for view in analyse_layers(inspection, cache):
        if not view.programs:
            out[view.cgroup] = None
            continue
        policy = effective_policy([view])
        if policy is None:
            raise VerifyFailed(f"a program on {view.cgroup} is opaque after the change")
        out[view.cgroup] = policy
    return out


def verify(
    plan: Plan, before: Inspection, after: Inspection, cache: LiftCache, *, probe: bool = True
) -> list[str]:
    """The checks that passed; raises ``VerifyFailed`` naming the first that did not."""
    box = plan.box
    wanted = plan.change is Change.GRANT
    checks: list[str] = []
    old, new = _layer_policies(before, cache), _layer_policies(after, cache)
    for cgroup, policy in old.items():
        if cgroup not in new:
            raise VerifyFailed(f"{cgroup} disappeared during the change")
        expected = None if policy is None else changed_policy(policy, box, plan.change)
        got = new[cgroup]
        if policy is None and got is None:
            continue
        if expected is None:
            expected = Policy.allow_all()
        actual = got if got is not None else Policy.allow_all()
        if actual != expected:
            diff = expected.diff(actual, limit=1)[0]
            raise VerifyFailed(
                f"{cgroup}: policy changed by more than the request: {diff.request} is now "
                f"{'allowed' if diff.right else 'denied'}"
            )
    if plan.actions:
        checks.append(f"every layer's policy differs by exactly {', '.join(map(str, plan.devices))}")
    else:
        checks.append("no layer changed: every layer already had the wanted verdict")
    requests = [r for d in plan.devices for r in d.requests(plan.change)]
    if probe:
        checks.append(_probe_check(after, requests, wanted))
    from cgdev.ops.reload import predict_reload, predicted_policy

    views = analyse_layers(after, cache)
    predicted = predicted_policy(predict_reload(views, after, cache), devices_list_policy(after.v1_devices))
    if predicted is None:
        raise VerifyFailed("after the next reload: a program would be opaque, the verdict unknown")
    wrong = [r for r in requests if predicted.allows(r) is not wanted]
    if wrong:
        raise VerifyFailed(f"after the next daemon-reload or set-property {wrong[0]} would be "
                           f"{'denied' if wanted else 'allowed'}: the change would not last")  # fmt: skip
    checks.append(f"after the next daemon-reload or set-property: still {'allowed' if wanted else 'denied'}")
    return checks


def _probe_check(after: Inspection, requests: list[Request], wanted: bool) -> str:
    from cgdev.adapters.device_safety import is_safe_to_open
    from cgdev.adapters.kernel_probe import kernel_verdicts

    asked = [r for r in requests if r.access == 1 or is_safe_to_open(r)]
    if not asked:
        return "kernel probe skipped (the device's major has a driver: opening it could have side effects)"
    path = cgroupfs.cgroup_path(after.target.cgroup)
    verdicts = kernel_verdicts(path, asked)
    wrong = [r for r, v in zip(asked, verdicts, strict=True) if v is not wanted]
    if wrong:
        raise VerifyFailed(
            f"the kernel {'denies' if wanted else 'allows'} {wrong[0]} in {after.target.cgroup}"
        )
    verdict = "allowed" if wanted else "denied"
    return f"kernel probe in {after.target.cgroup}: {', '.join(map(str, asked))} {verdict}"


# -- entitlements ----------------------------------------------------------------------------------


def _alive(cgroup: str) -> bool:
    return os.path.isdir(cgroupfs.cgroup_path(cgroup))


def _record(plan: Plan, status: str, why: str) -> Callable[[], None]:
    """Write the plan's entitlement with ``status``; returns the undo (the previous entries)."""
    target = plan.target
    saved: dict[tuple[str, str, int, int], entitlements.Entitlement | None] = {}

    def edit(entries: dict[tuple[str, str, int, int], entitlements.Entitlement]) -> None:
        from cgdev.core.model import access_to_str
        from cgdev.ops.repair.plan import parse_access_bits

        for device in plan.devices:
            key = (target.cgroup, device.type, device.major, device.minor)
            previous = entries.get(key)
            saved.setdefault(key, previous)
            granted = parse_access_bits(previous.granted) if previous and previous.granted else 0
            revoked = parse_access_bits(previous.revoked) if previous and previous.revoked else 0
            if plan.change is Change.GRANT:
                granted, revoked = granted | device.access, revoked & ~device.access
            else:
                granted, revoked = granted & ~device.access, revoked | device.access
            entries[key] = entitlements.Entitlement(
                cgroup=target.cgroup,
                container_id=target.container_id,
                target=target.spec,
                type=device.type,
                major=device.major,
                minor=device.minor,
                granted=access_to_str(granted),
                revoked=access_to_str(revoked),
                change=str(plan.change),
                status=status,
                when=entitlements.now(),
                why=why,
                cgroup_ns=entitlements.own_cgroup_ns(),
            )

    entitlements.update(edit, _alive)

    def restore() -> None:
        def back(entries: dict[tuple[str, str, int, int], entitlements.Entitlement]) -> None:
            for key, previous in saved.items():
                if previous is None:
                    entries.pop(key, None)
                else:
                    entries[key] = previous

        entitlements.update(back, _alive)

    return restore


def _mark_done(plan: Plan) -> None:
    import msgspec

    def edit(entries: dict[tuple[str, str, int, int], entitlements.Entitlement]) -> None:
        for device in plan.devices:
            key = (plan.target.cgroup, device.type, device.major, device.minor)
            if key in entries:
                entries[key] = msgspec.structs.replace(entries[key], status="done")

    entitlements.update(edit, _alive)


# -- the transaction -------------------------------------------------------------------------------


def apply_plan(
    plan: Plan,
    before: Inspection,
    recollect: Callable[[], Inspection],
    *,
    systemd: Any = None,
    mount: str | None = None,
    systemd_fs_root: str = "/",
    why: str = "",
    record: bool = True,
    probe: bool = True,
    cache: LiftCache | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Outcome:
    """Apply, verify, and on failure roll back.  ``systemd_fs_root`` is where systemd's files (its
    BPFProgram pins) are seen from here.  ``on_step(i)`` runs before action ``i`` (tests inject a
    crash there)."""
    lifts = cache if cache is not None else LiftCache()
    base = mount if mount is not None else cgroupfs.cgroup2_mount()
    what = f"{plan.change} {', '.join(map(str, plan.devices))} on {plan.target.spec}"
    restore_state = _record(plan, "pending", why) if record else None
    held = _Held()
    undos: list[tuple[str, Undo]] = []
    outcome: Outcome
    try:
        try:
            for index, action in enumerate(plan.actions):
                if on_step is not None:
                    on_step(index)
                undos.append((action.describe(), _do(action, held, systemd, base, systemd_fs_root)))
            checks = verify(plan, before, recollect(), lifts, probe=probe)
        except (CgdevError, OSError) as err:
            failed = _rollback(undos)
            if restore_state is not None:
                with contextlib.suppress(CgdevError, OSError):
                    restore_state()
            applied = [d for d, _ in undos]
            if failed:
                return Outcome(
                    Status.ROLLBACK_FAILED, f"{what} failed ({err}); rollback failed: {failed}", applied
                )
            code = err.exit_code if isinstance(err, CgdevError) else 3
            return Outcome(Status.ROLLED_BACK, f"{what} failed and was rolled back: {err}", applied, [], code)
        if record:
            _mark_done(plan)
        status = Status.DONE if plan.actions else Status.NOTHING_TO_DO
        message = f"{what}: done" if plan.actions else f"{what}: already in place, nothing to change"
        outcome = Outcome(status, message, [d for d, _ in undos], checks)
    finally:
        held.close()
    return outcome


def _rollback(undos: list[tuple[str, Undo]]) -> str:
    """Undo in reverse; the first undo that failed (every later one is still tried), or ""."""
    failed = ""
    for description, undo in reversed(undos):
        try:
            undo()
        except (CgdevError, OSError) as err:
            failed = failed or f"{description}: {err}"
    return failed
