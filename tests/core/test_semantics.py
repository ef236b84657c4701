"""Each semantics against a slow, obviously-correct evaluator written here from its description,
plus the documented facts where the semantics differ (anchors §1–3, (c), DESIGN.md §1)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core.model import ACC_ALL, ACC_M, ACC_R, ACC_W, REQUEST_MASKS, Request, Rule
from cgdev.core.policy import Policy
from cgdev.core.rules import parse_rule_text
from cgdev.core.semantics import (
    CRUN_DEFAULTS,
    CRUN_SENTINEL,
    RUNC_DEFAULTS,
    crun_emits_terminal,
    crun_program_rules,
    policy_of,
    runc_program_rules,
    systemd_entries,
    systemd_policy,
    systemd_program,
    systemd_properties_of,
)
from cgdev.errors import InputError
from strategies import requests_for, rule_lists

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rules(text: str) -> list[Rule]:
    return parse_rule_text(text)


def req(text: str) -> Request:
    """``"c 1:3 rw"`` -> Request."""
    t, numbers, access = text.split()
    major, minor = numbers.split(":")
    bits = {"m": ACC_M, "r": ACC_R, "w": ACC_W}
    return Request(t, int(major), int(minor), sum(bits[c] for c in access))  # type: ignore[arg-type]


def matches(rule: Rule, r: Request) -> bool:
    return rule.matches_device(r.type, r.major, r.minor)


# -- reference evaluators (one request at a time, straight from the prose) ---------------------------


def ref_ordered(rule_list: list[Rule], r: Request) -> bool:
    for bit in (ACC_M, ACC_R, ACC_W):
        if r.access & bit:
            last = [x for x in rule_list if matches(x, r) and x.access & bit]
            if not last or not last[-1].allow:
                return False
    return True


def ref_first_match(chain: list[Rule], r: Request, terminal: bool = False) -> bool:
    for x in chain:
        if matches(x, r) and r.access & x.access == r.access:
            return x.allow
    return terminal


def compared_as_64_bit(rule: Rule) -> bool:
    """runc and crun test major/minor with a 64-bit JNE against a sign-extended 32-bit immediate,
    so a number >= 2^31 in a rule can never be equal to the zero-extended u32 field."""
    return all(n is None or n < 2**31 for n in (rule.major, rule.minor))


def ref_crun(spec: list[Rule], r: Request) -> bool:
    chain = [CRUN_SENTINEL, *reversed(CRUN_DEFAULTS), *reversed(spec)]
    return ref_first_match([x for x in chain if compared_as_64_bit(x)], r)


def ref_v1(rule_list: list[Rule], r: Request) -> bool:
    allow_all, exceptions = True, []
    for x in rule_list:
        if x.type == "a":
            allow_all, exceptions = x.allow, []
        elif x.allow != allow_all:
            same = [e for e in exceptions if (e.type, e.major, e.minor) == (x.type, x.major, x.minor)]
            if same:
                exceptions[exceptions.index(same[0])] = Rule(
                    x.allow, x.type, x.major, x.minor, same[0].access | x.access
                )
            else:
                exceptions.append(x)
        else:
            exceptions = [
                Rule(e.allow, e.type, e.major, e.minor, e.access & ~x.access)
                if (e.type, e.major, e.minor) == (x.type, x.major, x.minor)
                else e
                for e in exceptions
            ]
            exceptions = [e for e in exceptions if e.access]
    hits = [e for e in exceptions if matches(e, r)]
    if allow_all:
        return not any(r.access & e.access for e in hits)
    return any(r.access & e.access == r.access for e in hits)


class Refused(Exception):
    """runc refuses the list (a deny that would punch a hole in a wildcard, an empty access)."""


def ref_runc(spec: list[Rule], r: Request) -> bool:
    """runc 1.1.5 from anchors.md §2, written without cgdev's emulator: the spec's rules and then
    its AllowedDevices go through a v1-like emulator that starts deny-all; ``a`` resets; a rule
    with the non-default action ORs its bits into the exception of the very same device; one
    with the default action first refuses if a wildcard exception of its type shares bits, then
    takes its bits away from the very same device; the program lets a request match an exception
    when the request's bits are a subset, and numbers >= 2^31 never compare equal."""
    default_allow = False
    exceptions: dict[tuple[str, int | None, int | None], int] = {}
    for x in [*spec, *(rule for _path, rule in RUNC_DEFAULTS)]:
        if not x.access:
            raise Refused("empty access")
        if x.type == "a":
            default_allow, exceptions = x.allow, {}
            continue
        key = (x.type, x.major, x.minor)
        if x.allow != default_allow:
            exceptions[key] = exceptions.get(key, 0) | x.access
            continue
        wildcards = {(x.type, None, x.minor), (x.type, x.major, None), (x.type, None, None)} - {key}
        if any(exceptions.get(w, 0) & x.access for w in wildcards):
            raise Refused("hole in a wildcard")
        left = exceptions.pop(key, 0) & ~x.access
        if left:
            exceptions[key] = left
    covered = any(
        t == r.type
        and major in (None, r.major)
        and minor in (None, r.minor)
        and all(n is None or n < 2**31 for n in (major, minor))
        and r.access & bits == r.access
        for (t, major, minor), bits in exceptions.items()
    )
    return covered != default_allow


