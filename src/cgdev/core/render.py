"""Policy -> rules: a minimal rule list, OCI JSON, v1 lines, systemd properties.

The renderers never grant more than the policy: what a syntax cannot say exactly (``r`` and ``w``
allowed but ``rw`` denied under ``ordered``; a large non-point range that differs from its
surroundings; ``*:N`` or deny exceptions for systemd) is rendered conservatively and named in a
warning.  Each renderer checks its own output by reading it back with the matching semantics, so
"no warning" really means "exact".

Shape of a rendering (per device type): a background ``*:*`` rule (the value of the largest
ranges), ``*:N`` exceptions common to all majors, ``M:*`` rules for majors whose minors mostly
differ from the background, then ``M:N`` exceptions; a rule for both types becomes ``a``.  In the
``ordered`` rendering a correction that removes bits is written as ``deny rwm`` followed by an
``allow`` of the full wanted set, which makes the list mean the same to crun's first-match reading
(without crun's defaults) as to ``ordered``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from cgdev.core.model import (
    ACC_ALL,
    ACC_M,
    ACC_R,
    ACC_W,
    DEV_TYPES,
    MASKSET_ALL,
    REQUEST_MASKS,
    U32_MAX,
    Rule,
    access_to_str,
    maskset_for_bits,
)
from cgdev.core.policy import MinorMap, Policy, StepFn
from cgdev.core.rules import device_allow_path, format_oci, format_v1
from cgdev.core.semantics.ordered import ordered_policy
from cgdev.core.semantics.systemd import SD_MAJOR_LIMIT, SD_MINOR_LIMIT, systemd_policy
from cgdev.core.semantics.v1 import v1_policy

# A constant range up to this many numbers is written out point by point; a longer one that
# differs from its background cannot be expressed and is rendered conservatively.
ENUMERATE_LIMIT = 64
_MAX_WARNINGS = 8


class Rendered(msgspec.Struct, frozen=True):
    """A rule list (``ordered`` semantics unless said otherwise) and what it could not say."""

    rules: tuple[Rule, ...]
    warnings: tuple[str, ...]


def bits_within(maskset: int) -> int:
    """The largest access bits whose requests all lie in ``maskset`` (``r`` wins over ``w`` when
    ``r`` and ``w`` are allowed separately but ``rw`` is not)."""
    bits = sum(int(b) for b in (ACC_M, ACC_R, ACC_W) if maskset >> b & 1)
    if bits & (ACC_R | ACC_W) == ACC_R | ACC_W and not maskset >> (ACC_R | ACC_W) & 1:
        bits &= ~ACC_W
    return bits


# -- the layout shared by every renderer ------------------------------------------------------------


class _Layout(msgspec.Struct, frozen=True):
    """One device type split into what is written point by point and what is background."""

    background: MinorMap  # minor map of the large major ranges (conservative AND if several)
    majors: dict[int, MinorMap]  # majors written explicitly, with their exact minor maps


def _is_small(lo: int, hi: int) -> bool:
    return hi - lo + 1 <= ENUMERATE_LIMIT


def _and_maps(a: MinorMap, b: MinorMap) -> MinorMap:
    return a.combine(b, lambda x, y: maskset_for_bits(bits_within(x) & bits_within(y)))


def _layout(policy: Policy, dev_type: str) -> _Layout:
    background: MinorMap | None = None
    majors: dict[int, MinorMap] = {}
    for lo, hi, minors in policy.major_map(dev_type).pieces():
        if _is_small(lo, hi):
            majors.update(dict.fromkeys(range(lo, hi + 1), minors))
        else:
            background = minors if background is None else _and_maps(background, minors)
    assert background is not None  # some piece of a u32 partition is always large
    return _Layout(background, majors)


def _split(minors: MinorMap, meet: Callable[[int, int], int]) -> tuple[int, dict[int, int]]:
    """A minor map as (background value of its large ranges, {point: value} of the small ones)."""
    large: int | None = None
    points: dict[int, int] = {}
    for lo, hi, value in minors.pieces():
        if _is_small(lo, hi):
            points.update(dict.fromkeys(range(lo, hi + 1), value))
        else:
            large = value if large is None else meet(large, value)
    assert large is not None
    return large, points


def _meet_bits(a: int, b: int) -> int:
    return maskset_for_bits(bits_within(a) & bits_within(b))


def _merge_types(per_type: dict[str, list[tuple[tuple[int, ...], Rule]]]) -> list[Rule]:
    """Order rules by (layer, major, minor, deny first) and fold identical b/c rules into ``a``."""
    keyed: dict[tuple[tuple[int, ...], bool, int | None, int | None, int], set[str]] = {}
    for t, items in per_type.items():
        for layer_key, rule in items:
            key = (layer_key, rule.allow, rule.major, rule.minor, rule.access)
            keyed.setdefault(key, set()).add(t)
    out: list[tuple[tuple[Any, ...], Rule]] = []
    for key, types in keyed.items():
        layer, allow, major, minor, access = key
        for t in ("a",) if types == {"b", "c"} else sorted(types):
            sort_key = (*layer, allow, t)
            out.append((sort_key, Rule(allow, t, major, minor, access)))
    out.sort(key=lambda item: item[0])
    return [rule for _, rule in out]


def _describe(t: str, mlo: int, mhi: int, nlo: int, nhi: int) -> str:
    def span(lo: int, hi: int) -> str:
        if lo == hi:
            return str(lo)
        return "*" if (lo, hi) == (0, U32_MAX) else f"{lo}-{hi}"

    return f"{t} {span(mlo, mhi)}:{span(nlo, nhi)}"


def _loss_warnings(policy: Policy, rendered: Policy, syntax: str) -> list[str]:
    """Name every region the rendering allows less than the policy (it never allows more)."""
    if not rendered.issubset(policy):
        raise AssertionError(f"{syntax} rendering grants more than the policy")  # a cgdev bug
    warnings: list[str] = []
    lost = list(policy.minus(rendered).regions())
    lost = [r for r in lost if r[5]]
    for t, mlo, mhi, nlo, nhi, maskset in lost[:_MAX_WARNINGS]:
        masks = ",".join(_mask_name(q) for q in REQUEST_MASKS if maskset >> q & 1)
        warnings.append(
            f"{_describe(t, mlo, mhi, nlo, nhi)}: {syntax} cannot express this exactly; "
            f"{masks} denied here though the policy allows it"
        )
    if len(lost) > _MAX_WARNINGS:
        warnings.append(f"... and {len(lost) - _MAX_WARNINGS} more regions rendered conservatively")
    return warnings


def _mask_name(q: int) -> str:
    return access_to_str(q)  # a request mask: m, r, w or rw


# -- ordered (OCI) ----------------------------------------------------------------------------------

# Per cell, the state of two readings of the list so far: ordered's allowed bits and the mask set a
# first-match chain (crun) would allow.  A correction either adds (allow B) or resets (deny rwm,
# allow B); both end in (B, maskset(B)) when chosen as below.
_State = tuple[int, int]


def _step(state: _State, emitted: tuple[bool, int] | None) -> _State:
    if emitted is None:
        return state
    reset, bits = emitted
    if reset:
        return bits, maskset_for_bits(bits)
    return state[0] | bits, state[1] | maskset_for_bits(bits)


def _correction(state: _State, bits: int) -> tuple[bool, int] | None:
    want = maskset_for_bits(bits)
    if state == (bits, want):
        return None
    adds_only = state[0] & ~bits == 0 and state[1] & ~want == 0
    return (not adds_only, bits)


def _emit(layer: tuple[int, ...], major: int | None, minor: int | None, fix: tuple[bool, int] | None) -> list:
    if fix is None:
        return []
    reset, bits = fix
    out: list[tuple[tuple[int, ...], Rule]] = []
    if reset:
        out.append((layer, Rule(False, "a", major, minor, ACC_ALL)))
    if bits:
        out.append((layer, Rule(True, "a", major, minor, bits)))
    return out


def _ordered_type(policy: Policy, t: str) -> list[tuple[tuple[int, ...], Rule]]:
    layout = _layout(policy, t)
    background, bg_points = _split(layout.background, _meet_bits)
    d = bits_within(background)
    out: list[tuple[tuple[int, ...], Rule]] = []
    start: _State = (0, 0)
    level0 = _correction(start, d)
    out += _emit((0,), None, None, level0)
    generic = _step(start, level0)
    level1 = {n: _correction(generic, bits_within(v)) for n, v in bg_points.items()}
    for n, fix in sorted(level1.items()):
        out += _emit((1,), None, n, fix)
    for major, minors in sorted(layout.majors.items()):
        if minors == layout.background:
            continue
        m_background, m_points = _split(minors, _meet_bits)
        level2 = _correction(generic, bits_within(m_background))
        out += _emit((2,), major, None, level2)
        for n in sorted(m_points.keys() | level1.keys()):
            state = _step(_step(generic, level1.get(n)), level2)
            out += _emit((3,), major, n, _correction(state, bits_within(minors.at(n))))
    return [(layer, Rule(r.allow, t, r.major, r.minor, r.access)) for layer, r in out]


def to_rules(policy: Policy) -> Rendered:
    """A minimal rule list meaning ``policy`` under ``ordered`` (and, without its defaults, crun)."""
    rules = _merge_types({t: _ordered_type(policy, t) for t in DEV_TYPES})
    return Rendered(tuple(rules), tuple(_loss_warnings(policy, ordered_policy(rules), "a rule list")))


def to_oci(policy: Policy) -> list[dict[str, Any]]:
    """``linux.resources.devices`` entries: a leading deny-all (what runtimes expect to see first),
    then ``to_rules``.  The warnings are those of ``to_rules``."""
    rendered = to_rules(policy)
    return [format_oci(Rule(False, "a", None, None, ACC_ALL)), *(format_oci(r) for r in rendered.rules)]


# -- monotone syntaxes: v1 exceptions and systemd allow lists --------------------------------------


class _Monotone(msgspec.Struct, frozen=True):
    """A syntax whose exceptions only ever add: ``effect(bits)`` is the mask set one exception adds
    to the cell's target set (allowed set, or denied set for v1 allow-all mode)."""

    effect: Callable[[int], int]
    best: Callable[[int], int]  # the largest bits whose effect lies within a target mask set
    point_ok: Callable[[int | None, int | None], bool] = lambda _major, _minor: True


