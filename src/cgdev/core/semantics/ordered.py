"""``ordered``: cgdev's own reading of a rule list (DESIGN.md §4).

For each access bit of a request, the **last** rule that matches the device and contains that bit
decides it; no such rule denies.  A request is allowed when all its bits are.  There are no forced
defaults.

Where it differs from the runtimes:

- a later deny punches a hole in an earlier wildcard (runc refuses; v1 ignores it silently unless
  the metas are identical; crun honours it only for whole-mask requests it matches);
- ``allow r`` then ``allow w`` on one device allows ``rw`` (crun denies the O_RDWR open; runc, v1 and
  ordered merge); ``allow c 1:* r`` + ``allow c 1:3 w`` also allows ``rw`` on 1:3 here, while every
  runtime and v1 deny it (they never merge across metas);
- ``a`` is "both types" with its major/minor/access kept (like crun; runc and v1 treat any ``a``
  as a reset to allow-all/deny-all);
- ``deny c 1:3 w`` after ``allow c 1:3 rw`` leaves ``r``: ``rw`` is denied here, while crun's deny
  block (mask ``w``) never matches an ``rw`` request, which the allow then lets through.
"""

from __future__ import annotations

from collections.abc import Iterable

from cgdev.core.model import ACC_M, ACC_R, ACC_W, Rule, maskset_for_bits
from cgdev.core.policy import Policy
from cgdev.core.semantics._build import Fold, fold_policy, rank_classifier

_BITS = (ACC_M, ACC_R, ACC_W)
_NONE = (-1, -1, -1)
Summary = tuple[int, int, int]


def _summarise(index: int, rule: Rule) -> Summary:
    # 2*index + allow: "larger is later", and the low bit carries the verdict.
    code = 2 * index + int(rule.allow)
    m, r, w = (code if rule.access & bit else -1 for bit in _BITS)
    return (m, r, w)


def _combine(a: Summary, b: Summary) -> Summary:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]))


def _finalise(s: Summary) -> int:
    bits = 0
    for bit, code in zip(_BITS, s, strict=True):
        if code >= 0 and code & 1:
            bits |= bit
    return maskset_for_bits(bits)


def _allowed(code: int) -> bool:
    return code >= 0 and bool(code & 1)


ORDERED_FOLD: Fold[Summary] = Fold(
    _summarise,
    _combine,
    _NONE,
    _finalise,
    rank_classifier(_allowed),
)


def ordered_policy(rules: Iterable[Rule]) -> Policy:
    return fold_policy(rules, ORDERED_FOLD)