def check(policy: Policy, reference, rule_list: list[Rule], requests: list[Request]) -> None:
    for r in requests:
        assert policy.allows(r) == reference(rule_list, r), f"{r} under {[str(x) for x in rule_list]}"


@SETTINGS
@given(st.data())
def test_ordered_matches_reference(data: st.DataObject) -> None:
    rule_list = data.draw(rule_lists("ordered"))
    check(policy_of(rule_list), ref_ordered, rule_list, data.draw(requests_for(rule_list)))


@SETTINGS
@given(st.data())
def test_crun_matches_reference(data: st.DataObject) -> None:
    rule_list = data.draw(rule_lists("crun"))
    check(policy_of(rule_list, "crun"), ref_crun, rule_list, data.draw(requests_for(rule_list)))


@SETTINGS
@given(st.data())
def test_v1_matches_reference(data: st.DataObject) -> None:
    rule_list = data.draw(rule_lists("v1"))
    check(policy_of(rule_list, "v1"), ref_v1, rule_list, data.draw(requests_for(rule_list)))


@SETTINGS
@given(st.data())
def test_runc_matches_reference(data: st.DataObject) -> None:
    """runc's semantics against an evaluator written from the source study, not from runc.py."""
    rule_list = data.draw(rule_lists("runc"))
    requests = data.draw(requests_for(rule_list))
    try:
        expected = [ref_runc(rule_list, r) for r in requests]
    except Refused:
        with pytest.raises(InputError):
            policy_of(rule_list, "runc")
        return
    policy = policy_of(rule_list, "runc")
    for r, allowed in zip(requests, expected, strict=True):
        assert policy.allows(r) == allowed, f"{r} under {[str(x) for x in rule_list]}"


@SETTINGS
@given(st.data())
def test_runc_program_means_its_rules(data: st.DataObject) -> None:
    """runc's policy is the first-match chain of its emitted rules with terminal default_allow,
    and every emitted rule carries the non-default action (runc's own internal check)."""
    rule_list = data.draw(rule_lists("runc"))
    try:
        default_allow, emitted = runc_program_rules(rule_list)
    except InputError as exc:
        assert "punch a hole" in str(exc)
        return
    assert all(x.allow != default_allow and x.type in "bc" for x in emitted)
    policy = policy_of(rule_list, "runc")
    for r in data.draw(requests_for(rule_list + emitted)):
        reachable = [x for x in emitted if compared_as_64_bit(x)]
        assert policy.allows(r) == ref_first_match(reachable, r, default_allow)