def _partial(bits: int) -> int:
    return sum(1 << q for q in REQUEST_MASKS if q & bits)


def _best_partial(target: int) -> int:
    return sum(b for b in (ACC_M, ACC_R, ACC_W) if _partial(b) & ~target == 0)


_ALLOW_EXCEPTIONS = _Monotone(maskset_for_bits, bits_within)
_DENY_EXCEPTIONS = _Monotone(_partial, _best_partial)


def _monotone_type(minors_of: Iterable[tuple[int, int, MinorMap]], syntax: _Monotone) -> Iterator[Rule]:
    """Exceptions (type ``a`` placeholder) for one type's target map; conservative everywhere."""
    pieces = list(minors_of)
    everything = MASKSET_ALL
    for _lo, _hi, minors in pieces:
        for _nlo, _nhi, value in minors.pieces():
            everything &= value
    base_bits = syntax.best(everything)
    base = syntax.effect(base_bits)
    if base_bits and syntax.point_ok(None, None):
        yield Rule(True, "a", None, None, base_bits)
    else:
        base = 0
    for lo, hi, minors in pieces:
        if not _is_small(lo, hi):
            continue
        for major in range(lo, hi + 1):
            if not syntax.point_ok(major, None):
                continue
            common = MASKSET_ALL
            for _nlo, _nhi, value in minors.pieces():
                common &= value
            m_bits = syntax.best(common)
            m_effect = base
            if syntax.effect(m_bits) & ~base:
                yield Rule(True, "a", major, None, m_bits)
                m_effect |= syntax.effect(m_bits)
            for nlo, nhi, value in minors.pieces():
                if not _is_small(nlo, nhi):
                    continue
                n_bits = syntax.best(value)
                if syntax.effect(n_bits) & ~m_effect:
                    for minor in range(nlo, nhi + 1):
                        if syntax.point_ok(major, minor):
                            yield Rule(True, "a", major, minor, n_bits)


