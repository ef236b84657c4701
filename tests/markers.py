"""Markers from fixtures: a test that takes a kernel fixture needs root, one that takes ``lab``
needs the lab.  Each layer's conftest applies this to its own directory's tests only (the hook
sees every collected item)."""

from __future__ import annotations

from pathlib import Path

import pytest

KERNEL_FIXTURES = frozenset({"root_bpf", "probe", "scratch_cgroup", "bpffs_dir"})


def mark_by_fixtures(items: list[pytest.Item], here: Path, *, always: str | None = None) -> None:
    for item in (i for i in items if here in i.path.parents):
        names = set(getattr(item, "fixturenames", ()))
        if KERNEL_FIXTURES & names:
            item.add_marker(pytest.mark.root)
        if "lab" in names:
            item.add_marker(pytest.mark.lab)
        if always is not None:
            item.add_marker(getattr(pytest.mark, always))
