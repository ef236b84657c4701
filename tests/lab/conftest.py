"""Tests against the lab: real systemd as PID 1 of private namespaces, a real D-Bus, real crun and
runc.  Every test here is a ``lab`` test (marked below, whatever its module says), so
``-m "not lab"`` leaves exactly these out.  The ``lab`` fixture (tests/fixtures_lab.py) reuses a
running lab or starts one for the session; under CI a lab that cannot run is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from markers import mark_by_fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_fixtures(items, Path(__file__).parent, always="lab")