def _target_map(policy: Policy, t: str, invert: bool) -> list[tuple[int, int, MinorMap]]:
    major_map = policy.major_map(t)
    if invert:
        major_map = major_map.map(lambda minors: minors.map(lambda ms: ~ms & MASKSET_ALL))
    return list(major_map.pieces())


def _exceptions(policy: Policy, syntax: _Monotone, invert: bool, allow: bool) -> list[Rule]:
    out: list[Rule] = []
    for t in DEV_TYPES:
        for r in _monotone_type(_target_map(policy, t, invert), syntax):
            out.append(Rule(allow, t, r.major, r.minor, r.access))
    return out


def to_v1_lines(policy: Policy) -> Rendered:
    """v1 ``devices.allow``/``devices.deny`` writes (as ``allow``/``deny`` lines, in order) for a
    fresh cgroup: ``deny a`` then allow exceptions, or allow-all then deny exceptions, whichever
    is exact (or loses less)."""
    candidates: list[tuple[list[str], list[Rule]]] = []
    # Allow-all mode can only be exact when some type allows its generic devices entirely.
    generic_open = any(policy.maskset(t, U32_MAX, U32_MAX) == MASKSET_ALL for t in DEV_TYPES)
    for default_allow in (False, True) if generic_open else (False,):
        syntax = _DENY_EXCEPTIONS if default_allow else _ALLOW_EXCEPTIONS
        rules = [Rule(default_allow, "a", None, None, ACC_ALL)]
        rules += _exceptions(policy, syntax, invert=default_allow, allow=not default_allow)
        meaning = v1_policy(rules)
        # Deny exceptions that do not cover every denied request would grant more: only an exact
        # allow-all rendering is usable, while allow exceptions are conservative by construction.
        if default_allow and meaning != policy:
            continue
        candidates.append((_loss_warnings(policy, meaning, "v1"), rules))
        if not candidates[0][0]:
            break  # the allow-list rendering is exact already
    warnings, rules = min(candidates, key=lambda c: (len(c[0]), len(c[1])))
    return Rendered(tuple(rules), tuple(warnings))


