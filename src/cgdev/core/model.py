"""Device model: what a device request and a device rule are, in the kernel's own encoding.

The numbers are the kernel's (``struct bpf_cgroup_dev_ctx``): ``access_type = access << 16 | type``
with block = 1, char = 2 and mknod = 1, read = 2, write = 4.  Keeping them identical means the
interpreter, the lifter and the compiler never translate, and a probe result can be compared with a
program's verdict bit for bit.

Only four access masks ever reach a device program: ``m`` (mknod), ``r``, ``w`` and ``rw`` (an open
with O_RDWR asks both bits at once); an open for neither is not checked and rdev 0 is never
checked.  Policies are therefore defined on exactly those four masks (``REQUEST_MASKS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntFlag, StrEnum
from typing import Final

import msgspec

from cgdev.errors import InputError


class DevType(StrEnum):
    """A device's type as every runtime spells it; ``kernel`` is ``bpf_cgroup_dev_ctx``'s number."""

    BLOCK = "b"
    CHAR = "c"

    @property
    def kernel(self) -> int:
        return KERNEL_TYPE[self]


class RuleType(StrEnum):
    """A rule's type: a device type, or ``a`` for both."""

    ALL = "a"
    BLOCK = "b"
    CHAR = "c"


class Access(IntFlag):
    """Access bits exactly as the kernel passes them (``access_type >> 16``)."""

    M = 1
    R = 2
    W = 4

    @property
    def letters(self) -> str:
        """``rwm`` order, as runtimes print it; ``""`` for no access."""
        return access_to_str(self)

    @staticmethod
    def parse(text: object, field: str = "access") -> Access:
        """Letters r, w, m in any order (``"rwm"``, ``"mr"``); empty is no access (the caller
        decides what empty means for its syntax)."""
        if not isinstance(text, str):
            raise InputError("expected a string of r, w, m", field=field, value=text)
        mask = 0
        for ch in text:
            bit = _LETTERS.get(ch)
            if bit is None:
                raise InputError(f'letter "{ch}" is not one of r, w, m', field=field, value=text)
            mask |= bit
        return Access(mask)


_LETTERS: Final = {"r": 2, "w": 4, "m": 1}

BLOCK: Final = 1  # kernel type numbers (bpf_cgroup_dev_ctx)
CHAR: Final = 2
KERNEL_TYPE: Final[dict[str, int]] = {DevType.BLOCK: BLOCK, DevType.CHAR: CHAR}
TYPE_OF_KERNEL: Final[dict[int, DevType]] = {BLOCK: DevType.BLOCK, CHAR: DevType.CHAR}
DEV_TYPES: Final[tuple[DevType, DevType]] = (DevType.BLOCK, DevType.CHAR)

ACC_M: Final = Access.M
ACC_R: Final = Access.R
ACC_W: Final = Access.W
ACC_ALL: Final = Access.M | Access.R | Access.W
REQUEST_MASKS: Final[tuple[int, ...]] = (1, 2, 4, 6)  # m, r, w, rw as plain ints (hot paths index by them)
# A set of request masks is an 8-bit bitmap indexed by the mask value: bit (1 << mask).
MASKSET_ALL: Final = sum(1 << m for m in REQUEST_MASKS)  # 0b0101_0110
MASKSET_NONE: Final = 0

# = isa.U32, spelled out: the device model needs no instruction set (the wrapper's claim path
# loads this module and not the ISA)
U32_MAX: Final = 0xFFFF_FFFF
# mknod(2) can only name devices that fit a dev_t: 12-bit major, 20-bit minor.
MKNOD_MAJOR_MAX: Final = 0xFFF
MKNOD_MINOR_MAX: Final = 0xFFFFF


def access_to_str(mask: int) -> str:
    """``7`` -> ``"rwm"``; the letter order runtimes print."""
    return ("r" if mask & 2 else "") + ("w" if mask & 4 else "") + ("m" if mask & 1 else "")


def maskset_for_bits(bits: int) -> int:
    """The request masks a rule granting ``bits`` lets through (every request mask ⊆ bits).

    A table of the 8 answers: only the low 3 bits can hold a request mask, and printing a
    100,000-rule lift asks a million times."""
    return _MASKSET_FOR_BITS[bits & 0b111]


