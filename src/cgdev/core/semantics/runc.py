"""``runc`` (1.1.5): the spec's rules plus runc's forced defaults, through runc's v1 emulator.

runc appends its ``AllowedDevices`` (``defaults.RUNC_DEFAULTS``, no console 5:1) after the spec's
rules and feeds everything to its cgroup-v1 emulator (``devices_emulator.go``):

- a rule of type ``a`` resets the state to allow-all (allow) or deny-all (deny), whatever its
  major, minor and access: ``allow a 195:* rw`` therefore allows **every** device;
- a rule whose action differs from the default merges its bits into the exception with the very
  same (type, major, minor): ``allow c 1:3 r`` + ``allow c 1:3 w`` allows ``rw``;
- a rule whose action equals the default removes its bits from that exact exception, after
  refusing ("cannot punch hole in existing wildcard rule") when a wildcard exception of the same
  type (``*:minor``, ``major:*`` or ``*:*``) shares bits with it;
- an empty access string is refused.

The program then tests the surviving exceptions (sorted by major, minor, type; wildcards first,
``b`` before ``c``), each "type, request ⊆ mask, major, minor", all with the action opposite to
the default, and ends in ``default_allow``.  Because the defaults come last, a spec deny of a
default device has no effect; a spec deny after an allow-all is refused when a default re-allows
a device under it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

from cgdev.core.model import MASKSET_ALL, Rule, access_to_str, maskset_for_bits
from cgdev.core.policy import Policy
from cgdev.core.semantics._build import Fold, fold_policy
from cgdev.core.semantics.defaults import RUNC_DEFAULTS
from cgdev.core.semantics.firstmatch import reachable_by_runtime_compare
from cgdev.errors import InputError

Meta = tuple[str, int | None, int | None]


class RuncEmulator(msgspec.Struct):
    """runc's emulator state: the default action and the exceptions by exact meta."""

    default_allow: bool = False
    exceptions: dict[Meta, int] = msgspec.field(default_factory=dict)

    def apply(self, rule: Rule, where: str) -> None:
        if rule.type == "a":
            self.default_allow = rule.allow
            self.exceptions = {}
            return
        meta: Meta = (rule.type, rule.major, rule.minor)
        if rule.allow != self.default_allow:
            self.exceptions[meta] = self.exceptions.get(meta, 0) | rule.access
            return
        for partial in (
            (rule.type, None, rule.minor),
            (rule.type, rule.major, None),
            (rule.type, None, None),
        ):
            if partial != meta and self.exceptions.get(partial, 0) & rule.access:
                t, major, minor = partial
                hole = f"{t} {_num(major)}:{_num(minor)} {access_to_str(self.exceptions[partial])}"
                raise InputError(
                    f"{where} ({rule}): runc cannot punch a hole in existing wildcard rule {hole}"
                )
        left = self.exceptions.get(meta, 0) & ~rule.access
        if left:
            self.exceptions[meta] = left
        else:
            self.exceptions.pop(meta, None)

    def rules(self) -> list[Rule]:
        """``Rules()``: the exceptions in runc's sorted order, each with the non-default action."""

        def key(item: tuple[Meta, int]) -> tuple[int, int, str]:
            (t, major, minor), _ = item
            return (-1 if major is None else major, -1 if minor is None else minor, t)

        return [
            Rule(not self.default_allow, t, major, minor, access)
            for (t, major, minor), access in sorted(self.exceptions.items(), key=key)
        ]


def _num(n: int | None) -> str:
    return "*" if n is None else str(n)


def runc_program_rules(
    spec_rules: Sequence[Rule], spec_device_paths: Collection[str] = ()
) -> tuple[bool, list[Rule]]:
    """``(default_allow, rules in emission order)`` of runc's program for these spec rules.

    ``spec_device_paths`` are the paths of the spec's ``linux.devices``: runc drops a default
    device with the same path ("the spec one takes priority").  Raises ``InputError`` where runc
    refuses the configuration.
    """
    emulator = RuncEmulator()
    for i, rule in enumerate(spec_rules):
        if rule.access == 0:
            raise InputError(f"rule {i + 1} ({rule}): runc refuses an empty access string")
        emulator.apply(rule, f"rule {i + 1}")
    for path, rule in RUNC_DEFAULTS:
        if path is None or path not in spec_device_paths:
            emulator.apply(rule, f"runc default device {path or ''}".rstrip())
    return emulator.default_allow, emulator.rules()


def _or_fold(invert: bool) -> Fold[int]:
    def finalise(s: int) -> int:
        return ~s & MASKSET_ALL if invert else s

    return Fold(lambda _i, r: maskset_for_bits(r.access), int.__or__, 0, finalise)


def exceptions_policy(default_allow: bool, rules: Sequence[Rule]) -> Policy:
    """A chain whose rules all carry the non-default action: order does not matter, so this is
    "does any rule cover the request (subset test)" — runc's programs and systemd's allow lists."""
    return fold_policy(rules, _or_fold(invert=default_allow))


def runc_policy(spec_rules: Sequence[Rule], spec_device_paths: Collection[str] = ()) -> Policy:
    default_allow, rules = runc_program_rules(spec_rules, spec_device_paths)
    return exceptions_policy(default_allow, [r for r in rules if reachable_by_runtime_compare(r)])
