"""Snapshots: a live hierarchy saved to one file answers the same offline, as an unprivileged user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from cgdev.errors import InputError, NotFound
from cgdev.ops import snapshot
from cgdev.ops.collect import collect
from cgdev.ops.targets import resolve
from fixtures_kernel import requires_root_bpf
from scratch_node import ScratchNode, node  # noqa: F401

NOBODY = 65534


def _cgdev(*argv: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "cgdev", *argv], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def shared_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="cgdev-snap-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@requires_root_bpf
def test_snapshot_round_trip_is_exact(node: ScratchNode) -> None:  # noqa: F811
    leaf = node.container("crio", "5a" * 32, "sd", "crun_hook")
    inspection = collect(resolve(leaf))
    assert "/dev/null" in inspection.devices  # the container's (here: the host's) device nodes
    again = snapshot.from_json(json.loads(json.dumps(snapshot.to_json(inspection))))
    assert again == inspection


@requires_root_bpf
def test_offline_explain_as_nobody_equals_live(node: ScratchNode, shared_dir: str) -> None:  # noqa: F811
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run as an unprivileged user")
    node.container("crio", "6b" * 32, "sd", "crun_hook")
    path = os.path.join(shared_dir, "snap.json")
    made = _cgdev("snapshot", "6b6b6b6b", "-o", path, "--no-systemd")
    assert made.returncode == 0, made.stderr
    os.chmod(path, 0o644)
    for device in ("/dev/null", "c 195:255"):
        live = _cgdev("explain", "6b6b6b6b", "--device", device, "--json", "--no-systemd")
        offline = _cgdev("explain", "--snapshot", path, "--device", device, "--json", user=NOBODY)
        assert offline.returncode == live.returncode, offline.stderr
        live_doc, offline_doc = json.loads(live.stdout), json.loads(offline.stdout)
        for key in ("allowed", "request", "layers", "after_reload", "denied_by", "findings"):
            assert offline_doc[key] == live_doc[key], key
    shown = _cgdev("show", "--snapshot", path, "--json", user=NOBODY)
    assert json.loads(shown.stdout)["effective"]["rules"], shown.stderr
    # and live commands really need root: the same user cannot read the kernel
    denied = _cgdev("explain", "6b6b6b6b", "--device", "/dev/null", "--no-systemd", user=NOBODY)
    assert denied.returncode in (2, 3) and len(denied.stderr.strip().splitlines()) == 1


_HEAD = '{"format": "cgdev-snapshot", "version": 1, '
_TARGET = '"target": {"spec": "x", "kind": "cgroup", "cgroup": "/x"}, '


def test_bad_snapshots_are_one_line_input_errors(tmp_path: object) -> None:
    base = str(tmp_path)
    with pytest.raises(NotFound, match=r"snapshot .*missing\.json.*: not found"):
        snapshot.read(os.path.join(base, "missing.json"))
    bad = os.path.join(base, "bad.json")
    devices = _HEAD + _TARGET + '"layers": [], "devices": {"/dev/x": %s}}'
    layer = _HEAD + _TARGET + '"layers": [{"cgroup": "/", %s}]}'
    # msgspec names the path (a dict key as [...]) and, for a wrong value of a closed set, the value
    cases = [
        ("{", "not JSON"),
        ("[]", "not a cgdev snapshot"),
        ('{"format": "cgdev-snapshot", "version": 99}', "version 99"),
        ('{"format": "cgdev-snapshot", "version": 1, "layers": []}', "malformed"),
        (_HEAD + '"target": "foo", "layers": []}', "malformed"),
        (_HEAD + _TARGET + '"layers": {"a": 1}}', "malformed"),
        (devices % '["x", 1, 3]', r"Invalid enum value 'x' - at `\$\.devices\[\.\.\.\]\[0\]`"),
        (devices % '["c", 1099511627776, 3]', r"<= 4294967295 - at `\$\.devices\[\.\.\.\]\[1\]`"),
        (devices % '["c", 1, -1]', r">= 0 - at `\$\.devices\[\.\.\.\]\[2\]`"),
        # the same checks inside a unit's device nodes; programs that are not base64; target kinds
        (
            layer % '"unit": {"unit": "u.scope", "device_nodes": {"/dev/y": ["c", true, 0]}}',
            r"Expected `int`, got `bool` - at `\$\.layers\[0\]\.unit\.device_nodes",
        ),
        (
            layer % '"programs": [{"id": 1, "xlated_b64": "!"}]',
            r"base64 .* at `\$\.layers\[0\]\.programs\[0\]\.xlated_b64`",
        ),
        (
            _HEAD + '"target": {"cgroup": "/x", "kind": "vm"}, "layers": []}',
            r"Invalid enum value 'vm' - at `\$\.target\.kind`",
        ),
    ]
    for content, pattern in cases:
        with open(bad, "w") as fh:
            fh.write(content)
        with pytest.raises(InputError, match=pattern):
            snapshot.read(bad)


def test_an_unreadable_runtime_root_is_an_environment_error(shared_dir: str) -> None:
    """Permission denied is 'needs root' (3), not 'is not a directory' (2)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to make a directory nobody may enter, and setpriv")
    private = os.path.join(shared_dir, "private")
    os.mkdir(private, 0o700)
    shut = _cgdev("explain", "1", "--device", "c 1:3", "--runtime-root", f"{private}/run", user=NOBODY)
    assert shut.returncode == 3 and "needs root" in shut.stderr, shut.stderr
    missing = _cgdev("explain", "1", "--device", "c 1:3", "--runtime-root", f"{shared_dir}/none", user=NOBODY)
    assert missing.returncode == 2 and "not a directory" in missing.stderr, missing.stderr