_MASKSET_FOR_BITS: Final = tuple(sum(1 << m for m in REQUEST_MASKS if m & bits == m) for bits in range(8))


def parse_u32(text: str, field: str, value: object = None) -> int:
    """A major or minor: ASCII decimal digits only (``str.isdecimal`` also takes ``'１'``, which no
    runtime reads as 1), within 32 bits."""
    if not text or not text.isascii() or not text.isdigit():
        raise InputError(f"{text!r} is not a number 0..{U32_MAX}", field=field, value=value)
    number = int(text)
    if number > U32_MAX:
        raise InputError(f"{number} does not fit 32 bits", field=field, value=value)
    return number


_TYPED = re.compile(r"^([A-Za-z])\s+(\S+?)\s*:\s*(\S+)$")
_BARE = re.compile(r"^(\S+?)\s*:\s*(\S+)$")
_SYSTEMD_PATHS: Final = (("/dev/char/", DevType.CHAR), ("/dev/block/", DevType.BLOCK))


class Device(msgspec.Struct, frozen=True):
    """A device by number, as the kernel sees it (no path: paths are the host's business)."""

    type: DevType
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.type} {self.major}:{self.minor}"

    @staticmethod
    def parse_numeric(text: str, field: str = "device") -> Device | None:
        """The one reader of device spellings that need no host: ``c 195:255``, ``b 8:0``,
        ``195:255`` (a char device, as systemd's ``/dev/char``), ``/dev/char/195:255`` and
        ``/dev/block/8:0``.  Any other path is None (the caller looks it up on the host);
        anything else, and numbers no dev_t can hold (major 0..4095, minor 0..1048575: no node,
        rule or program could name them, so every answer about them would be wrong), is an
        ``InputError`` naming ``field`` and the text."""
        device = Device._parse_spelling(text, field)
        if device is not None:
            if device.major > MKNOD_MAJOR_MAX:
                raise InputError(f"major {device.major} out of range 0..{MKNOD_MAJOR_MAX}", field=field,
                                 value=text)  # fmt: skip
            if device.minor > MKNOD_MINOR_MAX:
                raise InputError(f"minor {device.minor} out of range 0..{MKNOD_MINOR_MAX}", field=field,
                                 value=text)  # fmt: skip
        return device

    @staticmethod
    def _parse_spelling(text: str, field: str) -> Device | None:
        stripped = text.strip()
        for prefix, dev_type in _SYSTEMD_PATHS:
            if stripped.startswith(prefix):
                major_text, sep, minor_text = stripped[len(prefix) :].partition(":")
                if not sep:
                    raise InputError(f"expected {prefix}MAJOR:MINOR", field=field, value=text)
                return Device(
                    dev_type, parse_u32(major_text, field, text), parse_u32(minor_text, field, text)
                )
        if stripped.startswith("/"):
            return None
        typed = _TYPED.match(stripped)
        if typed:
            if typed[1] not in ("b", "c"):
                raise InputError(f"type {typed[1]!r} is not b or c", field=field, value=text)
            return Device(
                DevType(typed[1]), parse_u32(typed[2], field, text), parse_u32(typed[3], field, text)
            )
        bare = _BARE.match(stripped)
        if bare and " " not in stripped:
            return Device(DevType.CHAR, parse_u32(bare[1], field, text), parse_u32(bare[2], field, text))
        raise InputError(
            "is not MAJOR:MINOR in numbers ('c 195:255', 'b 8:0', '195:255', /dev/char/M:m or a path)",
            field=field,
            value=text,
        )


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """One access a process can cause: mknod (``m``), or an open for ``r``, ``w`` or ``rw``.

    The constructor takes the plain spellings too (``Request("c", 1, 3, 2)``) and stores the enums.
    """

    type: DevType
    major: int
    minor: int
    access: Access

    def __init__(self, type: DevType | str, major: int, minor: int, access: int) -> None:
        object.__setattr__(self, "type", DevType(type))
        object.__setattr__(self, "major", major)
        object.__setattr__(self, "minor", minor)
        object.__setattr__(self, "access", Access(access))

    @staticmethod
    def of(device: Device, access: int) -> Request:
        return Request(device.type, device.major, device.minor, access)

    @staticmethod
    def parse(text: str, field: str = "request") -> Request:
        """``"c 195:255 rw"`` (any spelling ``Device.parse_numeric`` reads, then one request
        access: ``m``, ``r``, ``w`` or ``rw``)."""
        device_text, _, access_text = text.strip().rpartition(" ")
        if not device_text.strip() or ":" in access_text:
            raise InputError(
                "expected 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 195:255 rw'", field=field, value=text
            )
        device = Device.parse_numeric(device_text, field)
        if device is None:
            raise InputError(
                "a path needs a look-up on the host; give 'TYPE MAJOR:MINOR'", field=field, value=text
            )
        return Request.of(device, parse_request_access(access_text, field))

    @property
    def device(self) -> Device:
        return Device(self.type, self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.type} {self.major}:{self.minor} {access_to_str(self.access)}"

    def to_json(self) -> dict[str, int | str]:
        """The ``request`` object of every --json document (docs/json-schema.md)."""
        access = access_to_str(self.access)
        return {"type": str(self.type), "major": self.major, "minor": self.minor, "access": access}


