"""``crun`` (1.21) and ``crun-1.8`` (1.8.1): the program crun's ``create_dev_bpf`` emits for a
spec's device rules.

crun tests, first match wins over whole masks (a request matches a rule when it is a subset of
the rule's mask): its dead sentinel block (char 0:0, mask 0), its forced defaults in *reverse*
(``defaults.CRUN_DEFAULTS``), then the spec's rules in *reverse*, then a terminal deny.  A rule
with no test at all (``a``, no major/minor, ``rwm``) stops the chain: crun appends nothing after
it, and emits no terminal.

Where it differs from the others:

- defaults come first, so a spec deny of a default device (``deny c 1:3 w``) has no effect, and the
  defaults include console 5:1 (runc's do not);
- ``a`` drops only the type test: ``allow a 195:* rw`` is a narrow rule (runc: allow-all);
- no merging: ``allow c 1:3 r`` + ``allow c 1:3 w`` allows ``r`` and ``w`` but denies ``rw``;
- a deny narrower in mask than the request does not match it: after ``allow c 195:3 rw``,
  ``deny c 195:3 w`` denies ``w`` but still allows ``r`` **and ``rw``** (``ordered`` and runc deny
  ``rw``; v1 in allow-all mode denies it too, by partial match);
- an empty access string is mask 0: the rule never matches (runc refuses it, systemd reads rwm).

crun 1.8.1 (Debian 12) differs only in its defaults: no tun 10:200, and no sentinel block.
"""

from __future__ import annotations

from collections.abc import Sequence

from cgdev.core.model import Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics.defaults import CRUN_1_8_DEFAULTS, CRUN_DEFAULTS, CRUN_SENTINEL
from cgdev.core.semantics.firstmatch import first_match_policy, is_unconditional, reachable_by_runtime_compare

# release -> what crun puts before the spec's rules, in test order
_PREFIX: dict[str, tuple[Rule, ...]] = {
    "1.21": (CRUN_SENTINEL, *reversed(CRUN_DEFAULTS)),
    "1.8": tuple(reversed(CRUN_1_8_DEFAULTS)),
}


def crun_program_rules(spec_rules: Sequence[Rule], release: str = "1.21") -> list[Rule]:
    """The rules in the order crun's program tests them, cut after the first unconditional rule.

    The program ends in a terminal ``r0 = 0; exit`` exactly when ``crun_emits_terminal`` says so.
    """
    chain = [*_PREFIX[release], *reversed(spec_rules)]
    for i, rule in enumerate(chain):
        if is_unconditional(rule):
            return chain[: i + 1]
    return chain


def crun_emits_terminal(program_rules: Sequence[Rule]) -> bool:
    """Whether crun appends its default-deny terminal after these (test-ordered) rules."""
    return not program_rules or not is_unconditional(program_rules[-1])


def crun_policy(spec_rules: Sequence[Rule], release: str = "1.21") -> Policy:
    chain = [r for r in crun_program_rules(spec_rules, release) if reachable_by_runtime_compare(r)]
    return first_match_policy(chain, terminal=False)


def crun_1_8_policy(spec_rules: Sequence[Rule]) -> Policy:
    return crun_policy(spec_rules, "1.8")
