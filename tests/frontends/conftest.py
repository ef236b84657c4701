"""Tests of the front ends as a user meets them: ``python -m cgdev ...`` in a child process (exit
status, one-line errors, no traceback, --json), the completion scripts and man page, the
architecture guards (import contract, mypy, ruff).  Markers follow the fixtures a test takes."""

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