@SETTINGS
@given(st.data())
def test_systemd_rule_list_matches_reference(data: st.DataObject) -> None:
    """Allow-only lists: last entry per (type, meta) wins, *:N dropped, any entry covering the
    request with request ⊆ mask allows."""
    rule_list = data.draw(rule_lists("systemd"))
    policy = policy_of(rule_list, "systemd")
    total = any(
        x.type == "a" and x.major is None and x.minor is None and x.access == ACC_ALL for x in rule_list
    )
    last: dict[tuple[str, int | None, int | None], int] = {}
    for x in rule_list:
        if x.major is None and x.minor is not None:
            continue
        for t in ("b", "c") if x.type == "a" else (x.type,):
            key = (t, x.major, x.minor)
            last.pop(key, None)
            last[key] = x.access or ACC_ALL

    def valid(key: tuple[str, int | None, int | None]) -> bool:
        return (key[1] or 0) < 4096 and (key[2] or 0) < (1 << 20)

    for r in data.draw(requests_for(rule_list)):
        expected = total or any(
            t == r.type
            and major in (None, r.major)
            and minor in (None, r.minor)
            and r.access & access == r.access
            and valid((t, major, minor))
            for (t, major, minor), access in last.items()
        )
        assert policy.allows(r) == expected


# -- documented differences between the semantics ------------------------------------------------


def test_r_then_w_on_one_device() -> None:
    """runc and v1 and ordered merge; crun denies rw; systemd keeps only the last (w)."""
    # a non-default device, so the runtimes' defaults do not hide the difference
    spec = rules("deny a\nallow c 195:0 r\nallow c 195:0 w")
    rw, r, w = req("c 195:0 rw"), req("c 195:0 r"), req("c 195:0 w")
    assert policy_of(spec).allows(rw)
    assert policy_of(spec, "runc").allows(rw)
    assert policy_of(spec, "v1").allows(rw)
    crun = policy_of(spec, "crun")
    assert crun.allows(r) and crun.allows(w) and not crun.allows(rw)
    sd = policy_of(spec, "systemd")
    assert sd.allows(w) and not sd.allows(r) and not sd.allows(rw)


def test_no_merge_across_metas_except_ordered() -> None:
    spec = rules("deny a\nallow c 195:* r\nallow c 195:3 w")
    rw = req("c 195:3 rw")
    assert policy_of(spec).allows(rw)
    for semantics in ("runc", "crun", "v1", "systemd"):
        assert not policy_of(spec, semantics).allows(rw), semantics


def test_runc_type_a_is_a_reset_to_allow_all() -> None:
    """DESIGN.md §1: runc 1.1.5 turns ``allow a 195:* rw`` into allow-all."""
    spec = rules("deny a\nallow a 195:* rw")
    assert policy_of(spec, "runc") == Policy.allow_all()
    assert runc_program_rules(spec) == (True, [])
    assert policy_of(spec, "v1") == Policy.allow_all()
    crun = policy_of(spec, "crun")
    assert crun.allows(req("b 195:7 rw")) and not crun.allows(req("b 196:7 r"))
    assert not crun.allows(req("b 8:0 r"))
    assert policy_of(spec).allows(req("b 195:7 rw")) and not policy_of(spec).allows(req("b 8:0 r"))


def test_defaults_cannot_be_denied() -> None:
    spec = rules("deny a\ndeny c 1:3 w")
    assert policy_of(spec, "crun").allows(req("c 1:3 w"))
    assert policy_of(spec, "runc").allows(req("c 1:3 w"))
    assert not policy_of(spec).allows(req("c 1:3 w"))


def test_console_only_in_crun_defaults() -> None:
    spec = rules("deny a")
    assert policy_of(spec, "crun").allows(req("c 5:1 rw"))
    assert not policy_of(spec, "runc").allows(req("c 5:1 rw"))
    for r in ("c 1:3 rw", "c 10:200 rw", "c 136:9 rw", "b 8:0 m", "c 99:1 m"):
        assert policy_of(spec, "crun").allows(req(r)) and policy_of(spec, "runc").allows(req(r))
    assert not policy_of(spec, "runc").allows(req("b 8:0 r"))


