"""Tests against the lab: real systemd as PID 1 of private namespaces, a real D-Bus, real crun and
runc.  Every test here is a ``lab`` test (marked below, whatever its module says), so
``-m "not lab"`` leaves exactly these out.  The ``lab`` fixture (tests/fixtures_lab.py) reuses a
running lab or starts one for the session; under CI a lab that cannot run is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the hook sees every collected item, not only this directory's
    for item in (i for i in items if _HERE in i.path.parents):
        item.add_marker(pytest.mark.lab)
