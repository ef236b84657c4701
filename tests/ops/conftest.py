"""Tests of the operations (inspect, explain, show, audit, snapshot, repair, entitlements, links):
offline on snapshots and hand-built inspections, and live on scratch cgroups and lab containers,
where the kernel's probe is the oracle.  Markers follow the fixtures a test takes (below), so
``-m "not lab"`` and ``-m "not root"`` select honestly."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent

_KERNEL_FIXTURES = frozenset({"root_bpf", "probe", "scratch_cgroup", "bpffs_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the hook sees every collected item, not only this directory's
    for item in (i for i in items if _HERE in i.path.parents):
        names = set(getattr(item, "fixturenames", ()))
        if _KERNEL_FIXTURES & names:
            item.add_marker(pytest.mark.root)
        if "lab" in names:
            item.add_marker(pytest.mark.lab)
