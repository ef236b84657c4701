"""Tests of the adapters against the real systems they adapt: bpf(2) on this kernel, the forked
probe in scratch cgroups, systemd over D-Bus in the lab.  Never a faked kernel or bus answer: a test
here that needs root marks itself ``root`` (done below from its fixtures), and one that needs the
lab's systemd takes the session ``lab`` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from markers import mark_by_fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_fixtures(items, Path(__file__).parent)
