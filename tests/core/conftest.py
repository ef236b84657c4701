"""Tests of the pure core (model, rules, semantics, policy, ISA, compiler, interpreter, lifter,
shapes, CDI documents).  The core does no I/O, so these tests must not either — except the few that
check a core answer against the real kernel.  Those take the kernel fixtures (``root_bpf``,
``probe``, ``scratch_cgroup``, ``bpffs_dir``) and are marked ``root`` here from that, so a
developer without root can select the rest with ``-m "not root"``."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent

_KERNEL_FIXTURES = frozenset({"root_bpf", "probe", "scratch_cgroup", "bpffs_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the hook sees every collected item, not only this directory's
    for item in (i for i in items if _HERE in i.path.parents):
        if _KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)