def test_runc_defaults_order_and_sorting() -> None:
    assert [str(r) for _, r in RUNC_DEFAULTS][2:8] == [
        "allow c 1:3 rwm", "allow c 1:8 rwm", "allow c 1:7 rwm",
        "allow c 5:0 rwm", "allow c 1:5 rwm", "allow c 1:9 rwm",
    ]  # fmt: skip
    default_allow, emitted = runc_program_rules(rules("deny a"))
    assert not default_allow
    assert [str(r) for r in emitted] == [
        "allow b *:* m", "allow c *:* m", "allow c 1:3 rwm", "allow c 1:5 rwm", "allow c 1:7 rwm",
        "allow c 1:8 rwm", "allow c 1:9 rwm", "allow c 5:0 rwm", "allow c 5:2 rwm",
        "allow c 10:200 rwm", "allow c 136:* rwm",
    ]  # fmt: skip


def test_runc_drops_a_default_the_spec_lists_by_path() -> None:
    spec = rules("deny a")
    _, emitted = runc_program_rules(spec, spec_device_paths={"/dev/null"})
    assert Rule(True, "c", 1, 3, ACC_ALL) not in emitted


def test_runc_refusals() -> None:
    with pytest.raises(InputError, match=r"rule 2 .*punch a hole in .*wildcard rule c 1:\* rwm"):
        runc_program_rules(rules("allow c 1:* rwm\ndeny c 1:3 w"))
    with pytest.raises(InputError, match="runc default device /dev/null"):
        runc_program_rules(rules("allow a\ndeny c *:* rwm"))
    with pytest.raises(InputError, match=r"rule 1 .*empty access"):
        runc_program_rules([Rule(True, "c", 1, 3, 0)])


def test_v1_ignores_holes_and_denies_partially() -> None:
    assert policy_of(rules("deny a\nallow c 1:* rwm\ndeny c 1:3 w"), "v1").allows(req("c 1:3 w"))
    allow_all = policy_of(rules("allow a\ndeny c 1:3 w"), "v1")
    assert not allow_all.allows(req("c 1:3 rw")) and allow_all.allows(req("c 1:3 r"))
    ebpf_like = policy_of(rules("allow a\ndeny c 1:3 w"), "crun")
    assert ebpf_like.allows(req("c 1:3 rw"))  # 1:3 is a crun default anyway
    ordered = policy_of(rules("allow a\ndeny c 195:3 w"))
    assert not ordered.allows(req("c 195:3 rw")) and ordered.allows(req("c 195:3 r"))


def test_crun_deny_narrower_than_request_does_not_match() -> None:
    crun = policy_of(rules("deny a\nallow c 195:3 rw\ndeny c 195:3 w"), "crun")
    assert crun.allows(req("c 195:3 r")) and crun.allows(req("c 195:3 rw"))
    assert not crun.allows(req("c 195:3 w"))
    assert not policy_of(rules("deny a\nallow c 195:3 rw\ndeny c 195:3 w")).allows(req("c 195:3 rw"))


def test_crun_program_rules_shape() -> None:
    chain = crun_program_rules(rules("deny a\nallow c 195:255 rw"))
    assert chain[0] == CRUN_SENTINEL
    assert chain[1:13] == list(reversed(CRUN_DEFAULTS))
    assert chain[13] == Rule(True, "c", 195, 255, ACC_R | ACC_W)
    assert chain[14] == Rule(False, "a", None, None, ACC_ALL)
    assert not crun_emits_terminal(chain)
    open_chain = crun_program_rules(rules("allow c 195:255 rw"))
    assert crun_emits_terminal(open_chain) and len(open_chain) == 14
    # an unconditional rule in the middle cuts off everything before it in the spec
    cut = crun_program_rules(rules("allow c 8:1 r\nallow a\nallow c 195:0 r"))
    assert cut[-1] == Rule(True, "a", None, None, ACC_ALL) and len(cut) == 15


def test_crun_empty_access_never_matches() -> None:
    spec = [Rule(False, "a", None, None, ACC_ALL), Rule(True, "c", 195, 0, 0)]
    assert not policy_of(spec, "crun").allows(req("c 195:0 r"))


# -- systemd --------------------------------------------------------------------------------------

