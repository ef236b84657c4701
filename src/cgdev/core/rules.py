"""Parsers and printers for device rules in every syntax users meet.

Syntaxes: OCI ``linux.resources.devices`` JSON entries, v1 ``devices.allow``-style lines
(``c 1:3 rwm``, ``a *:* rwm``, ``a``, optionally prefixed ``allow``/``deny``) and systemd
``DeviceAllow=`` entries (``/dev/char/195:255 rw``, ``char-136 rwm``, ``block-* m``, ``char-pts``,
``/dev/nvidia0`` through a lookup the caller supplies, since the core does no I/O).

Validation is strict and every error is one line naming the field and the value, because these
rules decide what a container may open: a silently misread ``"allow": "false"`` would grant.
Just over 400 lines: the three syntaxes share their number, type and access readers, which a
split would have to re-export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec

from cgdev.core.model import ACC_ALL, U32_MAX, Access, DevType, Rule, RuleType, access_to_str, parse_u32
from cgdev.errors import InputError

LookupFn = Callable[[str], "tuple[str, int, int] | None"]

_RULE_TYPES: Final = ("a", "b", "c")
OCI_DEVICE_KEYS: Final = ("allow", "type", "major", "minor", "access")


class RuleList(msgspec.Struct):
    """Rules read from a file or document, and what the reader noticed that is legal but likely a
    mistake (an unknown key, no rules at all): the front end shows the warnings, the core only
    returns them."""

    rules: list[Rule]
    warnings: list[str] = msgspec.field(default_factory=list)


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
    try:
        return int(Access.parse(text, field))
    except InputError as err:
        raise InputError(f'{field} "{text}": {err.why}') from None


def parse_type(text: object, field: str) -> RuleType:
    if not isinstance(text, str) or text not in _RULE_TYPES:
        raise InputError(f"{field}: type {_show(text)} is not one of a, b, c")
    return RuleType(text)


def parse_number(text: str, field: str) -> int | None:
    """A v1/systemd major or minor: ``*`` or a decimal u32."""
    if text == "*":
        return None
    try:
        return parse_u32(text, field)
    except InputError:
        raise InputError(f'{field} "{text}": not * or a number 0..{U32_MAX}') from None


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
    return read_oci_devices(entries, field).rules


def unknown_key_warnings(entry: Mapping[Any, Any], known: Sequence[str], field: str) -> list[str]:
    """One warning per key nobody reads (``"tpye"``), naming the closest known key: a runtime
    ignores it, so the rule silently means something else (a missing type is ``a``)."""
    out = []
    for key in entry:
        if key in known:
            continue
        import difflib  # only for a misspelled key: it pulls in re's compiler

        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(known)})"
        out.append(f'{field}: unknown key "{key}" is ignored{hint}')
    return out


def read_oci_devices(entries: object, field: str = "devices") -> RuleList:
    """``linux.resources.devices`` entries, with a warning per unknown key."""
    if not isinstance(entries, list):
        raise InputError(f"{field}: expected a list of device entries, got {_show(entries)}")
    out = RuleList([])
    for i, entry in enumerate(entries):
        out.rules.append(parse_oci_device(entry, f"{field}[{i}]"))
        assert isinstance(entry, Mapping)  # parse_oci_device refused anything else
        out.warnings.extend(unknown_key_warnings(entry, OCI_DEVICE_KEYS, f"{field}[{i}]"))
    return out


def parse_oci_config(config: object) -> list[Rule]:
    """``linux.resources.devices`` of a config.json document (absent -> no rules)."""
    return read_oci_config(config).rules


def read_oci_config(config: object, source: str = "config") -> RuleList:
    """``linux.resources.devices`` of a config.json document; absent is no rules, with a warning
    (every device is then denied but for what the runtime adds by default)."""
    node: object = config
    path = "config"
    for key in ("linux", "resources", "devices"):
        if not isinstance(node, Mapping):
            raise InputError(f"{path}: expected an object, got {_show(node)}")
        node = node.get(key)
        path = key if path == "config" else f"{path}.{key}"
        if node is None:
            return RuleList([], [f"{source}: no {path} (no device rules: only the runtime's defaults allow)"])
    out = read_oci_devices(node, path)
    if not out.rules:
        out.warnings.append(f"{source}: {path} is empty (no device rules: only the runtime's defaults allow)")
    return out


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
    access = int(ACC_ALL)
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
            return [Rule(True, dev_type, major, minor, access)]
    for prefix, dev_type in (("char-", "c"), ("block-", "b")):
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if not name:
                raise InputError(f'{field} "{path}": missing the major, * or driver name')
            if name == "*" or name.isdecimal():
                return [Rule(True, dev_type, parse_number(name, f"{field}: major"), None, access)]
            if proc_devices is None:
                raise InputError(
                    f'{field} "{path}": resolving a driver name needs /proc/devices, which cannot be '
                    f"read here (give {prefix}MAJOR)"
                )
            majors = _proc_majors(proc_devices, dev_type, name)
            if not majors:
                raise InputError(f'{field} "{path}": no driver in /proc/devices matches "{name}"')
            return [Rule(True, dev_type, m, None, access) for m in majors]
    if path.startswith("/"):
        if lookup is None:
            raise InputError(
                f'{field} "{path}": resolving a device path needs the host\'s /dev '
                "(give /dev/char/MAJOR:MINOR)"
            )
        found = lookup(path)
        if found is None or found[0] not in ("b", "c"):
            raise InputError(f'{field} "{path}": no character or block device at this path')
        t, major, minor = found
        return [Rule(True, t, major, minor, access)]
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


def _read_json_text(text: str, source: str) -> RuleList:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}:{exc.lineno}: JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if isinstance(data, list):
        return read_oci_devices(data)
    if isinstance(data, dict) and "linux" in data:
        return read_oci_config(data, source)
    if isinstance(data, dict) and "devices" in data:
        return read_oci_devices(data["devices"])
    raise InputError(f"{source}: JSON: expected a list of device entries or a config.json, got {_show(data)}")


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
    """The rules of ``read_rule_text`` (its warnings dropped: for callers that wrote the text)."""
    return read_rule_text(text, "rules", lookup, proc_devices).rules


def read_rule_text(
    text: str, source: str, lookup: LookupFn | None = None, proc_devices: str | None = None
) -> RuleList:
    """Rules from text in any syntax: a JSON array / config.json, or one rule per line (v1 or
    systemd; blank lines and ``#`` comments skipped).  ``source`` names the text (a file name):
    errors read ``SOURCE:LINE: ...``, as compilers write them."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        out = _read_json_text(text, source)
        if not out.rules and not out.warnings:
            out.warnings.append(f"{source}: no rules (an empty list denies every device)")
        return out
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            try:
                rules.extend(parse_rule_line(content, "rule", lookup, proc_devices))
            except InputError as err:
                raise type(err)(f"{source}:{number}: {err}") from None
    warnings = [] if rules else [f"{source}: no rules (an empty list denies every device)"]
    return RuleList(rules, warnings)


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
    "RuleList",
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
    "read_oci_config",
    "read_oci_devices",
    "read_rule_text",
    "unknown_key_warnings",
]
