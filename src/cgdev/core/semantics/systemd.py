"""``systemd`` (252): DevicePolicy= + DeviceAllow= -> the ``sd_devices`` program's policy.

This reproduces ``cgroup_apply_devices`` (cgroup.c) and bpf-devices.c:

- ``auto`` with no DeviceAllow: no program at all (allow-all);
- ``auto`` with entries, or ``closed``: the static list first (/dev/null, zero, full, random,
  urandom, tty, ptmx and /run/systemd/inaccessible/{chr,blk} rwm, then ``char-pts`` rw through
  /proc/devices), then the entries; the static list always counts as "matched";
- ``strict``: the entries only;
- an entry is an allow block "request ⊆ mask, type, major[, minor]" (allow-only, shared PASS exit):
  ``/dev/char/M:m`` and ``/dev/block/M:m`` are parsed textually (major < 2^12, minor < 2^20, else
  dropped); other ``/dev/...`` paths are stat()ed (here: the caller's ``stat`` callback, ``None``
  result -> dropped); ``char-*``/``block-*`` is the class, ``char-N`` with a decimal N < 4096 a
  major, any other ``char-NAME`` an fnmatch over the names in /proc/devices (several majors, or
  none -> dropped); anything else is ignored; an empty access string means ``rwm``;
- when nothing at all matched (``strict`` with only dropped entries, or with none), the program
  denies everything.

For a *rule list* (``policy_of(rules, "systemd")``), each allow rule becomes a DeviceAllow entry
the way runc and crun convert them (``c *:*`` -> ``char-*``, ``c N:*`` -> ``char-N``, ``c N:M`` ->
``/dev/char/N:M``, ``a`` -> both types, ``*:M`` dropped with a warning), under
``DevicePolicy=strict``; a repeated path replaces the earlier entry (systemd keeps the last write),
so ``allow c 1:3 r`` then ``allow c 1:3 w`` leaves only ``w``.  A deny-all rule (``deny a *:*
rwm``) starts the list afresh (crun keeps only the rules after the last one); any other deny rule
is an error, systemd has no deny.  An allow-all in an allow-only list gives ``DevicePolicy=auto``
with no entries.  No runtime defaults are added.  (crun 1.21 also widens ``N:0`` to ``char-N``;
that quirk is crun's, not systemd's, and is not reproduced here.)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

import msgspec

from cgdev.core.model import ACC_ALL, ACC_R, ACC_W, DevType, Rule, access_to_str
from cgdev.core.policy import Policy
from cgdev.core.rules import device_allow_path, parse_access
from cgdev.core.semantics.firstmatch import is_unconditional
from cgdev.core.semantics.runc import exceptions_policy
from cgdev.errors import InputError

StatFn = Callable[[str], "tuple[str, int, int] | None"]

DEVICE_POLICIES = ("auto", "closed", "strict")
SD_MAJOR_LIMIT = 1 << 12  # DEVICE_MAJOR_VALID
SD_MINOR_LIMIT = 1 << 20  # DEVICE_MINOR_VALID

# The nodes of systemd's static list, with the numbers every Linux assigns them; used when the
# caller gives no ``stat`` (pure prediction).
STANDARD_NODES: dict[str, tuple[str, int, int]] = {
    "/dev/null": ("c", 1, 3),
    "/dev/zero": ("c", 1, 5),
    "/dev/full": ("c", 1, 7),
    "/dev/random": ("c", 1, 8),
    "/dev/urandom": ("c", 1, 9),
    "/dev/tty": ("c", 5, 0),
    "/dev/ptmx": ("c", 5, 2),
}
_STATIC_NODES = (*STANDARD_NODES, "/run/systemd/inaccessible/chr", "/run/systemd/inaccessible/blk")
_INACCESSIBLE: dict[str, tuple[DevType, int, int]] = {
    "/run/systemd/inaccessible/chr": (DevType.CHAR, 0, 0),
    "/run/systemd/inaccessible/blk": (DevType.BLOCK, 0, 0),
}


def standard_stat(path: str) -> tuple[str, int, int] | None:
    return STANDARD_NODES.get(path)


class SdEntry(msgspec.Struct, frozen=True):
    """One allow block of ``sd_devices``, in emission order; ``source`` is the entry it came from."""

    type: DevType
    major: int | None
    minor: int | None
    access: int
    source: str = ""

    def as_rule(self) -> Rule:
        return Rule(True, self.type, self.major, self.minor, self.access)


class SdProgram(msgspec.Struct, frozen=True):
    """What systemd attaches: nothing, a deny-everything program, or prologue + allow blocks."""

    attached: bool
    prologue: bool
    entries: tuple[SdEntry, ...]
    deny_everything: bool

    def policy(self) -> Policy:
        if not self.attached:
            return Policy.allow_all()
        if self.deny_everything:
            return Policy.deny_all()
        return exceptions_policy(False, [e.as_rule() for e in self.entries])


def proc_device_names(proc_devices: str, dev_type: str) -> list[tuple[int, str]]:
    """``(major, name)`` of one section of /proc/devices, as systemd reads it (major > 0)."""
    header = "Character devices:" if dev_type == "c" else "Block devices:"
    out: list[tuple[int, str]] = []
    good = False
    for line in proc_devices.splitlines():
        if line == header:
            good = True
            continue
        if not line.strip():
            good = False
            continue
        if not good:
            continue
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdecimal() and int(parts[0]) > 0:
            out.append((int(parts[0]), parts[1].strip()))
    return out


def _device_node(path: str, stat: StatFn) -> tuple[DevType, int, int] | None:
    """``device_path_parse_major_minor`` then ``stat()``: the node a path names, or None (dropped)."""
    if path in _INACCESSIBLE:
        return _INACCESSIBLE[path]
    for prefix, dev_type in (("/dev/char/", DevType.CHAR), ("/dev/block/", DevType.BLOCK)):
        if path.startswith(prefix):
            major, sep, minor = path[len(prefix) :].partition(":")
            # systemd's safe_atou reads ASCII digits only: '１' (full width) is no number to it
            if not (sep and _ascii_digits(major) and _ascii_digits(minor)):
                return None
            if int(major) >= SD_MAJOR_LIMIT or int(minor) >= SD_MINOR_LIMIT:
                return None
            return dev_type, int(major), int(minor)
    found = stat(path)
    if found is None or found[0] not in ("b", "c"):
        return None
    return DevType(found[0]), found[1], found[2]


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _major_entries(
    name: str, dev_type: DevType, access: int, proc_devices: str, source: str
) -> list[SdEntry]:
    if name == "*":
        return [SdEntry(dev_type, None, None, access, source)]
    if _ascii_digits(name) and int(name) < SD_MAJOR_LIMIT:
        return [SdEntry(dev_type, int(name), None, access, source)]
    return [
        SdEntry(dev_type, major, None, access, source)
        for major, driver in proc_device_names(proc_devices, dev_type)
        if fnmatch.fnmatchcase(driver, name)
    ]


def _resolve(path: str, access: int, proc_devices: str, stat: StatFn) -> list[SdEntry] | None:
    """The blocks one DeviceAllow entry emits; None when systemd ignores the string entirely."""
    if path.startswith("/dev/"):
        node = _device_node(path, stat)
        return [] if node is None else [SdEntry(node[0], node[1], node[2], access, path)]
    for prefix, dev_type in (("block-", DevType.BLOCK), ("char-", DevType.CHAR)):
        if path.startswith(prefix):
            return _major_entries(path[len(prefix) :], dev_type, access, proc_devices, path)
    return None


def parse_sd_access(text: str, field: str) -> int:
    """systemd's DeviceAllow access: letters r, w, m; empty means rwm."""
    return parse_access(text, field) or ACC_ALL