PROC_DEVICES = """Character devices:
  1 mem
  4 /dev/vc/0
  5 /dev/tty
136 pts
195 nvidia-frontend
508 nvidia-uvm
509 nvidia-caps

Block devices:
  8 sd
259 blkext
"""


def test_systemd_static_list_for_closed_and_auto() -> None:
    entries = systemd_entries("closed", [], PROC_DEVICES)
    assert [(e.type, e.major, e.minor, e.access) for e in entries] == [
        ("c", 1, 3, 7), ("c", 1, 5, 7), ("c", 1, 7, 7), ("c", 1, 8, 7), ("c", 1, 9, 7),
        ("c", 5, 0, 7), ("c", 5, 2, 7), ("c", 0, 0, 7), ("b", 0, 0, 7), ("c", 136, None, 6),
    ]  # fmt: skip
    closed = systemd_policy("closed", [], PROC_DEVICES)
    assert closed.allows(req("c 136:4 rw")) and not closed.allows(req("c 136:4 m"))
    assert closed.allows(req("c 1:3 m")) and not closed.allows(req("c 195:0 r"))
    auto = systemd_policy("auto", [("/dev/char/195:0", "rw")], PROC_DEVICES)
    assert auto == closed | systemd_policy("strict", [("/dev/char/195:0", "rw")], PROC_DEVICES)
    assert systemd_policy("auto", [], PROC_DEVICES) == Policy.allow_all()
    assert not systemd_program("auto", [], PROC_DEVICES).attached


def test_systemd_strict_and_nothing_matched() -> None:
    assert systemd_policy("strict", [], PROC_DEVICES) == Policy.deny_all()
    program = systemd_program(
        "strict", [("char-nosuchdriver", "rw"), ("/dev/char/5000:1", "r")], PROC_DEVICES
    )
    assert program.deny_everything and program.prologue and program.entries == ()
    assert program.policy() == Policy.deny_all()


def test_systemd_entry_forms() -> None:
    allow = [
        ("char-nvidia-*", "rw"),
        ("/dev/block/8:1", ""),
        ("char-5", "m"),
        ("/dev/nvidiactl", "rw"),
        ("/dev/missing", "rw"),
        ("bogus", "rw"),
        ("char-*", "m"),
    ]
    stat = {"/dev/nvidiactl": ("c", 195, 255)}.get
    entries = systemd_entries("strict", allow, PROC_DEVICES, stat=stat)
    assert [(e.type, e.major, e.minor, e.access, e.source) for e in entries] == [
        ("c", 195, None, 6, "char-nvidia-*"),
        ("c", 508, None, 6, "char-nvidia-*"),
        ("c", 509, None, 6, "char-nvidia-*"),
        ("b", 8, 1, 7, "/dev/block/8:1"),
        ("c", 5, None, 1, "char-5"),
        ("c", 195, 255, 6, "/dev/nvidiactl"),
        ("c", None, None, 1, "char-*"),
    ]


def test_systemd_bad_input() -> None:
    with pytest.raises(InputError, match='DevicePolicy "open"'):
        systemd_policy("open", [], "")
    with pytest.raises(InputError, match=r'DeviceAllow\[0\] \(char-1\) access "rx": letter "x"'):
        systemd_policy("strict", [("char-1", "rx")], "")


def test_systemd_rule_list_conversion() -> None:
    props = systemd_properties_of(
        rules("deny a\nallow a 195:* rw\nallow c *:1 r\nallow c 1:3 r\nallow c 1:3 w")
    )
    assert props.device_policy == "strict"
    assert dict(props.device_allow) == {"block-195": "rw", "char-195": "rw", "/dev/char/1:3": "w"}
    assert any("*:1" in w for w in props.warnings)
    assert systemd_properties_of(rules("allow a\nallow c 1:3 r")).device_policy == "auto"
    with pytest.raises(InputError, match=r"rule 2 \(deny c 1:3 rwm\): systemd cannot express deny"):
        systemd_properties_of(rules("allow a\ndeny c 1:3 rwm"))


def test_unknown_semantics() -> None:
    with pytest.raises(InputError, match='semantics "docker"'):
        policy_of([], "docker")