def v1_text(rendered: Rendered) -> list[str]:
    return [format_v1(r) for r in rendered.rules]


def _systemd_point_ok(major: int | None, minor: int | None) -> bool:
    if major is None:
        return minor is None
    return major < SD_MAJOR_LIMIT and (minor is None or minor < SD_MINOR_LIMIT)


_SYSTEMD = _Monotone(maskset_for_bits, bits_within, _systemd_point_ok)


class SystemdRendering(msgspec.Struct, frozen=True):
    device_policy: str
    device_allow: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]


def to_systemd(policy: Policy) -> SystemdRendering:
    """DevicePolicy= and DeviceAllow= for ``policy``: allow-only, no ``*:N``, majors < 4096."""

    if policy == Policy.allow_all():
        return SystemdRendering("auto", (), ())
    entries: list[tuple[str, str]] = []
    for rule in _exceptions(policy, _SYSTEMD, invert=False, allow=True):
        path = device_allow_path(rule.type, rule.major, rule.minor)
        assert path is not None
        entries.append((path, access_to_str(rule.access)))
    rendered = systemd_policy("strict", entries, proc_devices="")
    return SystemdRendering("strict", tuple(entries), tuple(_loss_warnings(policy, rendered, "systemd")))


__all__ = [
    "ENUMERATE_LIMIT",
    "Rendered",
    "StepFn",
    "SystemdRendering",
    "bits_within",
    "to_oci",
    "to_rules",
    "to_systemd",
    "to_v1_lines",
    "v1_text",
]
