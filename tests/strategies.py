"""Shared hypothesis strategies for rule lists and the requests that probe them.

Majors and minors come from a small pool so that rules collide (same device, wildcard over point,
neighbours): random u32s would almost never exercise the interesting interactions.  Requests are
drawn from the rules' own constants ±1 plus random values, both types, masks m/r/w/rw.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from cgdev.core.model import REQUEST_MASKS, U32_MAX, Request, Rule

_POOL = (0, 1, 2, 3, 5, 136, 195, U32_MAX)

numbers = st.one_of(st.sampled_from(_POOL), st.integers(0, U32_MAX))
wild_numbers = st.one_of(st.none(), numbers)


def rules(semantics: str = "ordered") -> st.SearchStrategy[Rule]:
    """One rule fit for ``semantics``: runc refuses empty access; systemd takes allows only."""
    min_access = 1 if semantics == "runc" else 0
    allow = st.just(True) if semantics == "systemd" else st.booleans()
    return st.builds(
        Rule,
        allow=allow,
        type=st.sampled_from(("a", "b", "c")),
        major=wild_numbers,
        minor=wild_numbers,
        access=st.integers(min_access, 7),
    )


def rule_lists(semantics: str = "ordered", max_size: int = 12) -> st.SearchStrategy[list[Rule]]:
    return st.lists(rules(semantics), max_size=max_size)


def requests_for(rule_list: Sequence[Rule], extra: int = 8) -> st.SearchStrategy[list[Request]]:
    """Requests that sit on, next to, and away from the rules' constants."""
    majors = {0, U32_MAX}
    minors = {0, U32_MAX}
    for r in rule_list:
        for value, pool in ((r.major, majors), (r.minor, minors)):
            if value is not None:
                pool.update(v for v in (value - 1, value, value + 1) if 0 <= v <= U32_MAX)
    near_major = st.one_of(st.sampled_from(sorted(majors)), st.integers(0, U32_MAX))
    near_minor = st.one_of(st.sampled_from(sorted(minors)), st.integers(0, U32_MAX))
    request = st.builds(
        Request,
        type=st.sampled_from(("b", "c")),
        major=near_major,
        minor=near_minor,
        access=st.sampled_from(REQUEST_MASKS),
    )
    return st.lists(request, min_size=1, max_size=extra)
