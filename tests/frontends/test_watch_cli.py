"""``cgdev watch`` as a process where systemd's bus is missing: it says so, retries, keeps watching,
and SIGTERM still ends it cleanly.  (The real bus, reloads and re-execs: tests/lab/test_lab_watch.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="the watcher reads runtime state and cgroups as root")
def test_a_missing_bus_is_reported_retried_and_not_fatal(tmp_path: Any) -> None:
    socket = tmp_path / "no-bus.sock"  # nothing listens here: a bus that is down
    argv = [sys.executable, "-m", "cgdev", "watch", "--json", "--interval", "0.2", "--bus", str(socket),
            "--runtime-root", str(tmp_path)]  # fmt: skip
    env = dict(os.environ, CGDEV_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append(json.loads(line))
            if sum(e["event"] == "bus-unreachable" for e in events) >= 1 and any(
                e["event"] == "full-scan" for e in events
            ):
                break
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    events += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 0, err
    unreachable = next(e for e in events if e["event"] == "bus-unreachable")
    assert str(socket) in unreachable["message"] and unreachable["retry_s"] > 0
    assert events[-1]["event"] == "stopped"


@pytest.mark.skipif(os.geteuid() != 0, reason="the watcher reads runtime state and cgroups as root")
def test_only_matching_nothing_is_said_once(tmp_path: Any) -> None:
    """``--only NAME`` for a name that matches nothing watched 0 containers in silence."""
    argv = [sys.executable, "-m", "cgdev", "watch", "--json", "--interval", "0.1", "--bus",
            str(tmp_path / "no-bus.sock"), "--runtime-root", str(tmp_path), "--only", "fx-no-such-ctr",
            "--full-scan-interval", "0.2"]  # fmt: skip
    env = dict(os.environ, CGDEV_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        scans = 0
        for line in proc.stdout:
            scans += json.loads(line)["event"] == "full-scan"
            if scans >= 3:  # several discoveries: the line must still be there once
                break
        proc.send_signal(signal.SIGTERM)
        _rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    said = [line for line in err.splitlines() if "--only" in line]
    assert said == [
        "cgdev watch: --only 'fx-no-such-ctr' matches no container (watching for one to appear)"
    ], err