# -- speed (printed, not asserted: bench/bench_semantics.py is the benchmark) --------------------


def test_ten_thousand_rules_report(capsys: pytest.CaptureFixture[str]) -> None:
    import random

    rng = random.Random(7)
    big = [
        Rule(rng.random() < 0.8, rng.choice("abc"), rng.choice([None, *range(4000)]),  # type: ignore[arg-type]
             rng.choice([None, *range(300)]), rng.randint(1, 7))
        for _ in range(10_000)
    ]  # fmt: skip
    for semantics in ("ordered", "crun", "runc", "v1", "systemd"):
        rule_list = big
        if semantics in ("runc", "v1", "systemd"):
            # no `a` resets (they would empty the list) and no denies (runc refuses holes)
            rule_list = [r for r in big if r.allow and r.type != "a"]
        start = time.perf_counter()
        policy = policy_of(rule_list, semantics)
        elapsed = time.perf_counter() - start
        with capsys.disabled():
            print(f"\n10k rules -> policy ({semantics}): {elapsed * 1000:.0f} ms, {policy.size} boxes")
        reference = {"ordered": ref_ordered, "crun": ref_crun, "v1": ref_v1, "runc": ref_runc}.get(semantics)
        if reference is not None:  # exact at this size too, on a sample of its own devices
            for x in rule_list[::500]:
                for mask in REQUEST_MASKS:
                    r = Request("c" if x.type == "a" else x.type, x.major or 0, x.minor or 0, mask)
                    assert policy.allows(r) == reference(rule_list, r), (semantics, str(r))


def test_which_systemd_rebuilds_device_programs_on_daemon_reload() -> None:
    from cgdev.core.semantics.systemd import reload_reapplies_devices, systemd_major

    assert systemd_major("257.13-1~deb13u1") == 257 and systemd_major("252.39-1~deb12u1") == 252
    assert systemd_major("") is None and systemd_major(None) is None
    assert not reload_reapplies_devices("257.13-1~deb13u1")  # measured in the lab on Debian 13
    assert reload_reapplies_devices("252.39-1~deb12u1") and reload_reapplies_devices("258.1")
    assert reload_reapplies_devices("262.1-1")  # measured in the sid lab (tests/test_lab_stacks.py)
    assert reload_reapplies_devices("")  # unknown: the 252 model, as before


def test_systemd_reads_ascii_digits_only() -> None:
    """Issue 12 item 9, in the systemd model: systemd's safe_atou refuses '１' (full width), so a
    ``/dev/char/１:3`` entry adds no block (the model read it as ``c 1:3``)."""
    from cgdev.core.semantics.systemd import systemd_program

    def no_stat(path: str) -> None:
        return None

    assert systemd_program("strict", [("/dev/char/１:3", "rw")], "", stat=no_stat).entries == ()
    (entry,) = systemd_program("strict", [("/dev/char/1:3", "rw")], "", stat=no_stat).entries
    assert (entry.type, entry.major, entry.minor) == ("c", 1, 3)
    assert systemd_program("strict", [("char-１", "rw")], "", stat=no_stat).entries == ()


def test_which_runc_drops_a_device_without_a_dev_char_link_for_systemd() -> None:
    from cgdev.core.semantics.runc_dev_char import DevCharCheck, dev_char_check, runc_passes_device

    assert dev_char_check("1.1.2", "252") is DevCharCheck.NONE
    assert dev_char_check("1.1.4", None) is DevCharCheck.DEV_CHAR
    assert (
        dev_char_check("1.1.5", "252.39-1~deb12u1") is DevCharCheck.DEV_CHAR_OR_SYS
    )  # reproduced, Debian 12
    assert dev_char_check("1.1.15+ds1", "257.13-1~deb13u1") is DevCharCheck.NONE  # measured, trixie lab
    assert dev_char_check("1.3.6+ds1", "262.1-1") is DevCharCheck.NONE  # measured, sid lab
    assert dev_char_check("1.1.7", "239") is DevCharCheck.DEV_CHAR_OR_SYS
    assert dev_char_check("1.3.6", None) is None and dev_char_check(None, "262") is None  # unknown
    # an NVIDIA node: neither /dev/char/195:255 nor /sys/dev/char/195:255
    assert runc_passes_device(dev_char_check("1.1.5", "252"), False, False) is False
    assert runc_passes_device(dev_char_check("1.1.5", "252"), False, True) is True
    assert runc_passes_device(dev_char_check("1.1.4", "252"), False, True) is False
    assert runc_passes_device(dev_char_check("1.3.6", "262"), False, False) is True
    assert runc_passes_device(None, True, True) is None


