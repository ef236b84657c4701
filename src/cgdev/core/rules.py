"""Parsers and printers for device rules in every syntax users meet.

Syntaxes: OCI ``linux.resources.devices`` JSON entries, v1 ``devices.allow``-style lines
(``c 1:3 rwm``, ``a *:* rwm``, ``a``, optionally prefixed ``allow``/``deny``) and systemd
``DeviceAllow=`` entries (``/dev/char/195:255 rw``, ``char-136 rwm``, ``block-* m``, ``char-pts``,
``/dev/nvidia0`` through a lookup the caller supplies, since the core does no I/O).

Validation is strict and every error is one line naming the field and the value, because these
rules decide what a container may open: a silently misread ``"allow": "false"`` would grant.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from cgdev.core.model import ACC_ALL, ACC_M, ACC_R, ACC_W, U32_MAX, DevType, Rule, RuleType, access_to_str
from cgdev.errors import InputError

LookupFn = Callable[[str], "tuple[str, int, int] | None"]

_LETTERS: Final = {"r": ACC_R, "w": ACC_W, "m": ACC_M}
_RULE_TYPES: Final = ("a", "b", "c")


def _show(value: object) -> str:
    """A short JSON-ish rendering of a bad value for a one-line message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- fields ---------------------------------------------------------------------------------------


def parse_access(text: object, field: str) -> int:
    """``"rwm"`` -> 7; empty -> 0 (the caller decides what empty means for its syntax)."""
    if not isinstance(text, str):
        raise InputError(f"{field}: expected a string of r, w, m, got {_show(text)}")
    mask = 0
    for ch in text:
        if ch not in _LETTERS:
            raise InputError(f'{field} "{text}": letter "{ch}" is not one of r, w, m')
        mask |= _LETTERS[ch]
    return mask


def parse_type(text: object, field: str) -> RuleType:
    if not isinstance(text, str) or text not in _RULE_TYPES:
        raise InputError(f"{field}: type {_show(text)} is not one of a, b, c")
    return text  # type: ignore[return-value]


def parse_number(text: str, field: str) -> int | None:
    """A v1/systemd major or minor: ``*`` or a decimal u32."""
    if text == "*":
        return None
    if not text.isascii() or not text.isdecimal() or int(text) > U32_MAX:
        raise InputError(f'{field} "{text}": not * or a number 0..{U32_MAX}')
    return int(text)


