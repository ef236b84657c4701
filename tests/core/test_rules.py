"""Parsers and printers: every syntax, round trips, and every kind of malformed input giving a
one-line InputError that names the field and the value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from cgdev.core.model import ACC_ALL, Rule
from cgdev.core.rules import (
    format_oci,
    format_systemd_entry,
    format_v1,
    parse_access,
    parse_device_allow,
    parse_oci_config,
    parse_oci_devices,
    parse_rule_text,
    parse_v1_line,
    read_oci_config,
    read_rule_text,
)
from cgdev.errors import InputError
from strategies import rule_lists

PROC = "Character devices:\n  1 mem\n136 pts\n195 nvidia\n508 nvidia-uvm\n\nBlock devices:\n  8 sd\n"


def test_oci_entries() -> None:
    entries = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": True, "type": "b", "major": -1, "minor": None, "access": "m"},
        {"allow": True, "type": "c", "major": 195},
    ]
    assert parse_oci_devices(entries) == [
        Rule(False, "a", None, None, ACC_ALL),
        Rule(True, "c", 1, 3, 6),
        Rule(True, "b", None, None, 1),
        Rule(True, "c", 195, None, 0),
    ]


def test_oci_config() -> None:
    config = {"linux": {"resources": {"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3}]}}}
    assert parse_oci_config(config) == [Rule(True, "c", 1, 3, 0)]
    assert parse_oci_config({"linux": {}}) == []
    assert parse_oci_config({}) == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"allow": True}] * 3 + [{"allow": "false"}], 'devices[3].allow: expected a boolean, got "false"'),
        ([{"type": "c"}], "devices[0].allow: missing"),
        ([{"allow": True, "type": "x"}], 'devices[0].type: type "x" is not one of a, b, c'),
        ([{"allow": True, "access": "rwx"}], 'devices[0].access "rwx": letter "x" is not one of r, w, m'),
        ([{"allow": True, "access": 7}], "devices[0].access: expected a string"),
        ([{"allow": True, "major": -2}], "devices[0].major: -2 is out of range"),
        ([{"allow": True, "minor": 2**32}], "devices[0].minor: 4294967296 is out of range"),
        ([{"allow": True, "major": "1"}], 'devices[0].major: expected an integer, got "1"'),
        ([{"allow": True, "major": True}], "devices[0].major: expected an integer, got true"),
        ([{"allow": True, "major": 1.5}], "devices[0].major: expected an integer, got 1.5"),
        (["c 1:3 rwm"], 'devices[0]: expected an object, got "c 1:3 rwm"'),
        ({"allow": True}, "devices: expected a list"),
    ],
)
def test_oci_malformed(entries: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_oci_devices(entries)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_oci_config_malformed() -> None:
    with pytest.raises(InputError, match=r"linux\.resources: expected an object"):
        parse_oci_config({"linux": {"resources": []}})
    with pytest.raises(InputError, match=r"linux.resources.devices\[0\].allow"):
        parse_oci_config({"linux": {"resources": {"devices": [{"allow": 1}]}}})


def test_v1_lines() -> None:
    assert parse_v1_line("c 1:3 rwm", "rule 1") == Rule(True, "c", 1, 3, ACC_ALL)
    assert parse_v1_line("a *:* rwm", "rule 1") == Rule(True, "a", None, None, ACC_ALL)
    assert parse_v1_line("a", "rule 1") == Rule(True, "a", None, None, ACC_ALL)
    assert parse_v1_line("deny b 8:* r", "rule 1") == Rule(False, "b", 8, None, 2)
    assert parse_v1_line("allow c 4294967295:0", "rule 1") == Rule(True, "c", 2**32 - 1, 0, ACC_ALL)
    assert parse_v1_line("c 1:3 none", "rule 1") == Rule(True, "c", 1, 3, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("c 1:3 rwm\nx 1:3 rwm", 'rules:2: rule: type "x" is not one of a, b, c'),
        ("c 1:3 rwm\n\nc 1:3 rwx", 'rules:3: rule: access "rwx": letter "x" is not one of r, w, m'),
        ("c -1:3 rwm", 'rules:1: rule: major "-1": not * or a number'),
        ("c 1:4294967296 rwm", 'rules:1: rule: minor "4294967296": not * or a number'),
        ("c 1 rwm", 'rules:1: rule "1": expected MAJOR:MINOR'),
        ("c", 'rules:1: rule "c": missing MAJOR:MINOR'),
        ("deny", 'rules:1: rule "deny": missing the device type'),
        ("c 1:3 rwm extra", 'rules:1: rule "c 1:3 rwm extra": expected TYPE MAJOR:MINOR ACCESS'),
        ("hello world", 'rules:1: rule "hello world": not a rule'),
        ("/dev/nvidia0 rw", 'rules:1: rule "/dev/nvidia0": resolving a device path needs the host\'s /dev'),
        ("char-nvidia rw", 'rules:1: rule "char-nvidia": resolving a driver name needs /proc/devices'),
        ("/dev/char/1:* rw", 'rules:1: rule "/dev/char/1:*": a device path needs numbers'),
        ('[{"allow": "false"}]', 'devices[0].allow: expected a boolean, got "false"'),
        ('[{"allow": true,', "JSON: Expecting"),
        ('{"foo": 1}', "JSON: expected a list of device entries or a config.json"),
    ],
)
def test_text_malformed(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_rule_text(text)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_systemd_syntax() -> None:
    lookup = {"/dev/nvidiactl": ("c", 195, 255)}.get
    assert parse_rule_text(
        "DeviceAllow=/dev/char/195:255 rw\nchar-136 rwm\nblock-* m\n/dev/nvidiactl\nchar-nvidia* r\n# note",
        lookup=lookup,
        proc_devices=PROC,
    ) == [
        Rule(True, "c", 195, 255, 6),
        Rule(True, "c", 136, None, 7),
        Rule(True, "b", None, None, 1),
        Rule(True, "c", 195, 255, 7),
        Rule(True, "c", 195, None, 2),
        Rule(True, "c", 508, None, 2),
    ]
    assert parse_device_allow("char-pts", "rw", "x", proc_devices=PROC) == [Rule(True, "c", 136, None, 6)]
    with pytest.raises(InputError, match='x "char-gpu": no driver in /proc/devices matches "gpu"'):
        parse_device_allow("char-gpu", "rw", "x", proc_devices=PROC)
    with pytest.raises(InputError, match='"/dev/sda1": no character or block device at this path'):
        parse_device_allow("/dev/sda1", "rw", "x", lookup=lambda _p: None)


def test_json_text_forms() -> None:
    entries = [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}]
    want = [Rule(True, "c", 1, 3, 2)]
    assert parse_rule_text(json.dumps(entries)) == want
    assert parse_rule_text(json.dumps({"linux": {"resources": {"devices": entries}}})) == want
    assert parse_rule_text(json.dumps({"devices": entries})) == want


def test_access() -> None:
    assert parse_access("mwr", "f") == 7
    assert parse_access("", "f") == 0
    with pytest.raises(InputError, match='f "R": letter "R"'):
        parse_access("R", "f")


def test_printers() -> None:
    rule = Rule(True, "c", 195, None, 6)
    assert format_v1(rule) == "allow c 195:* rw"
    assert format_v1(rule, verb=False) == "c 195:* rw"
    assert format_oci(rule) == {"allow": True, "type": "c", "major": 195, "access": "rw"}
    assert format_systemd_entry(Rule(True, "a", 195, 3, 7)) == [
        ("/dev/block/195:3", "rwm"),
        ("/dev/char/195:3", "rwm"),
    ]
    assert format_systemd_entry(Rule(True, "c", None, None, 1)) == [("char-*", "m")]
    with pytest.raises(InputError, match="cannot express deny"):
        format_systemd_entry(Rule(False, "c", 1, 3, 7))
    with pytest.raises(InputError, match=r"cannot express \*:3"):
        format_systemd_entry(Rule(True, "c", None, 3, 7))


@settings(max_examples=200, deadline=None)
@given(rule_lists())
def test_round_trips(rule_list: list[Rule]) -> None:
    assert parse_rule_text("\n".join(format_v1(r) for r in rule_list)) == rule_list
    assert parse_oci_devices([format_oci(r) for r in rule_list]) == rule_list


# -- issue 12: full-width digits, warnings, FILE:LINE ------------------------------------------------


@pytest.mark.parametrize("text", ["c １:3 rwm", "c 1:３ r", "/dev/char/１:3 rw", "char-１ rw"])
def test_numbers_are_ascii_digits_only(text: str) -> None:
    """Issue 12 item 9: '１' (U+FF11) is a decimal digit to Python, not to any runtime."""
    with pytest.raises(InputError, match="not \\* or a number"):
        parse_rule_text(text)


def test_rule_file_errors_name_the_file_and_line() -> None:
    """Issue 12 item 12: ``rules.txt:5: ...``, not "rule 5"."""
    text = "# header\nc 1:3 rwm\n\nallow c 5:1 r\nc 1:3 rwx\n"
    with pytest.raises(InputError) as info:
        read_rule_text(text, "rules.txt")
    assert str(info.value).startswith("rules.txt:5: ")
    assert 'access "rwx"' in str(info.value)


def test_empty_and_absent_rules_warn() -> None:
    """Issue 12 item 11: an empty file and ``{"linux":{}}`` compile to deny-all: say so."""
    for text in ("", "# only a comment\n", "[]"):
        read = read_rule_text(text, "empty.txt")
        assert read.rules == [] and read.warnings and read.warnings[0].startswith("empty.txt: ")
    for config in (
        {"linux": {}},
        {},
        {"linux": {"resources": {}}},
        {"linux": {"resources": {"devices": []}}},
    ):
        read = read_oci_config(config, "config.json")
        assert read.rules == [] and len(read.warnings) == 1, config
        assert "no device rules" in read.warnings[0]
    assert read_rule_text("c 1:3 rwm", "ok.txt").warnings == []


def test_unknown_keys_warn_with_the_closest_known_one() -> None:
    """Issue 12 item 11: ``"tpye"`` was read as an absent type, i.e. ``a``, silently."""
    read = read_oci_config(
        {"linux": {"resources": {"devices": [{"allow": True, "tpye": "c", "major": 1, "access": "r"}]}}}
    )
    assert read.rules == [Rule(True, "a", 1, None, 2)]
    (warning,) = read.warnings
    assert 'devices[0]: unknown key "tpye"' in warning and 'did you mean "type"' in warning
    assert (
        read_oci_config(
            {"linux": {"resources": {"devices": [{"allow": True, "type": "c", "access": "r"}]}}}
        ).warnings
        == []
    )


def test_rules_without_access_are_named_in_a_warning() -> None:
    """Issue 8 item 6: a rule with no access means three different things; say so, naming it."""
    from cgdev.core.rules import missing_access_warnings, parse_oci_devices

    rules = parse_oci_devices(
        [{"allow": True, "type": "c", "major": 1, "minor": 3}, {"allow": True, "type": "c", "access": "rw"},
         {"allow": False, "access": ""}]
    )  # fmt: skip
    warnings = missing_access_warnings(rules)
    assert [w.split(":")[0] for w in warnings] == ["rule 1 (allow c 1", "rule 3 (deny a *"]
    assert all("systemd reads it as rwm" in w and "runc" in w for w in warnings)
    assert missing_access_warnings(parse_oci_devices([{"allow": True, "access": "m"}])) == []


def test_compile_warns_about_a_rule_without_access(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"allow": True, "type": "c", "major": 1, "minor": 3}]))
    done = subprocess.run([sys.executable, "-m", "cgdev", "compile", "--rules", str(path), "--json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (warning,) = json.loads(done.stdout)["warnings"]
    assert warning.startswith("rule 1 (allow c 1:3): no access")
