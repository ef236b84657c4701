"""Tests of the operations (inspect, explain, show, audit, snapshot, repair, entitlements, links):
offline on snapshots and hand-built inspections, and live on scratch cgroups and lab containers,
where the kernel's probe is the oracle.  Markers follow the fixtures a test takes (below), so
``-m "not lab"`` and ``-m "not root"`` select honestly."""

from __future__ import annotations

from pathlib import Path

import pytest

from markers import mark_by_fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_fixtures(items, Path(__file__).parent)
