"""``cgdev-hook`` as a runtime runs it (a child process, the state on stdin): the fast path loads
almost nothing, hostile input is one line and the failure policy and never a grant, refused
claims are one line each; ``cgdev hook install`` and the shipped hooks.d files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cgdev

SRC = os.path.dirname(os.path.dirname(cgdev.__file__))
ENTRY = "from cgdev.hook.entry import entry; entry()"  # as the cgdev-hook executable runs
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "hooks.d"


def run_hook(
    stdin: bytes, *args: str, tmp: Path, importtime: bool = False
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC, "CGDEV_STATE_DIR": str(tmp / "state")}
    flags = ["-X", "importtime"] if importtime else []
    argv = [sys.executable, *flags, "-c", ENTRY, "--policy", str(tmp / "policy.yaml"), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=60)


def state(**fields: Any) -> bytes:
    base = {
        "ociVersion": "1.0.2",
        "id": "c1",
        "status": "creating",
        "pid": os.getpid(),
        "bundle": "/nonexistent",
    }
    return json.dumps({**base, **fields}).encode()


def lines(done: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if not line.startswith("import time:")]


def test_no_entitlement_loads_neither_msgspec_nor_yaml_nor_ops(tmp_path: Path) -> None:
    done = run_hook(state(annotations={"org.example/x": "y"}), tmp=tmp_path, importtime=True)
    assert done.returncode == 0 and lines(done) == []
    loaded = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines() if "|" in line}
    assert "cgdev.hook.entry" in loaded and "cgdev.short_lived" in loaded  # the executable's whole path
    heavy = {m for m in loaded if m.split(".")[0] in ("msgspec", "yaml", "json", "re", "typing", "argparse")}
    assert heavy == set()
    # of cgdev's layers only the strict JSON reader (stdlib's C scanner; the wrapper's too)
    layered = {m for m in loaded if m.startswith(("cgdev.ops", "cgdev.core", "cgdev.adapters", "cgdev.cli"))}
    assert layered <= {"cgdev.core", "cgdev.core.strict_json"}, layered
    assert not (tmp_path / "state").exists()


HOSTILE_STDIN = [
    (b'{"id": "c1",', "not JSON"),
    (b"", "not JSON"),
    (b'{"id": "c1"} trailing', "not JSON"),
    (b'{"id": "c1", "pid": NaN}', "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b" " * (1 << 20) + b"{}", "larger than"),
    (state(id=""), "field 'id'"),
    (state(id="a\nb"), "field 'id'"),
    (state(pid=-1), "field 'pid'"),
    (state(pid="1"), "field 'pid'"),
    (state(pid=True), "field 'pid'"),
    (state(bundle=7), "field 'bundle'"),
    (state(status=None), "field 'status'"),
    (state(annotations={"cdi.k8s.io/x": 1}), "field 'annotations'"),
    (state(annotations=["cdi.k8s.io/x"]), "field 'annotations'"),
]


@pytest.mark.parametrize(("stdin", "why"), HOSTILE_STDIN, ids=range(len(HOSTILE_STDIN)))
def test_hostile_state_is_one_line_and_the_failure_policy(tmp_path: Path, stdin: bytes, why: str) -> None:
    closed = run_hook(stdin, tmp=tmp_path)
    assert closed.returncode == 2
    (line,) = lines(closed)
    assert line.startswith("cgdev-hook: ") and why in line
    opened = run_hook(stdin, "--fail", "open", tmp=tmp_path)
    assert opened.returncode == 0
    (line,) = lines(opened)
    assert "warning (--fail open, nothing granted)" in line and why in line
    assert not (tmp_path / "state").exists()


def bundle_in(tmp: Path, config: bytes | None = b'{"ociVersion": "1.0.2"}') -> Path:
    bundle = tmp / "bundles" / "c1"
    bundle.mkdir(parents=True)
    if config is not None:
        (bundle / "config.json").write_bytes(config)
    return bundle


ANNOTATED = {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}


def _outside(tmp: Path) -> str:
    other = tmp / "elsewhere"
    other.mkdir()
    (other / "config.json").write_text("{}")
    return str(other)


def _symlinked_bundle(tmp: Path) -> str:
    real = bundle_in(tmp)
    link = tmp / "bundles" / "link"
    link.symlink_to(real)
    return str(link)


def _symlinked_dir_on_the_way(tmp: Path) -> str:
    real = bundle_in(tmp)
    (tmp / "bundles" / "via").symlink_to(real.parent)
    return str(tmp / "bundles" / "via" / "c1")


def _symlinked_config(tmp: Path) -> str:
    bundle = bundle_in(tmp, None)
    secret = tmp / "secret.json"
    secret.write_text("{}")
    (bundle / "config.json").symlink_to(secret)
    return str(bundle)


def _fifo_config(tmp: Path) -> str:
    bundle = bundle_in(tmp, None)
    os.mkfifo(bundle / "config.json")
    return str(bundle)


def _huge_config(tmp: Path) -> str:
    bundle = bundle_in(tmp, None)
    with open(bundle / "config.json", "wb") as fh:
        fh.truncate(5 << 20)  # sparse: the size alone must refuse it
    return str(bundle)


BAD_BUNDLES = [
    (_outside, "outside the engines' state directories"),
    (lambda tmp: str(bundle_in(tmp)) + "/../c1", "not a normal path"),
    (lambda tmp: "bundles/c1", "not an absolute path"),
    (_symlinked_bundle, "a symlink or not a directory on the way"),
    (_symlinked_dir_on_the_way, "a symlink or not a directory on the way"),
    (_symlinked_config, "a symlink or not a directory on the way"),
    (_fifo_config, "not a regular file"),
    (_huge_config, "larger than"),
    (lambda tmp: str(bundle_in(tmp, b'{"ociVersion": ')), "not JSON"),
    (lambda tmp: str(bundle_in(tmp, b"[]")), "not a JSON object"),
    (lambda tmp: str(bundle_in(tmp, None)), "cannot open"),
]


@pytest.mark.parametrize(("make", "why"), BAD_BUNDLES, ids=range(len(BAD_BUNDLES)))
def test_hostile_bundle_is_one_line_and_never_a_grant(tmp_path: Path, make: Any, why: str) -> None:
    bundle = make(tmp_path)
    allowed = ("--bundle-dir", str(tmp_path / "bundles"))
    closed = run_hook(state(bundle=bundle, annotations=ANNOTATED), *allowed, tmp=tmp_path)
    assert closed.returncode == 2, closed.stderr
    (line,) = lines(closed)
    assert line.startswith("cgdev-hook: c1: ") and why in line, line
    opened = run_hook(state(bundle=bundle, annotations=ANNOTATED), *allowed, "--fail", "open", tmp=tmp_path)
    assert opened.returncode == 0 and len(lines(opened)) == 1
    assert not (tmp_path / "state").exists()


def test_refused_claims_are_one_line_each_and_no_grant(tmp_path: Path) -> None:
    bundle = bundle_in(tmp_path)
    (tmp_path / "cdi").mkdir()
    annotations = {"cdi.k8s.io/a": "example.com/gpu=nope,/dev/mem", "cgdev.io/devices": "c 1:1 rw, b 8:0 rwm"}
    dirs = ("--bundle-dir", str(tmp_path / "bundles"), "--cdi-dir", str(tmp_path / "cdi"))
    done = run_hook(state(bundle=str(bundle), annotations=annotations), *dirs, tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    got = lines(done)
    assert len(got) == 4, got
    for claim in ("example.com/gpu=nope", "/dev/mem", "c 1:1 rw", "b 8:0 rwm"):
        assert sum(f"{claim!r}" in line for line in got) == 1
    assert not (tmp_path / "state").exists()


def test_broken_policy_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("annotation:\n  enabled: maybe\n")
    bundle = bundle_in(tmp_path)
    done = run_hook(state(bundle=str(bundle), annotations={"cgdev.io/devices": "c 195:255"}), tmp=tmp_path)
    assert done.returncode == 2
    (line,) = lines(done)
    assert "policy.yaml: annotation.enabled" in line


def test_usage_errors_are_exit_2_whatever_the_policy(tmp_path: Path) -> None:
    for args in (("--fail", "sideways"), ("--bogus",), ("--policy",)):
        done = run_hook(state(), *args, "--fail=open", tmp=tmp_path)
        assert done.returncode == 2, args
        assert "usage: cgdev-hook" in done.stderr.decode()


def test_cli_hook_runs_the_same_hook(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-m", "cgdev", "hook", "--policy", str(tmp_path / "p.yaml")],
                          input=b"{oops", capture_output=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stderr.decode().count("\n") == 1
    assert "not JSON" in done.stderr.decode()


@pytest.mark.parametrize("variant", ["annotations", "always"])
def test_install_writes_a_hooks_d_file_atomically(tmp_path: Path, variant: str) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    hook = tmp_path / "bin" / "cgdev-hook"
    hook.parent.mkdir()
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    argv = [sys.executable, "-m", "cgdev", "hook", "install", "--dir", str(hooks), "--variant", variant,
            "--hook-path", str(hook), "--fail", "open"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert os.listdir(hooks) == ["cgdev-hook.json"]
    document = json.loads((hooks / "cgdev-hook.json").read_text())
    assert document["version"] == "1.0.0" and document["stages"] == ["createRuntime", "poststart"]
    assert document["hook"]["args"] == ["cgdev-hook", "--fail", "open"]
    assert ("always" in document["when"]) == (variant == "always")
    missing = subprocess.run(
        [*argv[:6], str(tmp_path / "no"), *argv[7:]], capture_output=True, text=True, env=env, timeout=60
    )
    assert missing.returncode == 2 and "--dir" in missing.stderr and missing.stderr.count("\n") == 1
    # a hook path the engine could not run would make it skip the hook silently: refused
    for bad in (str(tmp_path / "nope"), str(hooks)):
        refused = subprocess.run(
            [*argv[:9], "--hook-path", bad], capture_output=True, text=True, env=env, timeout=60
        )
        assert refused.returncode == 2 and "--hook-path" in refused.stderr, refused.stderr
    # --stage names the one stage the file runs the hook at (its log would name the wrong one else)
    staged = subprocess.run(
        [*argv, "--stage", "poststart"], capture_output=True, text=True, env=env, timeout=60
    )
    assert staged.returncode == 0, staged.stderr
    assert json.loads((hooks / "cgdev-hook.json").read_text())["stages"] == ["poststart"]


def test_shipped_hooks_d_files_match_what_install_writes() -> None:
    from cgdev.hook.install import hooks_d

    for name, variant in (("cgdev-hook.json", "annotations"), ("cgdev-hook-always.json", "always")):
        shipped = json.loads((DEPLOY / name).read_text())
        assert shipped == hooks_d(variant, "/usr/local/bin/cgdev-hook", ["--fail", "closed"]), name


def test_annotation_regex_matches_the_keys_the_hook_reads() -> None:
    import re

    from cgdev.hook.install import ANNOTATION_KEYS

    pattern = re.compile(ANNOTATION_KEYS)
    assert pattern.match("cdi.k8s.io/nvidia-gpu_0") and pattern.match("cgdev.io/devices")
    assert not pattern.match("cdi.k8s.io/") and not pattern.match("xcdi.k8s.io/a")
    assert not pattern.match("cgdev.io/devicesx")


def test_a_policy_with_image_entries_takes_the_slow_path_without_annotations(tmp_path: Path) -> None:
    """Image and namespace entries grant without any annotation, so the fast path must not exit."""
    (tmp_path / "policy.yaml").write_text("images:\n  - image: 'x/*'\n    devices: [{device: c 195:255}]\n")
    done = run_hook(state(annotations={"io.kubernetes.cri.image-name": "x/y"}), tmp=tmp_path)
    assert done.returncode == 2
    (line,) = lines(done)
    assert "outside the engines' state directories" in line  # the bundle was read: the slow path ran
    (tmp_path / "policy.yaml").write_text("annotation:\n  enabled: false\n")
    assert run_hook(state(), tmp=tmp_path).returncode == 0  # no image/namespace entries: the fast path
