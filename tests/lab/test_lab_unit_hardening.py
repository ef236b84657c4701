"""deploy/systemd/cgdev-watch.service's hardening does not break what the watcher does (issue 10
item 4: a systemd unit for plain hosts, "hardened where it does not break it").

The watcher audits, explains and repairs through ``audit``, ``explain`` and ``grant``/``revoke``.
Here the lab's real systemd runs each of them as a transient service with every sandboxing and
capability setting of the unit file (read from it, so the test follows the file), against a lab
container, and the kernel's answer from inside the container is checked after the grant and the
revoke.  The state file goes to a scratch directory (added to ReadWritePaths), never the host's.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import cgdev
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "cgdev-watch.service"
SRC = Path(cgdev.__file__).resolve().parents[1]
PREFIX = Path(sys.base_prefix)
# What makes it a long-running service, not its sandbox: left out of the transient run.
NOT_SANDBOX = {"Type", "ExecStart", "Restart", "RestartSec", "RestartPreventExitStatus", "KillSignal",
               "TimeoutStopSec", "StateDirectory", "StateDirectoryMode"}  # fmt: skip
CID = "hard-runc"


def _sandbox() -> list[tuple[str, str]]:
    settings, section = [], ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if key not in NOT_SANDBOX:
                settings.append((key, value))
    return settings


def _as_unit(lab: LabHandle, state: Path, args: list[str], drop: str = "") -> tuple[int, str]:
    props = []
    for key, value in _sandbox():
        if key == "CapabilityBoundingSet" and drop:
            value = " ".join(c for c in value.split() if c != drop)
        if key == "ReadWritePaths":
            value = f"{value} {state}"
        if key == "ProtectHome" and (PREFIX.is_relative_to("/root") or PREFIX.is_relative_to("/home")):
            # this test's interpreter lives in a home directory (an installed cgdev does not):
            # the homes stay hidden but for it
            props += ["-p", "ProtectHome=tmpfs", "-p", f"BindReadOnlyPaths={PREFIX}"]
            continue
        props += ["-p", f"{key}={value}"]
    for path in {SRC, Path(sys.prefix)}:
        if path.is_relative_to("/tmp") or path.is_relative_to("/var/tmp"):
            # a checkout under /tmp (a CI clone): PrivateTmp= gives the service an empty /tmp, so
            # the code under test is bound in read-only; an installed cgdev lives elsewhere
            props += ["-p", f"BindReadOnlyPaths={path}"]
    argv = ["systemd-run", "--wait", "--pipe", "--quiet", "--collect", *props,
            "-E", f"PYTHONPATH={SRC}", "-E", "PYTHONDONTWRITEBYTECODE=1", "-E", f"CGDEV_STATE_DIR={state}",
            sys.executable, "-m", "cgdev", *args]  # fmt: skip
    done = lab.exec(argv, check=False, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_the_sandbox_is_what_the_unit_says() -> None:
    sandbox = dict(_sandbox())
    assert sandbox["ProtectSystem"] == "strict" and sandbox["NoNewPrivileges"] == "yes"
    assert set(sandbox["CapabilityBoundingSet"].split()) == {
        "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_MKNOD", "CAP_SYS_PTRACE"}  # fmt: skip
    assert "PrivateDevices" not in sandbox and "ProtectControlGroups" not in sandbox


def test_hardened_unit_audits_grants_and_revokes(lab: LabHandle) -> None:
    # not under /tmp or /var/tmp: PrivateTmp= gives the service its own
    state = Path(tempfile.mkdtemp(prefix="cgdev-unit-test-", dir="/var/lib"))
    container = lab.run("runc-sd", name=CID)
    try:
        code, out = _as_unit(lab, state, ["audit", "-q"])
        assert code in (0, 1), out
        assert "container" in out
        code, out = _as_unit(lab, state, ["grant", CID, "c 195:255"])
        assert code == 0, out
        assert lab.probe(container)["nvidiactl"] == "ENXIO"  # allowed, the kernel says from inside
        assert (state / "entitlements.json").exists()
        code, out = _as_unit(lab, state, ["grant", CID, "c 195:254"], drop="CAP_MKNOD")
        assert code == 3 and "rolled back" in out  # the sandbox is really in force
        code, out = _as_unit(lab, state, ["revoke", CID, "c 195:255"])
        assert code == 0, out
        assert lab.probe(container)["nvidiactl"] == "EPERM"
    finally:
        lab.delete(CID)
        shutil.rmtree(state, ignore_errors=True)