def parse_access(text: str, field: str = "access", *, one_request: bool = False) -> Access:
    """The one reader of an ``--access`` argument (grant, revoke, explain, ``--check``): letters
    r, w, m in any order, each once, not empty.  ``one_request``: what a single kernel request can
    ask (``m`` for mknod; ``r``, ``w`` or ``rw`` for an open), for the commands that ask about one
    request; a grant gives any combination (``rwm``)."""
    letters = text.strip()
    # where the access is part of a longer value (``--check 'c 1:3 rwx'``), say which part is wrong
    part = "" if field == "access" else f"access {letters!r}: "
    try:
        mask = Access.parse(letters, field)
    except InputError as err:
        raise InputError(part + err.why, field=field, value=text) from None
    if len(set(letters)) != len(letters):
        raise InputError(f"{part}names a letter twice", field=field, value=text)
    if not mask:
        raise InputError(f"{part}is empty (give r, w, m or a combination)", field=field, value=text)
    if one_request and int(mask) not in REQUEST_MASKS:
        parts = f"'m' and '{access_to_str(mask & ~Access.M)}'"
        raise InputError(
            f"{part}is not one request: the kernel asks m (mknod) and r, w or rw (open) separately; "
            f"ask {parts} one at a time",
            field=field,
            value=text,
        )
    return mask


def parse_request_access(text: str, field: str = "access") -> Access:
    """One access a request can ask: ``m`` (mknod), ``r``, ``w`` or ``rw`` (``wr`` too)."""
    return parse_access(text, field, one_request=True)


_RULE_TYPE_OF: Final[dict[str, RuleType]] = {t.value: t for t in RuleType}  # members hash as their values


@dataclass(frozen=True, slots=True, init=False)
class Rule:
    """A device cgroup rule in any syntax: ``None`` for major/minor is the ``*`` wildcard.

    ``type`` ``a`` means "both types"; what it means for major/minor/access depends on the
    semantics reading the rule list (see ``cgdev.core.semantics``).  ``access`` holds ``Access``
    bits as a plain int: compiling 100,000 rules combines them often, and ``IntFlag`` arithmetic
    is ten times slower than ``int``'s.
    """

    allow: bool
    type: RuleType
    major: int | None
    minor: int | None
    access: int

    def __init__(
        self,
        allow: bool,
        type: RuleType | str = RuleType.ALL,
        major: int | None = None,
        minor: int | None = None,
        access: int = 7,
    ) -> None:
        object.__setattr__(self, "allow", allow)
        try:  # the enum's own look-up costs ~1 µs, a dict's ~50 ns
            rule_type = _RULE_TYPE_OF.get(type)
        except TypeError:  # unhashable: the enum says what is wrong with it
            rule_type = None
        object.__setattr__(self, "type", rule_type if rule_type is not None else RuleType(type))
        object.__setattr__(self, "major", major)
        object.__setattr__(self, "minor", minor)
        object.__setattr__(self, "access", int(access))

    def matches_device(self, dev_type: str, major: int, minor: int) -> bool:
        return (
            (self.type == "a" or self.type == dev_type)
            and (self.major is None or self.major == major)
            and (self.minor is None or self.minor == minor)
        )

    def __str__(self) -> str:
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        verb = "allow" if self.allow else "deny"
        return f"{verb} {self.type} {major}:{minor} {access_to_str(self.access)}"
