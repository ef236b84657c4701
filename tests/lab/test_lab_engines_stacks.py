"""The stack's own engines in a suite's lab (issue 11): podman 5 and containerd 2 in the sid lab.

The engines are installed into the suite's cached root on first use (``engine_packages``, about a
minute once).  These tests use a suite's lab that is already running (``.ci/run`` starts the sid
lab; the stack tests share it) and never start or stop one.  Every version is read from the
running stack; every verdict is the kernel's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cgdev.adapters import cgroupfs
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.adapters.scratch_cgroup import ScratchCgroup
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.lab import engines
from cgdev.lab.engine_record import Engine
from cgdev.ops.explain import explain
from cgdev.ops.inspect import HostView, inspect
from cgdev.ops.layers import LiftCache

pytestmark = [pytest.mark.lab, pytest.mark.stack]

STACKS = ("sid", "trixie")
NULL = Request("c", 1, 3, ACC_R | ACC_W)
NVIDIACTL = Request("c", 195, 255, ACC_R | ACC_W)


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> Iterator[str]:
    from cgdev.lab.instance import find_lab
    from cgdev.lab.paths import using_stack
    from fixtures_lab import lab_impossible_reason

    reason = lab_impossible_reason()
    with using_stack(request.param):
        running = find_lab() is not None
    if reason or not running:
        from capabilities import skip_unless_ci

        skip_unless_ci(
            reason or f"the {request.param} lab is not running (`cgdev lab up --stack {request.param}`)"
        )
    yield request.param


@pytest.mark.parametrize(
    ("engine", "runtime"),
    [
        (Engine.PODMAN, "crun"),
        (Engine.PODMAN, "runc"),
        (Engine.CONTAINERD, "runc"),
        (Engine.CONTAINERD, "crun"),
    ],
)
def test_the_stacks_engine_runs_and_is_explained_as_the_kernel_answers(
    stack: str, engine: Engine, runtime: str
) -> None:
    from cgdev.lab.instance import require_lab
    from cgdev.lab.paths import using_stack

    name = f"t-stk-{engine.value}-{runtime}-{os.getpid()}"
    with using_stack(stack):
        lab = require_lab()
        record = engines.run_engine_container(lab, engine, name, runtime=runtime, timeout=180)
        try:
            binary = "podman" if engine is Engine.PODMAN else "containerd"
            said = lab.exec([binary, "--version"]).stdout
            assert record.engine_version and record.engine_version in said, (record.engine_version, said)
            assert engines.probe(lab, record, ("null",)) == {"null": "ok"}
            host = HostView.for_ns_pid(lab.pid1)
            with ScratchCgroup(parent=str(lab.host_cgroup(record.cgroup))) as child:
                kernel = kernel_verdicts(child.path, [NULL, NVIDIACTL])
            assert kernel == [True, False]
            lifts = LiftCache()
            for spec in {record.name, record.id}:
                inspection = inspect(spec, host)
                target = inspection.target
                assert target.container_id == record.id and target.runtime == runtime, target
                assert target.cgroup == host.systemd_root.rstrip("/") + record.cgroup
                assert target.pid is not None and cgroupfs.process_cgroup(target.pid) == target.cgroup
                for request, expected in zip([NULL, NVIDIACTL], kernel, strict=True):
                    assert explain(inspection, request, "", "container", lifts).allowed is expected, (
                        spec,
                        request,
                    )
        finally:
            engines.remove_engine_container(lab, name)
