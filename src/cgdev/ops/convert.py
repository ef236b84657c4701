"""Convert a device rule list between syntaxes: OCI JSON, v1 lines, systemd properties, rules.

Why through a policy: the syntaxes do not mean the same thing (DESIGN.md §4), so a textual
translation would silently change what is allowed.  The input is read under its semantics
(``--from``, or ``--semantics`` for OCI lists a given runtime reads), giving the exact policy;
the output is ``core.render``'s rendering of that policy, which never grants more and names what
the target syntax cannot say in a warning.  So "no warning" means the output means exactly the
input.  Pure: no I/O here (the CLI reads the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cgdev.errors import InputError

if TYPE_CHECKING:
    from cgdev.core.policy import Policy
    from cgdev.core.rules import RuleList

SOURCES: Final = ("oci", "v1", "systemd")
TARGETS: Final = ("oci", "v1", "systemd", "rules")
# How each source syntax is read unless --semantics says otherwise (OCI: a runtime's reading).
_DEFAULT_SEMANTICS: Final = {"oci": "ordered", "v1": "v1", "systemd": "systemd"}
_OCI_SEMANTICS: Final = ("ordered", "runc", "crun", "crun-1.8")


@dataclass(frozen=True, slots=True)
class Converted:
    source: str
    target: str
    semantics: str
    policy: Policy
    lines: tuple[str, ...]  # the output as text lines (OCI: one JSON document)
    document: Any  # the output as data (OCI: the entry list; systemd: the properties)
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "semantics": self.semantics,
            "output": self.document,
            "policy": self.policy.to_json(),
            "warnings": list(self.warnings),
        }


def semantics_of(source: str, semantics: str | None) -> str:
    """The reading of the input: v1 and systemd have their own; OCI lists default to ordered."""
    if source not in SOURCES:
        raise InputError(f"not one of {', '.join(SOURCES)}", field="from", value=source)
    if semantics is None:
        return _DEFAULT_SEMANTICS[source]
    allowed = _OCI_SEMANTICS if source == "oci" else (_DEFAULT_SEMANTICS[source],)
    if semantics not in allowed:
        raise InputError(
            f"{source} input is read as {' or '.join(allowed)}", field="semantics", value=semantics
        )
    return semantics


def render(policy: Policy, target: str) -> tuple[tuple[str, ...], Any, tuple[str, ...]]:
    """``policy`` in ``target`` syntax: text lines, data, and what the syntax could not say."""
    import json

    from cgdev.core.render import to_oci, to_rules, to_systemd, to_v1_lines
    from cgdev.core.rules import format_v1

    if target == "oci":
        entries = to_oci(policy)
        return (json.dumps(entries, indent=2),), entries, to_rules(policy).warnings
    if target == "systemd":
        sd = to_systemd(policy)
        lines = (f"DevicePolicy={sd.device_policy}", *(f"DeviceAllow={p} {a}" for p, a in sd.device_allow))
        data = {"DevicePolicy": sd.device_policy, "DeviceAllow": [list(e) for e in sd.device_allow]}
        return lines, data, sd.warnings
    if target == "v1":
        rendered = to_v1_lines(policy)
    elif target == "rules":
        rendered = to_rules(policy)
    else:
        raise InputError(f"not one of {', '.join(TARGETS)}", field="to", value=target)
    lines = tuple(format_v1(r) for r in rendered.rules)
    return lines, list(lines), rendered.warnings


def convert(read: RuleList, source: str, target: str, semantics: str | None = None) -> Converted:
    """``read`` (rules in ``source`` syntax) rendered in ``target`` syntax, with every warning:
    the reader's, the reading's (``ops.compile_rules.semantics_warnings``) and the renderer's."""
    from cgdev.core.semantics import policy_of
    from cgdev.ops.compile_rules import semantics_warnings

    reading = semantics_of(source, semantics)
    rule_list = list(read.rules)
    policy = policy_of(rule_list, reading)
    lines, document, lost = render(policy, target)
    warnings = (*read.warnings, *semantics_warnings(rule_list, reading, policy), *lost)
    return Converted(source, target, reading, policy, lines, document, warnings)


def read_systemd_lines(lines: list[str], source: str = "rules") -> tuple[str, tuple[tuple[str, str], ...]]:
    """``DevicePolicy=`` and ``DeviceAllow=`` lines (the prefix optional on an allow line, ``#``
    comments and blank lines skipped) as systemd keeps them: the policy (default ``strict``: a
    list of allowed devices means nothing else) and the entries, an empty ``DeviceAllow=`` resetting."""
    policy = "strict"
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text.startswith("DevicePolicy="):
            policy = text[len("DevicePolicy=") :].strip()
            if policy not in ("auto", "closed", "strict"):
                why = f"{source}:{number}: DevicePolicy must be auto, closed or strict"
                raise InputError(why, field="rules", value=text)
            continue
        if text.startswith("DeviceAllow="):
            text = text[len("DeviceAllow=") :].strip()
            if not text:
                entries.clear()
                continue
        words = text.split()
        if len(words) > 2:
            raise InputError(f"{source}:{number}: expected PATH [ACCESS]", field="rules", value=text)
        entries.append((words[0], words[1] if len(words) == 2 else ""))
    return policy, tuple(entries)


def convert_systemd(
    lines: list[str], target: str, proc_devices: str = "", source: str = "rules"
) -> Converted:
    """systemd properties (``read_systemd_lines``) in ``target`` syntax: read exactly as systemd
    builds its program from them (``/proc/devices`` resolves driver names such as ``char-pts``)."""
    from cgdev.core.semantics import systemd_policy

    device_policy, entries = read_systemd_lines(lines, source)
    policy = systemd_policy(device_policy, entries, proc_devices)
    out, document, lost = render(policy, target)
    return Converted("systemd", target, "systemd", policy, out, document, lost)
