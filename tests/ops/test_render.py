"""Rendering: exact whenever there is no warning, never more than the policy, and the same
meaning to crun's first-match reading; plus the policy algebra laws on policies built from rules."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core.model import ACC_ALL, Request, Rule
from cgdev.core.policy import Policy, StepFn
from cgdev.core.render import to_oci, to_rules, to_systemd, to_v1_lines
from cgdev.core.rules import parse_oci_devices, parse_rule_text
from cgdev.core.semantics import first_match_policy, policy_of, systemd_policy
from strategies import requests_for, rule_lists

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
policies = st.builds(
    lambda rules, sem: policy_of(rules, sem), rule_lists("v1"), st.sampled_from(["ordered", "crun", "v1"])
)


@SETTINGS
@given(policies)
def test_to_rules_exact_without_warnings_and_never_more(policy: Policy) -> None:
    rendered = to_rules(policy)
    meaning = policy_of(rendered.rules)
    assert meaning.issubset(policy)
    if not rendered.warnings:
        assert meaning == policy
    # the same list means the same to a first-match (crun-style) chain read in reverse
    assert first_match_policy(list(reversed(rendered.rules))) == meaning


@SETTINGS
@given(policies)
def test_v1_and_systemd_never_grant_more(policy: Policy) -> None:
    v1 = to_v1_lines(policy)
    v1_meaning = policy_of(v1.rules, "v1")
    assert v1_meaning.issubset(policy)
    assert (v1_meaning == policy) == (not v1.warnings)
    sd = to_systemd(policy)
    sd_meaning = systemd_policy(sd.device_policy, sd.device_allow, "")
    assert sd_meaning.issubset(policy)
    assert (sd_meaning == policy) == (not sd.warnings)


def test_typical_container_renders_exactly() -> None:
    policy = policy_of(parse_rule_text("deny a\nallow c 195:255 rw"), "crun")
    rendered = to_rules(policy)
    assert rendered.warnings == ()
    assert [str(r) for r in rendered.rules][:2] == ["allow a *:* m", "allow c 136:* rwm"]
    oci = to_oci(policy)
    assert oci[0] == {"allow": False, "type": "a", "access": "rwm"}
    assert policy_of(parse_oci_devices(oci)) == policy
    sd = to_systemd(policy)
    assert sd.device_policy == "strict" and sd.warnings == ()
    assert ("char-136", "rwm") in sd.device_allow and ("/dev/char/195:255", "rwm") in sd.device_allow


def test_r_and_w_without_rw_is_conservative() -> None:
    policy = policy_of(parse_rule_text("deny a\nallow c 195:0 r\nallow c 195:0 w"), "crun")
    rendered = to_rules(policy)
    assert rendered.warnings and "c 195:0" in rendered.warnings[0] and "w" in rendered.warnings[0]
    assert policy_of(rendered.rules).allows(Request("c", 195, 0, 2))
    assert not policy_of(rendered.rules).allows(Request("c", 195, 0, 4))


def test_large_range_is_conservative() -> None:
    maps = StepFn.from_pieces(
        [(0, StepFn.const(0)), (1000, StepFn.const(0b0101_0110)), (10**6, StepFn.const(0))]
    )
    policy = Policy(StepFn.const(StepFn.const(0)), maps)
    rendered = to_rules(policy)
    assert rendered.rules == () and "c 1000-999999:*" in rendered.warnings[0]


def test_systemd_warnings_for_deny_inside_allow_all_and_star_minor() -> None:
    hole = to_systemd(policy_of(parse_rule_text("allow a\ndeny c 195:* rwm")))
    assert hole.device_policy == "strict" and hole.warnings
    star = to_systemd(policy_of(parse_rule_text("allow c *:5 r")))
    assert star.device_allow == () and "c *:5" in star.warnings[0]
    assert to_systemd(Policy.allow_all()).device_policy == "auto"


def test_v1_picks_allow_all_mode_when_exact() -> None:
    rendered = to_v1_lines(policy_of(parse_rule_text("allow a\ndeny c 1:3 rwm")))
    assert [str(r) for r in rendered.rules] == ["allow a *:* rwm", "deny c 1:3 rwm"]
    assert rendered.warnings == ()


# -- policy algebra on policies built from rules ---------------------------------------------------


@SETTINGS
@given(policies, policies, policies)
def test_algebra_laws(p: Policy, q: Policy, r: Policy) -> None:
    assert p & q == q & p and p | q == q | p
    assert (p & q) & r == p & (q & r)
    assert p & (q | r) == (p & q) | (p & r)
    assert ~~p == p and p & ~p == Policy.deny_all() and p | ~p == Policy.allow_all()
    assert p.minus(q) == p & ~q
    assert (p & q).issubset(p) and p.issubset(p | q)


@SETTINGS
@given(st.data())
def test_diff_is_exact(data: st.DataObject) -> None:
    a_rules = data.draw(rule_lists())
    b_rules = data.draw(rule_lists())
    p, q = policy_of(a_rules), policy_of(b_rules)
    mismatches = p.diff(q)
    assert (not mismatches) == (p == q)
    for m in mismatches:
        assert p.allows(m.request) == m.left != m.right == q.allows(m.request)
    for request in data.draw(requests_for(a_rules + b_rules)):
        if p.allows(request) != q.allows(request):
            assert mismatches


def test_rule_a_is_both_types() -> None:
    assert policy_of([Rule(True, "a", 1, 3, ACC_ALL)]) == policy_of(
        [Rule(True, "b", 1, 3, ACC_ALL), Rule(True, "c", 1, 3, ACC_ALL)]
    )
