"""First match over whole masks: what one crun (or youki) style rule chain computes.

A rule matches a request when the type matches (``a``: any), major and minor match (``None``:
any) and the request's mask is a subset of the rule's mask; the first matching rule decides, and
no match falls to ``terminal``.  Kept separate from crun's defaults so the renderer can check
that its output means the same to a chain without them.
"""

from __future__ import annotations

from collections.abc import Iterable

from cgdev.core.model import MASKSET_ALL, REQUEST_MASKS, Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics._build import Fold, fold_policy, rank_classifier

_NO_MATCH = 1 << 62
Summary = tuple[int, int, int, int]


def _summarise(index: int, rule: Rule) -> Summary:
    code = 2 * index + int(rule.allow)
    m, r, w, rw = (code if q & rule.access == q else _NO_MATCH for q in REQUEST_MASKS)
    return (m, r, w, rw)


def _combine(a: Summary, b: Summary) -> Summary:
    return (min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _fold(terminal: bool) -> Fold[Summary]:
    def finalise(s: Summary) -> int:
        out = 0
        for q, code in zip(REQUEST_MASKS, s, strict=True):
            verdict = terminal if code == _NO_MATCH else bool(code & 1)
            if verdict:
                out |= 1 << q
        return out & MASKSET_ALL

    def verdict(code: int) -> bool:
        return terminal if code == _NO_MATCH else bool(code & 1)

    classify = rank_classifier(verdict)
    return Fold(_summarise, _combine, (_NO_MATCH,) * 4, finalise, classify)


def first_match_policy(rules: Iterable[Rule], terminal: bool = False) -> Policy:
    """The policy of a first-match chain over ``rules`` (in test order) ending in ``terminal``."""
    return fold_policy(rules, _fold(terminal))


def is_unconditional(rule: Rule) -> bool:
    """A rule with no test at all (``a``, no major, no minor, ``rwm``): nothing after it runs."""
    return rule.type == "a" and rule.major is None and rule.minor is None and rule.access == 7


def reachable_by_runtime_compare(rule: Rule) -> bool:
    """Whether runc's and crun's programs can ever match this rule's numbers.

    Both compare major and minor with a 64-bit ``JNE`` against a 32-bit immediate, which the CPU
    sign-extends: a constant >= 2^31 becomes 0xffffffff_8xxxxxxx and never equals the
    zero-extended u32 field.  Their semantics follow the program, not the intent.
    """
    return all(n is None or n < 1 << 31 for n in (rule.major, rule.minor))