def systemd_program(
    device_policy: str,
    device_allow: Sequence[tuple[str, str]],
    proc_devices: str,
    stat: StatFn | None = None,
) -> SdProgram:
    """What systemd 252 attaches for these unit properties (``device_allow`` in the unit's list
    order, as ``systemctl show`` prints it — the order the blocks are emitted in)."""
    if device_policy not in DEVICE_POLICIES:
        raise InputError(f'DevicePolicy "{device_policy}": not one of {", ".join(DEVICE_POLICIES)}')
    stat_fn = stat or standard_stat
    if device_policy == "auto" and not device_allow:
        return SdProgram(attached=False, prologue=False, entries=(), deny_everything=False)
    static = device_policy == "closed" or (device_policy == "auto" and bool(device_allow))
    entries: list[SdEntry] = []
    if static:
        for path in _STATIC_NODES:
            node = _device_node(path, stat_fn)
            if node is not None:
                entries.append(SdEntry(node[0], node[1], node[2], ACC_ALL, path))
        entries.extend(_major_entries("pts", DevType.CHAR, ACC_R | ACC_W, proc_devices, "char-pts"))
    matched = static
    for i, (path, access_text) in enumerate(device_allow):
        access = parse_sd_access(access_text, f"DeviceAllow[{i}] ({path}) access")
        blocks = _resolve(path, access, proc_devices, stat_fn)
        if blocks:
            entries.extend(blocks)
            matched = True
    prologue = device_policy == "closed" or bool(device_allow)
    return SdProgram(True, prologue, tuple(entries), deny_everything=not matched)


