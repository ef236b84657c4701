"""``v1``: the kernel's own ``devices.allow`` / ``devices.deny`` writes (security/device_cgroup.c).

The rules are writes, in order, to a fresh cgroup whose parent allows everything (state
"allow-all, no exceptions", like a child of the root):

- ``a`` (any major/minor/access): allow -> allow-all and clear the exceptions, deny -> deny-all
  and clear;
- in deny-all mode an allow adds its bits to the exception with the same (type, major, minor)
  (merging), a deny removes bits from that exact exception only (a deny of ``c 1:3`` under an
  exception ``c 1:*`` is a silent no-op); allow-all mode is the mirror image;
- a request is allowed in deny-all mode iff one exception covers it (type, major/minor or
  wildcard, request ⊆ access); in allow-all mode iff no exception even partially matches it
  (``request & access != 0``): ``deny c 1:3 w`` in allow-all mode also denies the ``rw`` open
  but not ``r`` — unlike every eBPF generator, where a ``w`` deny block never matches ``rw``.

Where it differs from runc's emulator of it: no "cannot punch hole" refusal (v1 ignores the
write), the partial-match deny just above, and no forced defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

from cgdev.core.model import MASKSET_ALL, REQUEST_MASKS, Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics._build import Fold, fold_policy
from cgdev.core.semantics.runc import exceptions_policy

Meta = tuple[str, int | None, int | None]


def v1_state(rules: Sequence[Rule]) -> tuple[bool, list[Rule]]:
    """``(default_allow, exceptions)`` after writing ``rules`` to a fresh child cgroup."""
    default_allow = True
    exceptions: dict[Meta, int] = {}
    for rule in rules:
        if rule.type == "a":
            default_allow, exceptions = rule.allow, {}
            continue
        meta: Meta = (rule.type, rule.major, rule.minor)
        if rule.allow != default_allow:
            exceptions[meta] = exceptions.get(meta, 0) | rule.access
        elif meta in exceptions:
            left = exceptions[meta] & ~rule.access
            if left:
                exceptions[meta] = left
            else:
                del exceptions[meta]
    return default_allow, [
        Rule(not default_allow, t, major, minor, access) for (t, major, minor), access in exceptions.items()
    ]


def _partial(access: int) -> int:
    """The request masks an exception with ``access`` matches partially (shares a bit with)."""
    return sum(1 << q for q in REQUEST_MASKS if q & access)


_PARTIAL_DENY: Fold[int] = Fold(lambda _i, r: _partial(r.access), int.__or__, 0, lambda s: ~s & MASKSET_ALL)


def v1_policy(rules: Sequence[Rule]) -> Policy:
    default_allow, exceptions = v1_state(rules)
    if default_allow:
        return fold_policy(exceptions, _PARTIAL_DENY)
    return exceptions_policy(False, exceptions)
