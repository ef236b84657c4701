"""The watcher's reconciler, without a bus, a kernel or a clock: events in, reports and actions out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cgdev.core.model import ACC_R, ACC_W, Request, Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics import policy_of
from cgdev.ops.reconcile import (
    Changed,
    DeviceState,
    Forget,
    Gone,
    Observation,
    Observed,
    Reconciler,
    Repair,
    Repaired,
    RepairLimit,
    ReportKind,
    Rescan,
    Seen,
    Wanted,
    WantedSource,
    wanted_union,
)

RW = ACC_R | ACC_W
NVIDIACTL = Wanted(("c", 195, 255), RW, WantedSource.ENTITLEMENT)
C = "/system.slice/runc-a.scope"


def obs(allowed: bool | None, wanted: tuple[Wanted, ...] = (NVIDIACTL,), effective: Policy | None = None,
        container: str = C) -> Observation:  # fmt: skip
    states = {
        w.key: DeviceState(allowed, "/system.slice/runc-a.scope", "sd_devices", "reload") for w in wanted
    }
    return Observation(container, "runc a", wanted, states, effective)


def kinds(step) -> list[ReportKind]:
    return [r.kind for r in step.reports]


def test_a_new_container_is_looked_at() -> None:
    rec = Reconciler(repair=True)
    step = rec.handle(Seen(C, 0.0, "runc a"))
    assert kinds(step) == [ReportKind.ADDED]
    assert step.actions == (Rescan(frozenset({C}), "container appeared"),)
    assert rec.handle(Seen(C, 1.0)).actions == ()  # seen before: nothing new


def test_lost_then_repaired_then_restored_with_the_reaction_time() -> None:
    rec = Reconciler(repair=True)
    rec.handle(Seen(C, 0.0))
    rec.handle(Observed(obs(True), 0.1))
    assert rec.handle(Changed(None, "daemon-reload", 10.0)).actions == (
        Rescan(frozenset({C}), "daemon-reload"),
    )
    step = rec.handle(Observed(obs(False), 10.004))
    assert kinds(step) == [ReportKind.LOST, ReportKind.REPAIRING]
    lost = step.reports[0]
    assert (lost.device, lost.layer, lost.program, lost.source) == (
        "c 195:255 rw", "/system.slice/runc-a.scope", "sd_devices", "entitlement")  # fmt: skip
    assert step.actions == (Repair(C, (NVIDIACTL,)),)
    assert rec.handle(Repaired(C, (NVIDIACTL,), None, 10.02)).reports == ()
    step = rec.handle(Observed(obs(True), 10.025))
    assert kinds(step) == [ReportKind.RESTORED]
    assert abs(step.reports[0].reaction_s - 0.025) < 1e-9  # from the reload, not from the look


def test_without_repair_a_loss_is_reported_once_and_never_repaired() -> None:
    rec = Reconciler(repair=False)
    rec.handle(Seen(C, 0.0))
    first = rec.handle(Observed(obs(False), 1.0))
    assert kinds(first) == [ReportKind.LOST] and first.actions == ()
    again = rec.handle(Observed(obs(False), 2.0))
    assert again.reports == () and again.actions == ()


def test_unknown_is_reported_and_never_repaired() -> None:
    rec = Reconciler(repair=True)
    rec.handle(Seen(C, 0.0))
    step = rec.handle(Observed(obs(None), 1.0))
    assert kinds(step) == [ReportKind.UNKNOWN] and step.actions == ()


def test_a_failed_repair_is_reported() -> None:
    rec = Reconciler(repair=True)
    rec.handle(Seen(C, 0.0))
    rec.handle(Observed(obs(False), 1.0))
    step = rec.handle(Repaired(C, (NVIDIACTL,), "systemd: no reply", 1.1))
    assert kinds(step) == [ReportKind.REPAIR_FAILED] and step.reports[0].cause == "systemd: no reply"


def test_a_container_that_keeps_losing_access_is_flapping_and_left_alone() -> None:
    rec = Reconciler(repair=True, limit=RepairLimit(3, 60.0))
    rec.handle(Seen(C, 0.0))
    repairs = flapping = 0
    for i in range(10):
        step = rec.handle(Observed(obs(False), 1.0 + 2 * i))
        repairs += sum(isinstance(a, Repair) for a in step.actions)
        flapping += kinds(step).count(ReportKind.FLAPPING)
        rec.handle(Observed(obs(True), 2.0 + 2 * i))
    assert repairs == 3 and flapping == 1
    step = rec.handle(Observed(obs(False), 200.0))  # the window has passed: repaired again
    assert any(isinstance(a, Repair) for a in step.actions)


def test_a_removed_container_is_forgotten() -> None:
    rec = Reconciler(repair=True)
    rec.handle(Seen(C, 0.0, "runc a"))
    step = rec.handle(Gone(C, 1.0))
    assert kinds(step) == [ReportKind.REMOVED] and step.actions == (Forget(C),)
    assert rec.containers == []
    assert rec.handle(Observed(obs(False), 2.0)).actions == ()  # a late look at it: ignored


def test_a_device_gained_without_entitlement_is_reported_but_not_a_restored_one() -> None:
    rec = Reconciler(repair=False)
    rec.handle(Seen(C, 0.0))
    null = Policy.deny_all() | _single(Request("c", 1, 3, RW))
    rec.handle(Observed(obs(False, effective=null), 1.0))
    wider = null | _single(Request("c", 195, 255, RW)) | _single(Request("c", 10, 200, RW))
    step = rec.handle(Observed(obs(True, effective=wider), 2.0))
    gained = [r for r in step.reports if r.kind is ReportKind.GAINED]
    assert [r.device for r in gained] == ["c 10:200 rw"]  # 195:255 is wanted: restored, not gained
    assert ReportKind.RESTORED in kinds(step)


def _single(request: Request) -> Policy:
    return policy_of([Rule(True, request.type, request.major, request.minor, request.access)])


def test_wanted_union_merges_access_and_keeps_the_first_source() -> None:
    spec = Wanted(("c", 195, 255), 1, WantedSource.SPEC)
    merged = wanted_union([[NVIDIACTL], [spec]])
    assert merged == (Wanted(("c", 195, 255), RW | 1, WantedSource.ENTITLEMENT),)


# -- properties over random event sequences ----------------------------------------------------------

DEVICES = [("c", 195, n) for n in range(4)]
wanted_sets = st.sets(st.sampled_from(DEVICES)).map(
    lambda keys: tuple(Wanted(k, RW, WantedSource.ENTITLEMENT) for k in sorted(keys))
)
events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["seen", "gone", "changed", "observe"]),
        wanted_sets,
        st.dictionaries(st.sampled_from(DEVICES), st.sampled_from([True, False, None])),
        st.floats(0, 5),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(1, 4))
def test_repairs_name_only_wanted_denied_devices_and_respect_the_limit(seq, count) -> None:
    rec = Reconciler(repair=True, limit=RepairLimit(count, 30.0))
    now = 0.0
    repairs: dict[str, list[float]] = {}
    for name, kind, wanted, verdicts, dt in seq:
        now += dt
        if kind == "seen":
            step = rec.handle(Seen(name, now))
        elif kind == "gone":
            step = rec.handle(Gone(name, now))
        elif kind == "changed":
            step = rec.handle(Changed(frozenset({name}), "x", now))
        else:
            states = {k: DeviceState(v) for k, v in verdicts.items()}
            step = rec.handle(Observed(Observation(name, name, wanted, states), now))
            for action in step.actions:
                assert isinstance(action, Repair)
                assert {w.key for w in action.devices} <= {w.key for w in wanted}
                assert all(states.get(w.key, DeviceState(None)).allowed is False for w in action.devices)
                repairs.setdefault(name, []).append(now)
        for action in step.actions:
            if isinstance(action, Repair):
                assert action.container == name
    for times in repairs.values():
        for t in times:
            assert sum(1 for u in times if t - 30.0 < u <= t) <= count
