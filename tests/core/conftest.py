"""Tests of the pure core (model, rules, semantics, policy, ISA, compiler, interpreter, lifter,
shapes, CDI documents).  The core does no I/O, so these tests must not either — except the few that
check a core answer against the real kernel.  Those take the kernel fixtures (``root_bpf``,
``probe``, ``scratch_cgroup``, ``bpffs_dir``) and are marked ``root`` here from that, so a
developer without root can select the rest with ``-m "not root"``."""

from __future__ import annotations

from pathlib import Path

import pytest

from markers import mark_by_fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_fixtures(items, Path(__file__).parent)