def _json_number(value: object, field: str) -> int | None:
    """An OCI major/minor: absent, null or -1 is the wildcard."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field}: expected an integer, got {_show(value)}")
    if value == -1:
        return None
    if value < 0 or value > U32_MAX:
        raise InputError(f"{field}: {value} is out of range (-1 or 0..{U32_MAX})")
    return value


# -- OCI JSON -------------------------------------------------------------------------------------


def parse_oci_device(entry: object, field: str) -> Rule:
    """One ``linux.resources.devices`` entry.  A missing or empty ``access`` is mask 0, as crun
    reads it (runc refuses it; ``runc_program_rules`` says so)."""
    if not isinstance(entry, Mapping):
        raise InputError(f"{field}: expected an object, got {_show(entry)}")
    if "allow" not in entry:
        raise InputError(f"{field}.allow: missing (required)")
    allow = entry["allow"]
    if not isinstance(allow, bool):
        raise InputError(f"{field}.allow: expected a boolean, got {_show(allow)}")
    raw_type = entry.get("type")
    dev_type = "a" if raw_type is None else parse_type(raw_type, f"{field}.type")
    major = _json_number(entry.get("major"), f"{field}.major")
    minor = _json_number(entry.get("minor"), f"{field}.minor")
    raw_access = entry.get("access")
    access = 0 if raw_access is None else parse_access(raw_access, f"{field}.access")
    return Rule(allow, dev_type, major, minor, access)


def parse_oci_devices(entries: object, field: str = "devices") -> list[Rule]:
    if not isinstance(entries, list):
        raise InputError(f"{field}: expected a list of device entries, got {_show(entries)}")
    return [parse_oci_device(entry, f"{field}[{i}]") for i, entry in enumerate(entries)]


def parse_oci_config(config: object) -> list[Rule]:
    """``linux.resources.devices`` of a config.json document (absent -> no rules)."""
    node: object = config
    path = "config"
    for key in ("linux", "resources"):
        if not isinstance(node, Mapping):
            raise InputError(f"{path}: expected an object, got {_show(node)}")
        node = node.get(key)
        path = key if path == "config" else f"{path}.{key}"
        if node is None:
            return []
    if not isinstance(node, Mapping):
        raise InputError(f"{path}: expected an object, got {_show(node)}")
    devices = node.get("devices")
    return [] if devices is None else parse_oci_devices(devices, f"{path}.devices")


def format_oci(rule: Rule) -> dict[str, Any]:
    """The OCI entry for a rule; wildcards are omitted, as engines write them."""
    out: dict[str, Any] = {"allow": rule.allow, "type": rule.type}
    if rule.major is not None:
        out["major"] = rule.major
    if rule.minor is not None:
        out["minor"] = rule.minor
    out["access"] = access_to_str(rule.access)
    return out


# -- v1 lines -------------------------------------------------------------------------------------


def parse_v1_line(line: str, field: str) -> Rule:
    """``[allow|deny] TYPE [MAJOR:MINOR [ACCESS]]``; ``a`` alone is ``a *:* rwm``; a missing
    access is ``rwm``; ``none`` is the empty access (how ``format_v1`` writes mask 0)."""
    words = line.split()
    allow = True
    if words and words[0] in ("allow", "deny"):
        allow = words.pop(0) == "allow"
    if not words:
        raise InputError(f'{field} "{line.strip()}": missing the device type (a, b or c)')
    if len(words) > 3:
        raise InputError(f'{field} "{line.strip()}": expected TYPE MAJOR:MINOR ACCESS')
    dev_type = parse_type(words[0], field)
    if len(words) == 1:
        if dev_type != "a":
            raise InputError(f'{field} "{line.strip()}": missing MAJOR:MINOR')
        return Rule(allow, "a", None, None, ACC_ALL)
    major_text, sep, minor_text = words[1].partition(":")
    if not sep:
        raise InputError(f'{field} "{words[1]}": expected MAJOR:MINOR')
    major = parse_number(major_text, f"{field}: major")
    minor = parse_number(minor_text, f"{field}: minor")
    access = ACC_ALL
    if len(words) == 3:
        access = 0 if words[2] == "none" else parse_access(words[2], f"{field}: access")
    return Rule(allow, dev_type, major, minor, access)


def format_v1(rule: Rule, verb: bool = True) -> str:
    """``allow c 1:3 rwm`` (``verb=False``: ``c 1:3 rwm``, the devices.list form)."""
    major = "*" if rule.major is None else str(rule.major)
    minor = "*" if rule.minor is None else str(rule.minor)
    body = f"{rule.type} {major}:{minor} {access_to_str(rule.access) or 'none'}"
    return f"{'allow' if rule.allow else 'deny'} {body}" if verb else body


# -- systemd DeviceAllow ----------------------------------------------------------------------------


def device_allow_path(dev_type: str, major: int | None, minor: int | None) -> str | None:
    """The DeviceAllow string for one type and meta, as runc and crun convert; None for ``*:M``."""
    word = "char" if dev_type == "c" else "block"
    if major is None:
        return f"{word}-*" if minor is None else None
    if minor is None:
        return f"{word}-{major}"
    return f"/dev/{word}/{major}:{minor}"


def _proc_majors(proc_devices: str, dev_type: str, pattern: str) -> list[int]:
    import fnmatch

    header = "Character devices:" if dev_type == "c" else "Block devices:"
    majors: list[int] = []
    good = False
    for line in proc_devices.splitlines():
        if line == header:
            good = True
        elif not line.strip():
            good = False
        elif good:
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].isdecimal() and fnmatch.fnmatchcase(parts[1].strip(), pattern):
                majors.append(int(parts[0]))
    return majors


def parse_device_allow(
    path: str,
    access_text: str,
    field: str,
    lookup: LookupFn | None = None,
    proc_devices: str | None = None,
) -> list[Rule]:
    """One DeviceAllow entry as allow rules (``char-NAME`` may give several, one per major).

    An empty access is ``rwm`` (systemd's reading).  Device paths other than ``/dev/char/M:m`` and
    ``/dev/block/M:m`` need ``lookup`` (path -> (type, major, minor) or None); driver names need
    the text of /proc/devices.
    """
    access = parse_access(access_text, f"{field}: access") or ACC_ALL
    for prefix, dev_type in (("/dev/char/", "c"), ("/dev/block/", "b")):
        if path.startswith(prefix):
            major_text, sep, minor_text = path[len(prefix) :].partition(":")
            if not sep:
                raise InputError(f'{field} "{path}": expected {prefix}MAJOR:MINOR')
            major = parse_number(major_text, f"{field}: major")
            minor = parse_number(minor_text, f"{field}: minor")
            if major is None or minor is None:
                raise InputError(f'{field} "{path}": a device path needs numbers, not *')
            return [Rule(True, dev_type, major, minor, access)]  # type: ignore[arg-type]
    for prefix, dev_type in (("char-", "c"), ("block-", "b")):
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if not name:
                raise InputError(f'{field} "{path}": missing the major, * or driver name')
            if name == "*" or name.isdecimal():
                return [Rule(True, dev_type, parse_number(name, f"{field}: major"), None, access)]  # type: ignore[arg-type]
            if proc_devices is None:
                raise InputError(f'{field} "{path}": resolving a driver name needs /proc/devices')
            majors = _proc_majors(proc_devices, dev_type, name)
            if not majors:
                raise InputError(f'{field} "{path}": no driver in /proc/devices matches "{name}"')
            return [Rule(True, dev_type, m, None, access) for m in majors]  # type: ignore[arg-type]
    if path.startswith("/"):
        if lookup is None:
            raise InputError(f'{field} "{path}": resolving a device path needs a device lookup')
        found = lookup(path)
        if found is None or found[0] not in ("b", "c"):
            raise InputError(f'{field} "{path}": not a character or block device')
        t, major, minor = found
        return [Rule(True, t, major, minor, access)]  # type: ignore[arg-type]
    raise InputError(f'{field} "{path}": not a device path, char-NAME or block-NAME')


def format_systemd_entry(rule: Rule) -> list[tuple[str, str]]:
    """The DeviceAllow entries for an allow rule (two for type ``a``).  Raises for what systemd
    cannot express: deny rules and ``*:M``."""
    if not rule.allow:
        raise InputError(f"{rule}: systemd cannot express deny rules")
    out: list[tuple[str, str]] = []
    for dev_type in ("b", "c") if rule.type == "a" else (rule.type,):
        path = device_allow_path(dev_type, rule.major, rule.minor)
        if path is None:
            raise InputError(f"{rule}: systemd cannot express *:{rule.minor}")
        out.append((path, access_to_str(rule.access)))
    return out


# -- any syntax -----------------------------------------------------------------------------------


def _parse_json_text(text: str) -> list[Rule]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if isinstance(data, list):
        return parse_oci_devices(data)
    if isinstance(data, dict) and "linux" in data:
        return parse_oci_config(data)
    if isinstance(data, dict) and "devices" in data:
        return parse_oci_devices(data["devices"])
    raise InputError(f"JSON: expected a list of device entries or a config.json, got {_show(data)}")


def parse_rule_line(
    line: str, field: str, lookup: LookupFn | None = None, proc_devices: str | None = None
) -> list[Rule]:
    """One line in v1 or systemd syntax (``DeviceAllow=`` prefix optional)."""
    text = line.strip()
    if text.startswith("DeviceAllow="):
        text = text[len("DeviceAllow=") :].strip()
    words = text.split()
    if not words:
        raise InputError(f"{field}: empty rule")
    first = words[0]
    looks_v1 = len(words) >= 2 and ":" in words[1] and not first.startswith(("/", "char-", "block-"))
    if first in ("allow", "deny") or first in _RULE_TYPES or looks_v1:
        return [parse_v1_line(text, field)]
    if first.startswith(("/", "char-", "block-")):
        if len(words) > 2:
            raise InputError(f'{field} "{text}": expected PATH [ACCESS]')
        access = words[1] if len(words) == 2 else ""
        return parse_device_allow(first, access, field, lookup, proc_devices)
    raise InputError(f'{field} "{text}": not a rule (v1 "c 1:3 rwm", systemd "char-136 rwm" or OCI JSON)')


def parse_rule_text(text: str, lookup: LookupFn | None = None, proc_devices: str | None = None) -> list[Rule]:
    """Rules from text in any syntax: a JSON array / config.json, or one rule per line (v1 or
    systemd; blank lines and ``#`` comments skipped).  Errors name the rule by its line number."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        return _parse_json_text(stripped)
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            rules.extend(parse_rule_line(content, f"rule {number}", lookup, proc_devices))
    return rules


def missing_access_warnings(rules: Sequence[Rule]) -> list[str]:
    """One warning per rule with no access (issue 8 item 6): an OCI rule without ``access`` (or
    with ``""``) decides nothing for cgdev and crun, but runc and the kernel's v1 parser refuse it
    and systemd reads it as ``rwm`` — the same list means three things, so it must not pass
    silently."""
    return [
        f"rule {i} ({str(rule).rstrip()}): no access: cgdev and crun read it as deciding nothing, runc and "
        f"the kernel's v1 parser refuse it, systemd reads it as rwm"
        for i, rule in enumerate(rules, start=1)
        if rule.access == 0
    ]


def format_rules_v1(rules: Sequence[Rule]) -> str:
    return "".join(format_v1(r) + "\n" for r in rules)


__all__ = [
    "DevType",
    "format_oci",
    "format_rules_v1",
    "format_systemd_entry",
    "format_v1",
    "parse_access",
    "parse_device_allow",
    "parse_oci_config",
    "parse_oci_device",
    "parse_oci_devices",
    "parse_rule_line",
    "parse_rule_text",
    "parse_v1_line",
]
