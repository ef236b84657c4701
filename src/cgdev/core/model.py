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

from dataclasses import dataclass
from typing import Final, Literal

DevType = Literal["b", "c"]
RuleType = Literal["a", "b", "c"]

BLOCK: Final = 1
CHAR: Final = 2
KERNEL_TYPE: Final[dict[str, int]] = {"b": BLOCK, "c": CHAR}
TYPE_OF_KERNEL: Final[dict[int, str]] = {BLOCK: "b", CHAR: "c"}
DEV_TYPES: Final[tuple[DevType, DevType]] = ("b", "c")

ACC_M: Final = 1
ACC_R: Final = 2
ACC_W: Final = 4
ACC_ALL: Final = 7
REQUEST_MASKS: Final[tuple[int, ...]] = (ACC_M, ACC_R, ACC_W, ACC_R | ACC_W)
# A set of request masks is an 8-bit bitmap indexed by the mask value: bit (1 << mask).
MASKSET_ALL: Final = sum(1 << m for m in REQUEST_MASKS)  # 0b0101_0110
MASKSET_NONE: Final = 0

U32_MAX: Final = 0xFFFF_FFFF
# mknod(2) can only name devices that fit a dev_t: 12-bit major, 20-bit minor.
MKNOD_MAJOR_MAX: Final = 0xFFF
MKNOD_MINOR_MAX: Final = 0xFFFFF


def access_to_str(mask: int) -> str:
    """``7`` -> ``"rwm"``; the letter order runtimes print."""
    return ("r" if mask & ACC_R else "") + ("w" if mask & ACC_W else "") + ("m" if mask & ACC_M else "")


def maskset_for_bits(bits: int) -> int:
    """The request masks a rule granting ``bits`` lets through (every request mask ⊆ bits)."""
    return sum(1 << m for m in REQUEST_MASKS if m & bits == m)


@dataclass(frozen=True, slots=True)
class Request:
    """One access a process can cause: mknod (``m``), or an open for ``r``, ``w`` or ``rw``."""

    type: DevType
    major: int
    minor: int
    access: int

    def __str__(self) -> str:
        return f"{self.type} {self.major}:{self.minor} {access_to_str(self.access)}"

    def to_json(self) -> dict[str, int | str]:
        """The ``request`` object of every --json document (docs/json-schema.md)."""
        access = access_to_str(self.access)
        return {"type": self.type, "major": self.major, "minor": self.minor, "access": access}


@dataclass(frozen=True, slots=True)
class Rule:
    """A device cgroup rule in any syntax: ``None`` for major/minor is the ``*`` wildcard.

    ``type`` ``a`` means "both types"; what it means for major/minor/access depends on the
    semantics reading the rule list (see ``cgdev.core.semantics``).
    """

    allow: bool
    type: RuleType = "a"
    major: int | None = None
    minor: int | None = None
    access: int = ACC_ALL

    def matches_device(self, dev_type: DevType, major: int, minor: int) -> bool:
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
