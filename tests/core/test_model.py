"""The device model's kinds and its one reader of device spellings (issue 7 item 4, issue 12 item 9)."""

from __future__ import annotations

import pytest

from cgdev.core.model import ACC_R, ACC_W, Access, Device, DevType, Request, Rule, RuleType
from cgdev.errors import InputError

NVIDIACTL = Device(DevType.CHAR, 195, 255)


@pytest.mark.parametrize(
    "text", ["c 195:255", "  c  195 : 255 ", "195:255", "/dev/char/195:255", " /dev/char/195:255"]
)
def test_every_spelling_of_a_char_device(text: str) -> None:
    assert Device.parse_numeric(text) == NVIDIACTL


def test_block_spellings() -> None:
    assert Device.parse_numeric("b 8:0") == Device(DevType.BLOCK, 8, 0)
    assert Device.parse_numeric("/dev/block/8:0") == Device(DevType.BLOCK, 8, 0)


@pytest.mark.parametrize("path", ["/dev/nvidiactl", "/dev/null", "/dev/chars/1:3", "/"])
def test_other_paths_are_for_the_host_to_look_up(path: str) -> None:
    assert Device.parse_numeric(path) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x 1:3", "type 'x' is not b or c"),
        ("c １:3", "is not a number"),  # full-width digit one: Python's isdecimal() takes it
        ("c 1:３", "is not a number"),
        ("１:3", "is not a number"),
        ("/dev/char/１:3", "is not a number"),
        ("c 4294967296:0", "does not fit 32 bits"),
        ("c -1:0", "is not a number"),
        ("c 1-3", "is not MAJOR:MINOR"),
        ("/dev/char/13", "expected /dev/char/MAJOR:MINOR"),
        ("", "is not MAJOR:MINOR"),
        ("c 1:3 extra", "is not MAJOR:MINOR"),
    ],
)
def test_malformed_spellings_name_the_field_and_value(text: str, why: str) -> None:
    with pytest.raises(InputError) as info:
        Device.parse_numeric(text)
    assert info.value.field == "device" and info.value.value == text
    assert why in str(info.value)
    assert info.value.exit_code == 2


def test_request_parse_and_device() -> None:
    request = Request.parse("c 195:255 rw")
    assert request == Request("c", 195, 255, ACC_R | ACC_W)
    assert request.type is DevType.CHAR and request.access is Access.R | Access.W
    assert request.device == NVIDIACTL
    assert Request.parse("/dev/block/8:0 m") == Request("b", 8, 0, 1)
    assert Request.parse("195:255 wr").access == 6
    assert str(request) == "c 195:255 rw"
    assert request.to_json() == {"type": "c", "major": 195, "minor": 255, "access": "rw"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("c 1:3 rwx", "access 'rwx'"),
        ("c 1:3 rwm", "access 'rwm'"),  # one request asks m, or opens for r, w or rw
        ("c 1:3", "expected 'TYPE MAJOR:MINOR ACCESS'"),
        ("rw", "expected 'TYPE MAJOR:MINOR ACCESS'"),
        ("/dev/null rw", "a path needs a look-up"),
        ("c 1:3 rr", "access 'rr'"),
    ],
)
def test_request_parse_refusals(text: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        Request.parse(text)


def test_access_letters_round_trip() -> None:
    for mask in range(8):
        assert Access.parse(Access(mask).letters) == mask
    assert Access(7).letters == "rwm" and Access.parse("mwr") == 7
    with pytest.raises(InputError, match='letter "q"'):
        Access.parse("rq")


def test_kinds_are_enums_that_still_read_as_text() -> None:
    rule = Rule(True, "c", 1, 3, 7)
    assert rule.type is RuleType.CHAR and rule == Rule(True, RuleType.CHAR, 1, 3, Access(7))
    assert str(rule) == "allow c 1:3 rwm" and Rule(False).type is RuleType.ALL
    assert f"{DevType.BLOCK}" == "b" and DevType.CHAR.kernel == 2


def test_maskset_for_bits_is_the_subset_rule_for_any_int() -> None:
    """The table answers as the definition: every request mask that is a subset of ``bits``."""
    from cgdev.core.model import REQUEST_MASKS, maskset_for_bits

    for bits in range(-16, 64):
        assert maskset_for_bits(bits) == sum(1 << m for m in REQUEST_MASKS if m & bits == m), bits


def test_rule_types_from_strings_and_members_and_refusals() -> None:
    from cgdev.core.model import Rule, RuleType

    assert Rule(True, "c").type is RuleType.CHAR and Rule(True, RuleType.BLOCK).type is RuleType.BLOCK
    assert Rule(True).type is RuleType.ALL
    for wrong in ("x", 5, ["c"], None):
        with pytest.raises(ValueError):
            Rule(True, wrong)  # type: ignore[arg-type]
