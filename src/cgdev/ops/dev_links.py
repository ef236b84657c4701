"""``cgdev links``: check and create the ``/dev/char/MAJ:MIN`` links runc's systemd driver needs.

Which nodes: every character device under the dev directory that udev does not link itself (no
``/sys/dev/char/MAJ:MIN``: the node was made with mknod by a driver's helper, or lives in a /dev
udev does not manage), plus the host nodes of every CDI device; with ``include_udev`` also the
nodes udev would link, for hosts and containers where udev does not run or the links were lost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cgdev.adapters.cdi_dirs import load_registry
from cgdev.adapters.dev_nodes import char_node, install_link, read_char_links, scan_char_nodes
from cgdev.core.dev_char import CharNode, LinkCheck, LinkState, plan_links
from cgdev.errors import InputError


def cdi_char_nodes(
    spec_dirs: Sequence[str], sys_dir: str = "/sys"
) -> tuple[list[CharNode], list[InputError]]:
    """The host char nodes CDI specs name (hostPath, or path), and the specs' errors."""
    registry = load_registry(spec_dirs)
    nodes: list[CharNode] = []
    for loaded in registry.specs:
        edits = [loaded.spec.container_edits, *(d.container_edits for d in loaded.spec.devices)]
        for e in edits:
            for dn in e.device_nodes:
                node = char_node(dn.host_path or dn.path, sys_dir)
                if node is not None:
                    nodes.append(node)
    return nodes, list(registry.errors)


def check_links(
    dev_dir: str = "/dev",
    *,
    include_udev: bool = False,
    spec_dirs: Sequence[str] = (),
    sys_dir: str = "/sys",
) -> tuple[list[LinkCheck], list[InputError]]:
    """Every wanted link and its state; the CDI spec errors met on the way (reported, not fatal)."""
    dev_dir = os.path.abspath(dev_dir)
    if not os.path.isdir(dev_dir):
        raise InputError("not a directory", field="dev", value=dev_dir)
    nodes = list(scan_char_nodes(dev_dir, sys_dir))
    errors: list[InputError] = []
    if spec_dirs:
        cdi_nodes, errors = cdi_char_nodes(spec_dirs, sys_dir)
        nodes.extend(cdi_nodes)
    char_dir = os.path.join(dev_dir, "char")
    return plan_links(char_dir, nodes, read_char_links(char_dir), include_udev), errors


def create_links(checks: Sequence[LinkCheck]) -> list[LinkCheck]:
    """Make every missing or wrong link; the result has each check's new state (a link a
    non-symlink file blocks stays BLOCKED; correct links are never rewritten)."""
    done: list[LinkCheck] = []
    for check in checks:
        if check.state in (LinkState.MISSING, LinkState.WRONG):
            char_dir, name = os.path.split(check.link)
            if install_link(char_dir, name, check.target):
                check = LinkCheck(check.link, check.target, check.node, LinkState.OK, check.target,
                                  check.udev_known)  # fmt: skip
            else:
                check = LinkCheck(check.link, check.target, check.node, LinkState.BLOCKED,
                                  "(not a symlink)", check.udev_known)  # fmt: skip
        done.append(check)
    return done
