"""cgdev's runtime shapes against the real runtimes on random device lists, not only the presets.

For each runtime in the lab (crun 1.21, runc, and crun 1.8.1 where Debian ships it) a container is
started from a config whose ``linux.resources.devices`` is a random list; the program the runtime
attaches must be, byte for byte, what ``shape_program`` builds from the same list.  A runtime that
refuses a list (runc's "hole punching") must be one whose semantics refuses it too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cgdev.adapters import cgroupfs
from cgdev.core import isa
from cgdev.core.rules import parse_oci_config
from cgdev.core.shapes import shape_program
from cgdev.errors import CgdevError, InputError
from cgdev.lab import bundle, containers
from cgdev.ops.collect import program_records
from lab_samples import LISTS_PER_RUNTIME, random_devices

pytestmark = pytest.mark.lab

SHAPE_OF_RUNTIME = {"crun": "crun", "crun-1.8.1": "crun-1.8", "runc": "runc"}


def _runtime_programs(lab: Any, container: Any) -> list[bytes]:
    """The programs not attached by systemd on the container's path inside the lab."""
    leaf = Path(lab.cgroup_root) / container.cgroup.lstrip("/")
    out = []
    for level in cgroupfs.ancestors(str(leaf), mount=str(lab.cgroup_root)):
        out += [r.xlated for r in program_records(level) if r.name != "sd_devices"]
    return out


@pytest.mark.parametrize("runtime", sorted(SHAPE_OF_RUNTIME))
def test_runtime_programs_equal_cgdev_shapes_on_random_lists(lab: Any, runtime: str) -> None:
    if runtime not in lab.runtimes:
        pytest.skip(f"{runtime} is not installed in this lab (Debian ships crun 1.8.1 only in 12)")
    rt = containers.runtime_named(runtime, lab.runtimes)
    rng = random.Random(f"shapes-{runtime}")
    started = refused = 0
    for i in range(LISTS_PER_RUNTIME):
        devices = random_devices(rng)
        config = bundle.base_config(bundle.ensure_rootfs())
        config["linux"]["resources"]["devices"] = devices
        rules = parse_oci_config(config)
        try:
            expected = shape_program(rules, SHAPE_OF_RUNTIME[runtime])
        except InputError:
            expected = None  # cgdev says this runtime refuses the list
        name = f"shape-{runtime.replace('.', '')}-{i}"
        try:
            container = containers.start_container(lab.running, name, rt, "cgroupfs", config).container
        except CgdevError as err:
            assert expected is None, f"{runtime} refused {json.dumps(devices)}: {err}"
            refused += 1
            continue
        try:
            assert expected is not None, f"{runtime} accepted {json.dumps(devices)}; cgdev said it refuses"
            attached = _runtime_programs(lab, container)
            assert attached == ([isa.encode(expected)] if expected else []), json.dumps(devices)
            started += 1
        finally:
            lab.delete(container.id)
    assert started >= LISTS_PER_RUNTIME // 2, (started, refused)
