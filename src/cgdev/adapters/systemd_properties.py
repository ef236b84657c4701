"""systemd unit properties: their D-Bus types, checked before they are sent, and read back.

jeepney serialises a variant from an explicit signature and systemd rejects a wrong one only after
a round trip (or with a bare "Invalid argument"), so every property cgdev sends is typed and checked
here first, naming the property and the value.  Pure checking and typing: no bus connection (that
is ``systemd_client``), so tests and ops can use it without systemd.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec
from jeepney import DBusAddress, new_method_call
from jeepney.low_level import parse_signature

from cgdev.errors import InputError

# Unit types that own a cgroup, with the interface that carries their cgroup properties.
CGROUP_UNIT_INTERFACES: Final[dict[str, str]] = {
    ".scope": "org.freedesktop.systemd1.Scope",
    ".service": "org.freedesktop.systemd1.Service",
    ".slice": "org.freedesktop.systemd1.Slice",
    ".socket": "org.freedesktop.systemd1.Socket",
    ".mount": "org.freedesktop.systemd1.Mount",
    ".swap": "org.freedesktop.systemd1.Swap",
}

# jeepney serialises a variant from an explicit signature; systemd rejects a wrong one (``PIDs`` as
# ``ai`` instead of ``au`` is "Invalid argument"), so the signatures are written out here.
PROPERTY_SIGNATURES: Final[dict[str, str]] = {
    "PIDs": "au",
    "Delegate": "b",
    "DevicePolicy": "s",
    "DeviceAllow": "a(ss)",
    "BPFProgram": "a(ss)",
    "Slice": "s",
    "CPUWeight": "t",
    "Description": "s",
    "CollectMode": "s",
    "Asserts": "a(sbbs)",
    "Conditions": "a(sbbs)",
}
Variant = tuple[str, Any]
# Any address will do: only the body's serialisation is checked, nothing is sent.
_SERIALISE_ONLY: Final = DBusAddress("/", "org.freedesktop.systemd1", "org.freedesktop.systemd1.Manager")


class UnitDevices(msgspec.Struct, frozen=True):
    """What systemd will enforce (and re-enforce on reload) on one unit's cgroup."""

    unit: str
    control_group: str
    delegate: bool
    device_policy: str
    device_allow: list[tuple[str, str]]
    bpf_program: list[tuple[str, str]]
    need_daemon_reload: bool
    fragment_path: str = ""  # what a daemon-reload reads (adapters.unit_files)
    drop_in_paths: tuple[str, ...] = ()


def check_field(condition: bool, field: str, value: object, why: str) -> None:
    """``field: value why`` as an InputError unless ``condition`` holds."""
    if not condition:
        raise InputError(f"{field}: {value!r} {why}")


def checked_pids(value: object) -> list[int]:
    items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    pids: list[int] = []
    for pid in items:
        if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**32):
            raise InputError(f"PIDs: {pid!r} is not a process id")
        pids.append(pid)
    return pids


def _string_pairs(field: str, value: object) -> list[tuple[str, str]]:
    if not isinstance(value, Iterable) or isinstance(value, str):
        raise InputError(f"{field}: {value!r} is not a list of pairs")
    pairs: list[tuple[str, str]] = []
    for item in value:
        pair = tuple(item) if isinstance(item, list | tuple) else item
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise InputError(f"{field}: {pair!r} is not a pair of strings")
        pairs.append((pair[0], pair[1]))
    return pairs


def _device_allow(value: object) -> list[tuple[str, str]]:
    """Check what systemd would reject only after a round trip, naming the entry."""
    pairs = _string_pairs("DeviceAllow", value)
    for path, access in pairs:
        check_field(
            path.startswith(("/dev/", "char-", "block-")) and not any(c.isspace() for c in path),
            "DeviceAllow",
            path,
            "is not a device node, char-GROUP or block-GROUP",
        )
        check_field(set(access) <= set("rwm"), "DeviceAllow", f"{path} {access}", "has access outside rwm")
    return pairs


def _checked_variant(name: str, variant: Variant) -> Variant:
    """Serialise a caller-typed variant once, so a value that does not fit its signature is an
    InputError here rather than a jeepney traceback in the middle of a call."""
    try:
        rest = list(variant[0])
        parse_signature(rest)  # consumes one complete type; a variant holds exactly one
        if rest:
            raise ValueError(f"trailing {''.join(rest)!r}")
        new_method_call(_SERIALISE_ONLY, "Check", "a(sv)", ([(name, variant)],)).serialise(serial=1)
    except Exception as e:
        raise InputError(f"{name}: {variant[1]!r} does not fit D-Bus signature {variant[0]!r}") from e
    return variant


def typed_property(name: str, value: object) -> tuple[str, Variant]:
    """One ``(name, (signature, value))`` entry of an ``a(sv)`` array, checked before it is sent.

    An unknown property may be given as an explicit ``(signature, value)`` pair.
    """
    if name == "PIDs":
        return name, ("au", checked_pids(value))
    if name == "Delegate":
        check_field(isinstance(value, bool), name, value, "is not a boolean")
    elif name == "DevicePolicy":
        from cgdev.core.semantics.systemd import DEVICE_POLICIES  # the model's list; imported when used

        check_field(value in DEVICE_POLICIES, name, value, f"is not one of {', '.join(DEVICE_POLICIES)}")
    elif name == "DeviceAllow":
        return name, ("a(ss)", _device_allow(value))
    elif name == "BPFProgram":
        return name, ("a(ss)", _string_pairs(name, value))
    elif name == "CPUWeight":
        check_field(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0, name, value, "is not >= 0"
        )
    elif name in PROPERTY_SIGNATURES:
        if PROPERTY_SIGNATURES[name] == "s":
            check_field(isinstance(value, str), name, value, "is not a string")
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return name, _checked_variant(name, value)
    else:
        raise InputError(f"property: {name!r} is unknown to cgdev; give it as (signature, value)")
    return name, (PROPERTY_SIGNATURES[name], value)


def typed_properties(props: Mapping[str, object]) -> list[tuple[str, Variant]]:
    return [typed_property(name, value) for name, value in props.items()]


def cgroup_interface(unit: str) -> str:
    """The interface holding ``unit``'s cgroup properties (ControlGroup, DeviceAllow, ...)."""
    for suffix, interface in CGROUP_UNIT_INTERFACES.items():
        if unit.endswith(suffix):
            return interface
    raise InputError(f"unit: {unit!r} has no cgroup (not a {', '.join(CGROUP_UNIT_INTERFACES)} unit)")


def _unwrap(props: Mapping[str, Variant], name: str, default: Any) -> Any:
    variant = props.get(name)
    return default if variant is None else variant[1]


def unit_devices_from_properties(unit: str, props: Mapping[str, Variant]) -> UnitDevices:
    return UnitDevices(
        unit=unit,
        control_group=_unwrap(props, "ControlGroup", ""),
        delegate=bool(_unwrap(props, "Delegate", False)),
        device_policy=_unwrap(props, "DevicePolicy", "auto"),
        device_allow=[tuple(p) for p in _unwrap(props, "DeviceAllow", [])],
        bpf_program=[tuple(p) for p in _unwrap(props, "BPFProgram", [])],
        need_daemon_reload=bool(_unwrap(props, "NeedDaemonReload", False)),
        fragment_path=str(_unwrap(props, "FragmentPath", "")),
        drop_in_paths=tuple(str(p) for p in _unwrap(props, "DropInPaths", [])),
    )
