"""Tests of the adapters against the real systems they adapt: bpf(2) on this kernel, the forked
probe in scratch cgroups, systemd over D-Bus in the lab.  Never a faked kernel or bus answer: a test
here that needs root marks itself ``root`` (done below from its fixtures), and one that needs the
lab's systemd takes the session ``lab`` fixture."""

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