def systemd_entries(
    device_policy: str,
    device_allow: Sequence[tuple[str, str]],
    proc_devices: str,
    stat: StatFn | None = None,
) -> list[SdEntry]:
    """The allow blocks of ``sd_devices`` in emission order (static list first for closed/auto)."""
    return list(systemd_program(device_policy, device_allow, proc_devices, stat).entries)


def systemd_policy(
    device_policy: str,
    device_allow: Sequence[tuple[str, str]],
    proc_devices: str,
    stat: StatFn | None = None,
) -> Policy:
    return systemd_program(device_policy, device_allow, proc_devices, stat).policy()


class SystemdProperties(msgspec.Struct, frozen=True):
    """The unit properties a rule list becomes, and what could not be carried over."""

    device_policy: str
    device_allow: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]


def systemd_properties_of(rules: Iterable[Rule]) -> SystemdProperties:
    """DevicePolicy/DeviceAllow for a rule list, the way the runtimes hand them to systemd."""
    entries: dict[str, str] = {}
    warnings: list[str] = []
    saw_allow_all = False
    for i, rule in enumerate(rules):
        where = f"rule {i + 1} ({rule})"
        if not rule.allow:
            if not is_unconditional(rule):
                raise InputError(f"{where}: systemd cannot express deny rules")
            entries, warnings, saw_allow_all = {}, [], False
            continue
        if is_unconditional(rule):
            saw_allow_all = True
        for dev_type in ("b", "c") if rule.type == "a" else (rule.type,):
            path = device_allow_path(dev_type, rule.major, rule.minor)
            if path is None:
                warnings.append(f"{where}: systemd cannot express *:{rule.minor}; dropped")
                continue
            if (rule.major or 0) >= SD_MAJOR_LIMIT or (rule.minor or 0) >= SD_MINOR_LIMIT:
                warnings.append(f"{where}: systemd ignores {path} (major >= 4096 or minor >= 2^20)")
            entries.pop(path, None)
            entries[path] = access_to_str(rule.access or ACC_ALL)
    if saw_allow_all:
        return SystemdProperties("auto", (), tuple(warnings))
    return SystemdProperties("strict", tuple(entries.items()), tuple(warnings))


def systemd_rules_policy(rules: Iterable[Rule]) -> Policy:
    props = systemd_properties_of(rules)
    return systemd_policy(props.device_policy, props.device_allow, proc_devices="")


# -- when systemd re-applies a unit's program ------------------------------------------------------

# systemd releases whose ``daemon-reload`` does not rebuild any unit's cgroup settings, its device
# program included: a deserialized unit's cgroup runtime starts with every controller marked
# invalidated, so ``unit_invalidate_cgroup()`` returns before queueing the unit for realization.  A
# property change (``set-property``) or a restart of the unit still re-applies everything.  Measured
# in the lab on Debian 13's 257.13 (252 re-applies on every reload); fixed upstream in 258 (systemd
# pull request #38194), and measured fixed on Debian unstable's 262.1 (`cgdev lab up --stack sid`:
# a reload re-attaches sd_devices on a runc scope, docs/stacks.md).  Releases between 252 and 257
# are not measured and keep the 252 model.
RELOAD_KEEPS_PROGRAMS: frozenset[int] = frozenset({257})


def systemd_major(version: str | None) -> int | None:
    """``257.13-1~deb13u1`` / ``252.39-1~deb12u1`` / ``257`` -> 257 / 252 / 257; None if unknown."""
    digits = ""
    for char in (version or "").strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def reload_reapplies_devices(version: str | None) -> bool:
    """Whether ``systemctl daemon-reload`` rebuilds and re-attaches ``sd_devices`` (True if unknown)."""
    return systemd_major(version) not in RELOAD_KEEPS_PROGRAMS