# -- rows x columns: majors with rules of their own (M:*, M:N) under wildcard-major rules (*:N) --
# The builder shares one column map between rows of one class (``_build.rank_classifier``) and
# splices each major's points into it; every cell of the grid is checked against the reference.

_GRID_MAJORS = (0, 1, 2, 7, 195)
_GRID_MINORS = (0, 1, 3, 9, 255)


@st.composite
def grid_lists(draw: st.DrawFn) -> list[Rule]:
    def rule(major: int | None, minor: int | None) -> Rule:
        return Rule(draw(st.booleans()), draw(st.sampled_from("abc")), major, minor, draw(st.integers(1, 7)))

    kinds = st.sampled_from(("row", "column", "point", "any"))
    out = []
    for kind in draw(st.lists(kinds, min_size=1, max_size=24)):
        major, minor = draw(st.sampled_from(_GRID_MAJORS)), draw(st.sampled_from(_GRID_MINORS))
        out.append(
            rule(major, None)
            if kind == "row"
            else rule(None, minor)
            if kind == "column"
            else rule(major, minor)
            if kind == "point"
            else rule(None, None)
        )
    return out


def _grid(rule_list: list[Rule]) -> list[Request]:
    return [
        Request(t, major, minor, mask)  # type: ignore[arg-type]
        for t in "bc"
        for major in (*_GRID_MAJORS, 4)
        for minor in (*_GRID_MINORS, 2)
        for mask in REQUEST_MASKS
    ]


@SETTINGS
@given(grid_lists(), st.sampled_from(["ordered", "crun", "v1"]))
def test_rows_under_wildcard_major_columns_match_reference_on_every_cell(
    rule_list: list[Rule], semantics: str
) -> None:
    reference = {"ordered": ref_ordered, "crun": ref_crun, "v1": ref_v1}[semantics]
    check(policy_of(rule_list, semantics), reference, rule_list, _grid(rule_list))


# -- small facts mutation testing found unasserted (issue 12 item 21) ------------------------------


def test_systemd_auto_without_entries_attaches_nothing_and_lists_nothing() -> None:
    program = systemd_program("auto", [], "")
    assert not program.attached and program.entries == () and program.policy() == Policy.allow_all()


def test_systemd_static_entries_name_the_node_they_come_from() -> None:
    program = systemd_program("closed", [], "136 pts\n")
    sources = [entry.source for entry in program.entries]
    assert sources[:2] == ["/dev/null", "/dev/zero"]
    assert all(sources), "every static entry names its node"


def test_v1_exceptions_carry_the_non_default_action() -> None:
    from cgdev.core.semantics import v1_state

    default_allow, exceptions = v1_state(rules("deny a *:* rwm\nallow c 1:3 rw"))
    assert not default_allow and exceptions == [Rule(True, "c", 1, 3, ACC_R | ACC_W)]
    default_allow, exceptions = v1_state(rules("allow a *:* rwm\ndeny b 8:* w"))
    assert default_allow and exceptions == [Rule(False, "b", 8, None, ACC_W)]


def test_forced_defaults_per_runtime() -> None:
    from cgdev.core.semantics.defaults import CRUN_1_8_DEFAULTS, forced_defaults

    assert forced_defaults("runc") == tuple(rule for _path, rule in RUNC_DEFAULTS)
    assert forced_defaults("crun") == tuple(CRUN_DEFAULTS)
    assert forced_defaults("crun-1.8") == tuple(CRUN_1_8_DEFAULTS)
    assert forced_defaults("ordered") == () and forced_defaults("v1") == ()
