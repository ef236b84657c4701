"""Real engines in the lab (issue 9, item 5): podman and containerd start containers against the
lab's systemd, and ``cgdev explain --lab`` finds them by name and by id and answers as the kernel.

Every container here is started by the engine itself (podman 4.3.1 with crun 1.21 or runc 1.1.5
under the systemd driver; containerd 1.6.20's ``ctr run --runc-binary``), so what the engine adds
to the spec (its default devices, ``--device``, annotations, hooks) is part of what is checked.
Verdicts are compared with the kernel: the open from inside the container (through the engine's
own exec) and probes from a scratch child of the container's cgroup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cgdev.adapters import cgroupfs
from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.adapters.scratch_cgroup import ScratchCgroup
from cgdev.core.model import ACC_R, ACC_W, Request
from cgdev.lab import containerd, engine_record
from cgdev.lab.engine_record import Engine, EngineContainer
from cgdev.ops.explain import explain
from cgdev.ops.inspect import HostView, inspect
from cgdev.ops.layers import LiftCache
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

RW = ACC_R | ACC_W
NULL = Request("c", 1, 3, RW)
NVIDIACTL = Request("c", 195, 255, RW)  # in no engine's default list: denied unless granted
# The lab's own node for 195:255 (a tmpfs without nodev inside the lab), for --device.
LAB_NVIDIACTL = "/run/cgdev-dev/nvidiactl"
ALLOWED = ("ok", "ENXIO")  # ENXIO: the cgroup let the open through and no driver answered

CASES = [
    pytest.param(Engine.PODMAN, "crun", id="podman-crun"),
    pytest.param(Engine.PODMAN, "runc", id="podman-runc"),
    pytest.param(Engine.CONTAINERD, "runc", id="containerd-runc"),
    pytest.param(Engine.CONTAINERD, "crun", id="containerd-crun"),
]


def _require_engine(lab: LabHandle, engine: Engine) -> None:
    binary = "podman" if engine is Engine.PODMAN else "containerd"
    if lab.exec(["sh", "-c", f"command -v {binary}"], check=False).returncode != 0:
        from capabilities import skip_unless_ci

        skip_unless_ci(f"{binary} is not installed (scripts/bootstrap installs it)")


@pytest.fixture
def started(lab: LabHandle) -> Iterator[list[EngineContainer]]:
    """Containers a test starts; each is removed afterwards, whatever happened."""
    records: list[EngineContainer] = []
    yield records
    for record in records:
        lab.remove_engine(record.name)


def _name(engine: Engine, runtime: str, what: str) -> str:
    return f"t-eng-{engine.value}-{runtime}-{what}-{os.getpid()}"


def _host_view(lab: LabHandle) -> HostView:
    return HostView.for_ns_pid(lab.pid1)


def _kernel(record: EngineContainer, lab: LabHandle, requests: list[Request]) -> list[bool]:
    """The kernel's verdicts from a scratch child of the container's own cgroup."""
    with ScratchCgroup(parent=str(lab.cgroup_root / record.cgroup.lstrip("/"))) as child:
        return kernel_verdicts(child.path, requests)


@pytest.mark.parametrize(("engine", "runtime"), CASES)
def test_engine_container_is_explained_by_name_and_id_as_the_kernel_answers(
    lab: LabHandle, started: list[EngineContainer], engine: Engine, runtime: str
) -> None:
    _require_engine(lab, engine)
    name = _name(engine, runtime, "x")
    record = lab.run_engine(engine, name, runtime=runtime, annotations={"cgdev.test/case": name})
    started.append(record)
    assert record.engine is engine and record.name == name and record.driver == "systemd"
    said = lab.exec(["podman" if engine is Engine.PODMAN else "containerd", "--version"]).stdout
    assert record.engine_version and record.engine_version in said, (record.engine_version, said)
    assert record.scope is not None and record.cgroup.split("/")[2] == record.scope
    host = _host_view(lab)
    lab_root = host.systemd_root.rstrip("/")
    specs = {record.name, record.id} | ({record.id[:12]} if engine is Engine.PODMAN else set())
    lifts = LiftCache()
    kernel = _kernel(record, lab, [NULL, NVIDIACTL])
    assert kernel == [True, False], kernel  # the engine's defaults: /dev/null yes, 195:255 no
    inside = lab.probe_engine(record, ["null"])
    assert inside["null"] in ALLOWED, inside
    for spec in sorted(specs):
        inspection = inspect(spec, host)
        target = inspection.target
        assert target.kind == "container", (spec, target)
        assert target.container_id == record.id, (spec, target)
        assert target.cgroup == lab_root + record.cgroup, (spec, target.cgroup)
        assert target.runtime == runtime, (spec, target.runtime)
        assert target.annotations.get("cgdev.test/case") == name, (spec, target.annotations)
        assert target.pid is not None and cgroupfs.process_cgroup(target.pid) == target.cgroup
        if engine is Engine.PODMAN:
            assert target.name == record.name, (spec, target.name)
        for request, expected in zip([NULL, NVIDIACTL], kernel, strict=True):
            answer = explain(inspection, request, "", "container", lifts)
            assert answer.allowed is expected, (spec, str(request), answer.allowed, expected)
    # the engine's scope is a unit the lab's systemd knows: the same cgroup, by unit name
    by_unit = inspect(record.scope, host).target
    assert by_unit.cgroup == lab_root + record.cgroup


@pytest.mark.parametrize("engine", [Engine.PODMAN, Engine.CONTAINERD])
def test_the_cgroupfs_driver_too(lab: LabHandle, started: list[EngineContainer], engine: Engine) -> None:
    """podman --cgroup-manager cgroupfs (libpod_parent/libpod-<id>), ctr without the systemd flag."""
    _require_engine(lab, engine)
    record = lab.run_engine(engine, _name(engine, "runc", "cgfs"), runtime="runc", driver="cgroupfs")
    started.append(record)
    assert record.scope is None and not record.cgroup.startswith("/system.slice")
    kernel = _kernel(record, lab, [NULL, NVIDIACTL])
    assert kernel == [True, False]
    host = _host_view(lab)
    for spec in (record.name, record.id):
        inspection = inspect(spec, host)
        assert inspection.target.cgroup == host.systemd_root.rstrip("/") + record.cgroup
        answers = [explain(inspection, r, "", "container", LiftCache()).allowed for r in (NULL, NVIDIACTL)]
        assert answers == kernel, (spec, answers)


@pytest.mark.parametrize(("engine", "runtime"), CASES)
def test_a_device_given_to_the_engine_is_in_the_spec_and_explained_as_the_kernel_answers(
    lab: LabHandle, started: list[EngineContainer], engine: Engine, runtime: str
) -> None:
    """podman --device / ctr --device put the node and its allow rule in the spec.  With crun every
    layer (systemd's DeviceAllow, crun's program) lets 195:255 through, whatever reloads happen.
    runc 1.1.5 skips the DeviceAllow entry when /dev/char/195:255 is missing (DESIGN §9) and its own
    program on the scope lasts only until the next reload, which any user of the shared lab may
    trigger: there explain must simply say what the kernel says."""
    _require_engine(lab, engine)
    device = f"{LAB_NVIDIACTL}:/dev/nvidiactl" if engine is Engine.PODMAN else LAB_NVIDIACTL
    record = lab.run_engine(engine, _name(engine, runtime, "dev"), runtime=runtime, devices=[device])
    started.append(record)
    config = json.loads(Path(f"/proc/{lab.pid1}/root{record.config_json}").read_text())
    rules = config["linux"]["resources"]["devices"]
    assert any(r.get("allow") and r.get("major") == 195 and r.get("minor") == 255 for r in rules), rules
    inspection = inspect(record.name, _host_view(lab))
    answer = explain(inspection, NVIDIACTL, "", "container", LiftCache())
    kernel = _kernel(record, lab, [NVIDIACTL])
    assert [answer.allowed] == kernel
    if runtime == "crun":
        assert kernel == [True] and not answer.denied_by
        if engine is Engine.PODMAN:
            assert lab.probe_engine(record, ["nvidiactl"])["nvidiactl"] == "ENXIO"


def test_podman_runs_the_hooks_of_its_hooks_dir_with_the_oci_state(
    lab: LabHandle, started: list[EngineContainer], tmp_path: Path
) -> None:
    """--hooks-dir reaches podman: a createRuntime hook gets the OCI state (id, pid, annotations)."""
    _require_engine(lab, Engine.PODMAN)
    tmp_path.chmod(0o755)
    out = tmp_path / "state.json"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat > {out}\n")
    hook.chmod(0o755)
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    spec = {
        "version": "1.0.0",
        "hook": {"path": str(hook)},
        "when": {"annotations": {"^cgdev\\.test/hook$": "^yes$"}},
        "stages": ["createRuntime"],
    }
    (hooks / "cgdev-test.json").write_text(json.dumps(spec))
    name = _name(Engine.PODMAN, "crun", "hook")
    record = lab.run_engine(Engine.PODMAN, name, hooks_dir=str(hooks), annotations={"cgdev.test/hook": "yes"})
    started.append(record)
    state = json.loads(out.read_text())
    assert state["id"] == record.id and state["annotations"]["cgdev.test/hook"] == "yes"
    assert state["pid"] == record.pid  # the hook runs in the lab's namespaces: the lab's pid


def test_removing_an_engine_container_leaves_nothing(lab: LabHandle) -> None:
    _require_engine(lab, Engine.CONTAINERD)
    _require_engine(lab, Engine.PODMAN)
    names = []
    for engine in (Engine.PODMAN, Engine.CONTAINERD):
        record = lab.run_engine(engine, _name(engine, "runc", "rm"), runtime="runc")
        host_cgroup = lab.cgroup_root / record.cgroup.lstrip("/")
        assert host_cgroup.is_dir()
        lab.remove_engine(record.name)
        names.append(record.name)
        assert not host_cgroup.exists(), host_cgroup
        assert engine_record.find(record.name) is None
    assert not set(names) & set(containerd.listed(lab.running))
    ps = lab.exec(["podman", "--root", "/run/cgdev-engines/podman/storage", "--runroot",
                   "/run/cgdev-engines/podman/run", "--storage-driver", "vfs", "ps", "-a",
                   "--format", "{{.Names}}"], check=False).stdout.split()  # fmt: skip
    assert names[0] not in ps


def test_the_probe_reads_a_missing_node_as_missing_not_allowed(
    lab: LabHandle, started: list[EngineContainer]
) -> None:
    """Failed before the fix: the shell's ``<>`` created /dev/nvidiactl in podman's writable /dev
    tmpfs, and the probe read that open as allowed."""
    _require_engine(lab, Engine.PODMAN)
    record = lab.run_engine(Engine.PODMAN, _name(Engine.PODMAN, "crun", "enoent"))
    started.append(record)
    assert lab.probe_engine(record, ["nvidiactl", "nvidiactl"]) == {"nvidiactl": "ENOENT"}
    assert lab.probe_engine(record, ["null"]) == {"null": "ok"}


def _cgdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, timeout=90)


def test_lab_run_engine_cli_start_probe_explain_delete(lab: LabHandle) -> None:
    _require_engine(lab, Engine.PODMAN)
    name = _name(Engine.PODMAN, "runc", "cli")
    done = _cgdev("lab", "run", "--engine", "podman", "--runtime", "runc", "--name", name,
                  "--annotation", "a=b", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    try:
        data: dict[str, Any] = json.loads(done.stdout)
        assert data["engine"] == "podman" and data["name"] == name and data["runtime"] == "runc"
        status = json.loads(_cgdev("lab", "status", "--json").stdout)
        assert name in [c["name"] for c in status["engine_containers"]]
        probe = _cgdev("lab", "probe", name, "--json")
        assert probe.returncode == 0 and json.loads(probe.stdout)["null"] == "ok", probe.stderr
        explained = _cgdev("explain", "--lab", name, "--device", "/dev/null", "--json")
        assert explained.returncode == 0, explained.stderr
        assert json.loads(explained.stdout)["target"]["container_id"] == data["id"]
    finally:
        deleted = _cgdev("lab", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert engine_record.find(name) is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--engine", "docker"], "--engine: 'docker' is not one of podman, containerd"),
        (["--engine", "containerd", "--name", "a..b"], "--name 'a..b': a containerd id"),
        (["--engine", "containerd", "--hooks-dir", "/x"], "--hooks-dir '/x': containerd has no hooks"),
        (["--engine", "podman", "--hooks-dir", "rel"], "--hooks-dir 'rel': give an absolute path"),
        (["--engine", "podman", "--device", "nvidia"], "--device 'nvidia': podman takes"),
        (["--engine", "containerd", "--device", "vendor/class=x"], "--device 'vendor/class=x': containerd"),
        (["--engine", "podman", "--annotation", "novalue"], "--annotation 'novalue': give KEY=VALUE"),
        (["--engine", "podman", "crun-sd"], "run --engine: presets and --config"),
        (["--device", "/dev/null", "crun-sd"], "run --device: only with --engine"),
        (["--engine", "podman", "--name=-x"], "--name '-x'"),
        (["--engine", "podman", "--cgroup-driver", "v1"], "--cgroup-driver: 'v1'"),
        (["--engine", "podman", "--runtime", "/nonexistent/runtime"], "--runtime '/nonexistent/runtime'"),
    ],
)
def test_lab_run_engine_bad_input_is_one_line_exit_2(lab: LabHandle, args: list[str], says: str) -> None:
    before = {r.name for r in engine_record.load_all()}
    done = _cgdev("lab", "run", *args)
    assert done.returncode == 2, (args, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert {r.name for r in engine_record.load_all()} == before


def test_the_engines_state_lives_in_the_labs_private_run(lab: LabHandle) -> None:
    """``lab down`` needs nothing of the engines removed from the host: their storage, state and
    sockets are in the lab's /run (a tmpfs of its mount namespace), never the host's."""
    _require_engine(lab, Engine.CONTAINERD)
    containerd.ensure_daemon(lab.running, 30)
    assert not Path(containerd.SOCKET).exists()  # not on the host's /run
    assert Path(f"/proc/{lab.pid1}/root{containerd.SOCKET}").is_socket()
    unit = lab.exec(["systemctl", "show", "-P", "ControlGroup", containerd.UNIT]).stdout.strip()
    assert unit == f"/system.slice/{containerd.UNIT}"
    assert shutil.which("ctr") is not None


@pytest.mark.parametrize("engine", [Engine.PODMAN, Engine.CONTAINERD])
def test_an_annotation_with_commas_and_quotes_reaches_the_spec_whole(
    lab: LabHandle, started: list[EngineContainer], engine: Engine
) -> None:
    """CDI annotations list names with commas.  Failed before the fix: podman 4 reads
    ``--annotation`` as a CSV list (pflag StringSlice, until podman 5.0), so
    ``cdi.k8s.io/x=a/b=c,d/e=f`` reached the spec as ``cdi.k8s.io/x: a/b=c`` plus ``d/e: f``."""
    _require_engine(lab, engine)
    annotations = {
        "cdi.k8s.io/t": "example.com/gpu=ctl,example.com/fuse=fuse",
        "org.example/q": 'say "hi", twice',
    }
    record = lab.run_engine(engine, _name(engine, "crun", "csv"), annotations=annotations)
    started.append(record)
    config = json.loads(Path(f"/proc/{lab.pid1}/root{record.config_json}").read_text())
    assert {k: config["annotations"].get(k) for k in annotations} == annotations, config["annotations"]
    assert "example.com/fuse" not in config["annotations"]
