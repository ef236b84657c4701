"""A wrapper runtime killed while it rewrites config.json leaves the old file or the new one, whole.

The kill is real (SIGKILL, which nothing can catch) and deterministic: a child process runs the
real ``cgdev-runtime`` entry point with the os calls of ``Bundle.replace`` counted, and kills
itself just before the K-th one; K sweeps every call until the run gets through and execs the
runtime.  So every point between opening the temporary file and the rename is hit, the torn
temporary file included, and after each kill config.json must parse and equal the old or the new
document.  A run after a kill finishes the job and leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cgdev.adapters.oci_bundle import TEMP

CHILD = r"""
import os, signal, sys
from cgdev.adapters import oci_bundle

kill_at = int(sys.argv[1])
calls = 0
active = False
NAMES = ("open", "unlink", "fchown", "fchmod", "write", "fsync", "close", "rename")

def counted(name, real):
    def call(*args, **kwargs):
        global calls
        if active:
            here = calls
            calls += 1
            if here == kill_at:
                if name == "write" and len(args[1]) > 1:
                    real(args[0], bytes(args[1][: len(args[1]) // 2]))  # a torn temporary file
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

for name in NAMES:
    setattr(os, name, counted(name, getattr(os, name)))

real_replace = oci_bundle.Bundle.replace
def replace(self, config):
    global active
    active = True
    try:
        real_replace(self, config)
    finally:
        active = False
    if calls == kill_at:  # one more point: after the rename, before the runtime runs
        os.kill(os.getpid(), signal.SIGKILL)
oci_bundle.Bundle.replace = replace

from cgdev.runtime_wrapper.entry import main
sys.argv = ["cgdev-runtime", *sys.argv[2:]]
sys.exit(main())
"""

SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [
        {
            "name": "ctl",
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}]
            },
        }
    ],
}


def test_a_kill_at_every_point_of_the_rewrite_leaves_old_or_new(tmp_path: Path) -> None:
    fake = tmp_path / "runtime"
    fake.write_text("#!/bin/sh\nexit 7\n")
    fake.chmod(0o755)
    cdi = tmp_path / "cdi"
    cdi.mkdir()
    (cdi / "gpu.json").write_text(json.dumps(SPEC))
    bundle = tmp_path / "bundles" / "b"
    bundle.mkdir(parents=True)
    old_doc = {
        "ociVersion": "1.0.2",
        "annotations": {"cdi.k8s.io/gpu": "example.com/gpu=ctl"},
        "process": {"args": ["sh"], "env": ["PATH=/bin"] + [f"PAD{i}={'x' * 64}" for i in range(200)]},
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]}},
    }
    old = json.dumps(old_doc).encode()
    config = bundle / "config.json"
    args = ["--runtime-path", str(fake), "--policy", str(tmp_path / "none.yaml"), "--cdi-dir", str(cdi),
            "--bundle-dir", str(tmp_path / "bundles"), "create", "--bundle", str(bundle), "c1"]  # fmt: skip
    outcomes = []
    torn = 0
    new_doc = None
    for kill_at in range(60):
        config.write_bytes(old)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(kill_at), *args], capture_output=True, text=True, timeout=60
        )
        text = config.read_bytes()
        doc = json.loads(text)  # never torn: always parses
        if done.returncode == 7:  # got through: the runtime was exec'd on the new file
            new_doc = doc
            break
        assert done.returncode == -9, (kill_at, done.returncode, done.stderr)
        outcomes.append("old" if text == old else "new")
        leftover = bundle / TEMP
        if leftover.exists() and 0 < leftover.stat().st_size < len(text) + 1000:
            try:
                json.loads(leftover.read_bytes())
            except ValueError:
                torn += 1  # a half-written temporary file: config.json was untouched
                assert text == old
    else:
        raise AssertionError("the rewrite never completed")
    assert new_doc is not None and new_doc != old_doc
    assert new_doc["linux"]["devices"] == [
        {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}
    ]
    # unlink, open, fchown, fchmod, write, fsync, close, rename, then after the rename
    assert len(outcomes) >= 9 and torn >= 1, (outcomes, torn)
    # old until the rename, new from then on (the last point: after the rename, before the exec)
    assert outcomes == ["old"] * (len(outcomes) - 1) + ["new"], outcomes
    assert not (bundle / TEMP).exists()  # the completed run cleared the last leftover


def test_a_failed_rewrite_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """The rename cannot happen (config.json is a directory now): an error, the old state kept."""
    from cgdev.adapters.oci_bundle import Bundle
    from cgdev.errors import EnvError

    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"a": 1}')
    with Bundle(str(bundle), [str(tmp_path)]) as opened:
        doc = opened.read()
        (bundle / "config.json").unlink()
        (bundle / "config.json").mkdir()
        (bundle / "config.json" / "x").write_text("keep")
        try:
            opened.replace({**doc, "b": 2})
        except EnvError as err:
            assert "cannot be rewritten" in str(err)
        else:
            raise AssertionError("replace over a non-empty directory succeeded")
    assert (bundle / "config.json" / "x").read_text() == "keep"
    assert not (bundle / TEMP).exists()
    assert os.listdir(bundle) == ["config.json"]
