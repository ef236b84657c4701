"""ops.convert: A -> B -> policy is A's policy wherever B can say it exactly (no renderer warning),
and never more than A's; plus the systemd reader and compile --json's minimal rule list."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgdev.core.model import Rule
from cgdev.core.rules import RuleList, read_rule_text
from cgdev.core.semantics import policy_of
from cgdev.errors import InputError
from cgdev.ops.compile_rules import compile_rules
from cgdev.ops.convert import convert, convert_systemd, read_systemd_lines, render
from strategies import rule_lists

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TARGETS = ("oci", "v1", "systemd", "rules")


def _read_back(lines: tuple[str, ...], target: str):  # type: ignore[no-untyped-def]
    """The output text read again as its own syntax means it (what a user would feed back)."""
    if target == "systemd":
        return convert_systemd(list(lines), "rules").policy
    source = {"oci": "oci", "v1": "v1", "rules": "oci"}[target]  # rules: an ordered list, v1 syntax
    return convert(read_rule_text("\n".join(lines), "out"), source, "rules").policy


@SETTINGS
@given(rule_lists("v1"), st.sampled_from([("oci", "ordered"), ("oci", "crun"), ("v1", None)]),
       st.sampled_from(TARGETS))  # fmt: skip
def test_round_trip_is_exact_wherever_the_target_can_say_it(
    rules: list[Rule], source: tuple[str, str | None], target: str
) -> None:
    syntax, semantics = source
    converted = convert(RuleList(rules), syntax, target, semantics)
    assert converted.policy == policy_of(rules, converted.semantics)
    _lines, _doc, lost = render(converted.policy, target)
    back = _read_back(converted.lines, target)
    assert back.issubset(converted.policy)  # never more than the input
    if not lost:
        assert back == converted.policy
    else:
        assert set(lost) <= set(converted.warnings)  # what was lost is said


def test_systemd_lines_reset_policy_and_errors() -> None:
    policy, entries = read_systemd_lines(["DevicePolicy=closed", "DeviceAllow=/dev/null rw", "DeviceAllow=",
                                          "char-136 rw  # ptys"])  # fmt: skip
    assert policy == "closed" and entries == (("char-136", "rw"),)
    assert convert_systemd(["DevicePolicy=auto"], "rules").policy == policy_of([Rule(True)])
    with pytest.raises(InputError):
        read_systemd_lines(["DevicePolicy=open"])
    with pytest.raises(InputError) as err:
        convert(RuleList([]), "v1", "oci", "runc")
    assert err.value.field == "semantics"


def test_target_syntax_limits_are_warned() -> None:
    # systemd has no *:N rule: a conservative rendering, with a warning naming what is lost
    converted = convert(read_rule_text("deny a\nallow c *:3 rw", "t"), "v1", "systemd")
    assert converted.warnings and "systemd cannot express" in " ".join(converted.warnings)


def test_compile_json_has_the_minimal_rule_list_next_to_the_policy() -> None:
    doc = compile_rules(read_rule_text("deny a\nallow c 1:3 rwm\nallow c 136:* rw", "t"), "cgdev").to_json()
    assert "policy" in doc and doc["rules_warnings"] == []
    assert set(doc["rules"]) == {"allow c 1:3 rwm", "allow c 136:* rw"}
    json.dumps(doc)
