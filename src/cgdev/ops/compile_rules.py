"""Compile a rule list into the device program cgdev (or runc, crun, systemd) would attach.

Pure unless ``verify`` is asked: the rules are read as ``semantics`` says, compiled (cgdev's
decision tree, or a runtime's own shape instruction for instruction), and what the chosen reading
does that the rules do not say is reported as warnings.  Optionally the kernel's verifier is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cgdev.errors import InputError

if TYPE_CHECKING:
    from cgdev.core.isa import Insn
    from cgdev.core.model import Rule
    from cgdev.core.policy import Policy
    from cgdev.core.rules import RuleList
    from cgdev.ops.layers import DeviceNode

SEMANTICS: Final = ("ordered", "runc", "crun", "crun-1.8", "systemd", "v1")
SHAPES: Final = ("cgdev", "runc", "crun", "crun-1.8", "systemd")


def semantics_for(shape: str, semantics: str | None) -> str:
    """How the rules are read: a runtime's shape implies its own reading."""
    if shape == "cgdev":
        return semantics or "ordered"
    if semantics not in (None, shape):
        raise InputError(
            f"shape {shape} always reads rules as {shape} does", field="semantics", value=semantics
        )
    return shape


def semantics_warnings(rule_list: list[Rule], semantics: str, policy: Policy) -> list[str]:
    """What the chosen reading does that the rules do not say: a rule with no access (decides
    nothing here, refused by runc and the kernel, ``rwm`` to systemd), systemd's lossy conversion,
    and a runtime that allows *more* than the rules and its documented forced defaults (runc turns
    any ``a`` rule into allow-all: a silent privilege widening, DESIGN.md §4)."""
    from cgdev.core.policy import Policy
    from cgdev.core.rules import missing_access_warnings
    from cgdev.core.semantics import policy_of, systemd_properties_of
    from cgdev.core.semantics.defaults import forced_defaults

    out = missing_access_warnings(rule_list)
    out += list(systemd_properties_of(rule_list).warnings) if semantics == "systemd" else []
    if semantics not in ("ordered", "v1"):
        as_written = policy_of(rule_list, "ordered")
        defaults = policy_of(list(forced_defaults(semantics)), "ordered")
        added = defaults.minus(as_written)
        if added != Policy.deny_all():  # faithful to the runtime, but more than the rules say
            examples = ", ".join(str(m.request) for m in Policy.deny_all().diff(added, limit=3))
            out.append(f"{semantics} adds its built-in default devices, which these rules do not allow: "
                       f"e.g. {examples}")  # fmt: skip
        said = as_written | defaults
        wider = policy.minus(said)
        if wider != Policy.deny_all():
            examples = ", ".join(str(m.request) for m in Policy.deny_all().diff(wider, limit=3))
            out.append(
                f"{semantics} allows more than these rules (read in order) and its forced defaults: "
                f"e.g. {examples}"
            )
    return out


@dataclass(frozen=True, slots=True)
class Compiled:
    shape: str
    semantics: str
    program: tuple[Insn, ...]
    raw: bytes
    policy: Policy
    warnings: tuple[str, ...]
    verified: bool

    @property
    def listing(self) -> str:
        from cgdev.core.disasm import disassemble

        return disassemble(self.program) if self.program else ""

    def _minimal_rules(self) -> dict[str, list[str]]:
        """The policy as cgdev's minimal rule list (``ordered``, v1 syntax) next to the raw step
        function: what a person reads; ``rules_warnings`` names what it cannot say exactly."""
        from cgdev.core.render import to_rules
        from cgdev.core.rules import format_v1

        rendered = to_rules(self.policy)
        return {"rules": [format_v1(r) for r in rendered.rules], "rules_warnings": list(rendered.warnings)}

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "semantics": self.semantics,
            "instructions": len(self.program),
            "program": self.raw.hex(),
            "disassembly": self.listing.splitlines(),
            "policy": self.policy.to_json(),
            **self._minimal_rules(),
            "warnings": list(self.warnings),
            "verified": self.verified,
        }


def host_lookups() -> tuple[Callable[[str], DeviceNode | None], str | None]:
    """What systemd syntax needs resolved, read on this host: a stat() of a device path
    (``/dev/null`` -> ``c 1:3``) and the text of /proc/devices (``char-pts`` -> major 136).

    The core reads rules without I/O and takes both as data; a host where /proc/devices cannot
    be read (a container without /proc, offline use) gives None, and the core then says in one
    line that a driver name cannot be resolved here.
    """
    from cgdev.ops.collect import node_of, read_or_empty

    return node_of, (read_or_empty("/proc/devices") or None)


def compile_rules(read: RuleList, shape: str, semantics: str | None = None, *,
                  verify: bool = False) -> Compiled:  # fmt: skip
    """The program ``shape`` attaches for the rules read; ``verify`` loads it into the kernel (root).
    The warnings are the reader's (unknown keys, no rules at all) and then the reading's."""
    from cgdev.core.isa import encode
    from cgdev.core.semantics import policy_of

    rule_list = list(read.rules)
    reading = semantics_for(shape, semantics)
    policy = policy_of(rule_list, reading)
    if shape == "cgdev":
        from cgdev.core.compile import compile_policy

        program = compile_policy(policy)
    else:
        from cgdev.core.shapes import shape_program

        program = shape_program(rule_list, shape)
    raw = encode(program)
    warnings = [*read.warnings, *semantics_warnings(rule_list, reading, policy)]
    if not program:
        warnings.append(f"{shape} attaches no program for these rules (every device is allowed)")
    if verify and program:
        from cgdev.adapters import bpf

        bpf.prog_load(raw, name=f"cgdev_{shape}").close()  # made legal by prog_load
    return Compiled(shape, reading, program, raw, policy, tuple(warnings), bool(verify and program))
