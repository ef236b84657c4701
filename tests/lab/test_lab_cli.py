"""``cgdev lab`` as a user runs it: one line and the documented exit status for every failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab


def cgdev(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgdev", "lab", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0]


def test_status_json(lab: LabHandle) -> None:
    status = json.loads(cgdev("status", "--json").stdout)
    assert status["running"] is True and status["pid1"] == lab.pid1
    assert status["bus_address"] == lab.bus_address
    assert "crun" in status["runtimes"] and "runc" in status["runtimes"]


def test_run_probe_hook_delete(lab: LabHandle) -> None:
    started = cgdev("run", "runc-fs", "--name", "lab-cli", "--json")
    assert started.returncode == 0, started.stderr
    record = json.loads(started.stdout)
    assert record["runtime"] == "runc" and record["cgroup"] == "/lab-cli"
    try:
        denied = cgdev("probe", "lab-cli", "--json")
        assert denied.returncode == 1 and json.loads(denied.stdout) == {"null": "ok", "nvidiactl": "EPERM"}
        hooked = cgdev("hook-sim", "lab-cli", "195:255", "--json")
        assert hooked.returncode == 0 and json.loads(hooked.stdout)["after"]
        allowed = cgdev("probe", "lab-cli")
        assert allowed.returncode == 0 and "nvidiactl: ENXIO" in allowed.stdout
    finally:
        assert cgdev("delete", "lab-cli").returncode == 0
    assert not (lab.cgroup_root / "lab-cli").exists()


def test_run_twice_says_replaced_and_leaves_one_container(lab: LabHandle) -> None:
    first = cgdev("run", "runc-fs", "--name", "lab-replace", "--json")
    assert first.returncode == 0, first.stderr
    try:
        assert json.loads(first.stdout)["replaced"] is False
        second = cgdev("run", "runc-fs", "--name", "lab-replace")
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("replaced lab-replace (runc "), second.stdout
        ids = [c["id"] for c in json.loads(cgdev("status", "--json").stdout)["containers"]]
        assert ids.count("lab-replace") == 1
        listed = lab.exec(["runc", "list", "-q"]).stdout.split()
        assert listed.count("lab-replace") == 1
        from cgdev.lab import containers

        old_pid = json.loads(first.stdout)["pid"]
        assert containers.find_container("lab-replace").pid != old_pid
        assert lab.exec(["kill", "-0", str(old_pid)], check=False).returncode != 0  # the first one is gone
    finally:
        assert cgdev("delete", "lab-replace").returncode == 0


def test_a_replace_whose_delete_fails_keeps_the_container_listed(
    lab: LabHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's delete fails: an EnvError naming the container, which stays recorded and running."""
    from cgdev.errors import EnvError
    from cgdev.lab import containers, runtime

    container = lab.run("runc-fs", name="lab-undeletable")
    rt = lab.runtimes["runc"]

    def failing_delete(lab_, rt_, driver, container_id, timeout=20):
        return subprocess.CompletedProcess([], 1, "", "runc: simulated: device or resource busy\n")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(runtime, "delete", failing_delete)
            with pytest.raises(EnvError) as raised:
                lab.run("runc-fs", name="lab-undeletable")
        message = str(raised.value)
        assert "'lab-undeletable'" in message and "simulated: device or resource busy" in message
        assert "\n" not in message
        assert runtime.state_pid(lab.running, rt, "cgroupfs", container.id) == container.pid
        assert containers.find_container("lab-undeletable").pid == container.pid  # still recorded
        assert lab.probe(container)["null"] == "ok"  # and still running
    finally:
        lab.delete(container.id)
    assert runtime.state_pid(lab.running, rt, "cgroupfs", container.id) is None


def test_run_with_another_driver_and_a_user_config(lab: LabHandle, tmp_path: Path) -> None:
    """A config as `crun spec` writes it (relative rootfs, terminal on) runs with the lab's rootfs."""
    subprocess.run(["crun", "spec"], cwd=tmp_path, check=True, timeout=30)
    config = tmp_path / "config.json"
    spec = json.loads(config.read_text())
    spec["process"]["args"] = ["sleep", "600"]
    config.write_text(json.dumps(spec))
    done = cgdev("run", "--config", str(config), "--runtime", "crun", "--cgroup-driver", "cgroupfs", "--json")
    assert done.returncode == 0, done.stderr
    try:
        assert json.loads(done.stdout)["cgroup"] == "/lab-config"
    finally:
        cgdev("delete", "lab-config")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "no-such-preset"], ["preset", "no-such-preset"]),
        (["run", "crun-sd", "--runtime", "podman"], ["--runtime", "podman"]),
        (["run", "crun-sd", "--cgroup-driver", "v1"], ["--cgroup-driver", "v1"]),
        (["run"], ["preset name or --config"]),
        (["hook-sim", "lab-nobody"], ["lab-nobody"]),
        (["hook-sim", "lab-nobody", "195"], ["DEVICE", "195"]),
        (["scenario", "no-such-case"], ["no-such-case"]),
        (["exec"], ["give a command"]),
    ],
)
def test_bad_input_is_one_line_exit_2(lab: LabHandle, args: list[str], words: list[str]) -> None:
    assert_one_line_error(cgdev(*args), 2, *words)


@pytest.mark.parametrize(
    ("content", "words"),
    [("{not json", ["not JSON"]), ('{"process": {"args": "sh"}, "root": {"path": "x"}}', ["$.process.args"])],
)
def test_bad_config_is_one_line_exit_2(
    lab: LabHandle, tmp_path: Path, content: str, words: list[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    assert_one_line_error(cgdev("run", "--config", str(config)), 2, "--config", *words)


def test_container_systemd_cannot_start_is_one_line_exit_3(lab: LabHandle, tmp_path: Path) -> None:
    """systemd keeps only the last DeviceAllow per node (`w`), so crun's init cannot even read /dev/null."""
    from cgdev.lab import bundle

    config = bundle.base_config(Path("rootfs"))
    for access in ("r", "w"):
        config["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": access}
        )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert_one_line_error(cgdev("run", "--config", str(path), "--name", "lab-dup"), 3, "lab-dup", "failed")
    cgdev("delete", "lab-dup")


def test_scenario_json(lab: LabHandle) -> None:
    done = cgdev("scenario", "crun-sd", "--json")
    assert done.returncode == 0, done.stdout
    [result] = json.loads(done.stdout)["scenarios"]
    assert result["passed"] is True
    assert [s["observed"]["nvidiactl"] for s in result["steps"]] == ["EPERM"] * 4
