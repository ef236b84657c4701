"""``/dev/char/MAJ:MIN`` links: which ones a node needs, and which ones are missing or wrong.

runc (1.1.x with the systemd driver) turns every device of a spec into
``DeviceAllow=/dev/char/MAJ:MIN``, and systemd silently drops an entry whose path does not exist:
the device is then lost at the next ``daemon-reload``.  udev makes these links only for devices the
kernel announced through sysfs; nodes a driver's helper creates with ``mknod`` (nvidia-modprobe's
``/dev/nvidiactl``, ``/dev/nvidia-uvm``...) never get one.  The links are what udev would write: a
relative symlink ``../name`` from ``/dev/char``.

Pure: the scan of the node directory and of the existing links is ``cgdev.adapters.dev_nodes``.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Iterable, Mapping

import msgspec


class LinkState(enum.StrEnum):
    OK = "ok"  # a symlink resolving to a char node of the same numbers
    MISSING = "missing"
    WRONG = "wrong"  # a symlink that is dangling or resolves to another device: replaced
    BLOCKED = "blocked"  # not a symlink: never touched


class CharNode(msgspec.Struct, frozen=True):
    """A character device node: its absolute path, numbers, and whether sysfs (so udev) knows it."""

    path: str
    major: int
    minor: int
    udev_known: bool = False

    @property
    def link_name(self) -> str:
        return f"{self.major}:{self.minor}"


class ExistingLink(msgspec.Struct, frozen=True):
    """What is at ``/dev/char/MAJ:MIN`` now: a symlink (its text and the char numbers it resolves
    to, None when dangling or not a char node), or some other file (``symlink`` False)."""

    symlink: bool
    target: str = ""
    resolves_to: tuple[int, int] | None = None


class LinkCheck(msgspec.Struct, frozen=True):
    """One link cgdev wants: where, what it should point at, and what is there."""

    link: str
    target: str
    node: str
    state: LinkState
    have: str = ""
    udev_known: bool = False


def wanted_nodes(nodes: Iterable[CharNode], include_udev: bool) -> dict[str, CharNode]:
    """One node per ``MAJ:MIN`` (the shallowest path, then the first by name, as a stable choice);
    nodes udev links itself only with ``include_udev``."""
    chosen: dict[str, CharNode] = {}
    for node in sorted(nodes, key=lambda n: (n.path.count("/"), n.path)):
        if node.udev_known and not include_udev:
            continue
        chosen.setdefault(node.link_name, node)
    return chosen


def plan_links(
    char_dir: str, nodes: Iterable[CharNode], existing: Mapping[str, ExistingLink], include_udev: bool
) -> list[LinkCheck]:
    """Every wanted link with its state, in ``MAJ:MIN`` order."""
    checks: list[LinkCheck] = []
    chosen = wanted_nodes(nodes, include_udev)
    for name in sorted(chosen, key=lambda n: tuple(int(x) for x in n.split(":"))):
        node = chosen[name]
        target = posixpath.relpath(node.path, char_dir)
        now = existing.get(name)
        if now is None:
            state, have = LinkState.MISSING, ""
        elif not now.symlink:
            state, have = LinkState.BLOCKED, "(not a symlink)"
        elif now.resolves_to == (node.major, node.minor):
            state, have = LinkState.OK, now.target
        else:
            state, have = LinkState.WRONG, now.target
        link = posixpath.join(char_dir, name)
        checks.append(LinkCheck(link, target, node.path, state, have, node.udev_known))
    return checks
