"""``cgdev-runtime``, the wrapper runtime, run as an engine runs it: a real process that really
``execv``s a runtime (here a script that records its argv), on real bundle directories.

What must hold: a create/run gets exactly the entitled devices in its config.json and then the
runtime gets the engine's arguments unchanged; every other subcommand is a plain exec that reads
nothing; hostile or malformed input is one line, and under ``--fail closed`` no exec and no change;
a refused claim is one warning line and nothing added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cgdev.runtime_wrapper.oci_cli import CliError, parse

DENY_ALL = {"allow": False, "access": "rwm"}
GPU_SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [
        {
            "name": "ctl",
            "containerEdits": {
                "env": ["GPU=ctl"],
                "deviceNodes": [
                    {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "permissions": "rw"}
                ],
            },
        }
    ],
}


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.record = tmp / "argv"
        self.fake = tmp / "fake-runtime"
        self.fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {self.record}\nexit 7\n')
        self.fake.chmod(0o755)
        self.cdi = tmp / "cdi"
        self.cdi.mkdir()
        (self.cdi / "gpu.json").write_text(json.dumps(GPU_SPEC))
        self.policy = tmp / "policy.yaml"  # absent unless a test writes it
        self.bundles = tmp / "bundles"
        self.bundles.mkdir()
        self.state = tmp / "state"  # the CDI cache's directory (adapters.cdi_cache)

    def bundle(self, name: str = "b", annotations: dict[str, str] | None = None, **extra: Any) -> Path:
        path = self.bundles / name
        path.mkdir()
        config: dict[str, Any] = {
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]},
            "linux": {"resources": {"devices": [DENY_ALL]}},
            **extra,
        }
        if annotations is not None:
            config["annotations"] = annotations
        (path / "config.json").write_text(json.dumps(config))
        return path

    def run(self, *args: str, options: tuple[str, ...] | None = None) -> subprocess.CompletedProcess[str]:
        if self.record.exists():
            self.record.unlink()
        options = self.options() if options is None else options
        return subprocess.run(
            [sys.executable, "-m", "cgdev.runtime_wrapper", *options, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CGDEV_FAIL": "closed", "CGDEV_STATE_DIR": str(self.state)},
        )

    def options(self, *more: str) -> tuple[str, ...]:
        return ("--runtime-path", str(self.fake), "--policy", str(self.policy),
                "--cdi-dir", str(self.cdi), "--bundle-dir", str(self.bundles), *more)  # fmt: skip

    def exec_argv(self) -> list[str] | None:
        """What the runtime was run with (None: it was not run)."""
        return self.record.read_text().splitlines() if self.record.exists() else None


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def config_of(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "config.json").read_text())


# -- the OCI runtime command line ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command", "bundle", "cid", "log", "fmt"),
    [
        (["create", "--bundle", "/b", "c1"], "create", "/b", "c1", None, "text"),
        (["--root", "/run/runc", "--log", "/l", "--log-format", "json", "--systemd-cgroup", "create",
          "--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s", "c1"],
         "create", "/b", "c1", "/l", "json"),
        (["--root=/r", "--log=/l", "create", "-b", "/b", "--no-pivot", "c1"],
         "create", "/b", "c1", "/l", "text"),
        (["-root", "/r", "-log", "/l", "create", "-bundle", "/b", "c1"], "create", "/b", "c1", "/l", "text"),
        (["create", "c1", "--bundle=/b"], "create", "/b", "c1", None, "text"),  # crun permutes
        (["create", "-b/b", "c1"], "create", "/b", "c1", None, "text"),
        (["--debug", "run", "-d", "--bundle", "/b", "--preserve-fds", "2", "c1"],
         "run", "/b", "c1", None, "text"),
        (["create", "c1"], "create", ".", "c1", None, "text"),
        (["--criu", "/usr/sbin/criu", "start", "c1"], "start", ".", None, None, "text"),
        (["--unknown-flag", "state", "c1"], "state", ".", None, None, "text"),
        (["--help"], None, ".", None, None, "text"),
    ],
)  # fmt: skip
def test_the_runtime_command_line(
    argv: list[str], command: str | None, bundle: str, cid: str | None, log: str | None, fmt: str
) -> None:
    inv = parse(argv)
    assert (inv.command, inv.bundle, inv.container_id, inv.log, inv.log_format) == (
        command,
        bundle,
        cid,
        log,
        fmt,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--weird", "create", "c1"], "unknown global option --weird"),
        (["create", "--bundle"], "needs a value"),
        (["create", "--bundle", "/b"], "expected one container id, got 0"),
        (["create", "--new-opt", "v", "c1"], "unknown option --new-opt may take a value"),
        (["create", "--config", "x.json", "c1"], "edits the bundle's config.json only"),
        (["--root"], "needs a value"),
    ],
)
def test_a_create_that_cannot_be_read_is_refused(argv: list[str], says: str) -> None:
    with pytest.raises(CliError, match=says):
        parse(argv)


def test_help_of_create_is_not_an_edit() -> None:
    assert not parse(["create", "--help"]).edits_bundle
    assert parse(["create", "c1"]).edits_bundle


# -- the whole process --------------------------------------------------------------------------


def test_create_adds_the_cdi_device_then_execs_the_runtime_with_the_engines_arguments(setup: Setup) -> None:
    bundle = setup.bundle(annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
    argv = [
        "--root",
        "/run/x",
        "--systemd-cgroup",
        "create",
        "--bundle",
        str(bundle),
        "--pid-file",
        "/p",
        "c1",
    ]
    done = setup.run(*argv)
    assert done.returncode == 7, done.stderr  # the fake runtime's own status: it was exec'd
    assert done.stderr == ""
    assert setup.exec_argv() == [str(setup.fake), *argv]
    config = config_of(bundle)
    assert config["linux"]["devices"] == [{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}]
    assert config["linux"]["resources"]["devices"] == [
        DENY_ALL,
        {"allow": True, "type": "c", "major": 195, "minor": 255, "access": "rw"},
    ]
    assert config["process"]["env"] == ["PATH=/bin", "GPU=ctl"]
    assert not (bundle / ".config.json.cgdev-tmp").exists()
    again = setup.run(*argv)  # a retried create: the spec is already right, nothing changes
    assert again.returncode == 7 and config_of(bundle) == config


def test_the_new_file_keeps_mode_and_owner(setup: Setup) -> None:
    bundle = setup.bundle(annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
    path = bundle / "config.json"
    os.chmod(path, 0o640)
    os.chown(path, 1234, 5678)
    done = setup.run("create", "--bundle", str(bundle), "c1")
    assert done.returncode == 7, done.stderr
    st = path.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert config_of(bundle)["linux"]["devices"]


def test_a_relative_bundle_is_the_runtimes_working_directory(setup: Setup) -> None:
    bundle = setup.bundle(annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
    argv = [sys.executable, "-m", "cgdev.runtime_wrapper", *setup.options(), "create", "c1"]
    done = subprocess.run(argv, cwd=bundle, capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert config_of(bundle)["linux"]["devices"][0]["path"] == "/dev/nvidiactl"


def test_no_entitlement_leaves_the_file_untouched(setup: Setup) -> None:
    bundle = setup.bundle(annotations={"org.example/other": "x"})
    before = (bundle / "config.json").stat()
    done = setup.run("create", "--bundle", str(bundle), "c1")
    assert done.returncode == 7 and done.stderr == ""
    after = (bundle / "config.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize(
    "command", ["start", "state", "kill", "delete", "exec", "ps", "list", "update", "--version"]
)
def test_other_subcommands_are_a_plain_exec(setup: Setup, command: str) -> None:
    argv = ["--root", "/run/x", command, "--bundle", "/nonexistent", "c1"]
    done = setup.run(*argv)
    assert done.returncode == 7 and done.stderr == ""
    assert setup.exec_argv() == [str(setup.fake), *argv]


def _hostile(setup: Setup, kind: str) -> Path:
    if kind == "malformed":
        bundle = setup.bundle()
        (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "linux": {')
    elif kind == "huge":
        bundle = setup.bundle()
        with (bundle / "config.json").open("w") as fh:
            fh.write('{"pad": "' + "x" * (5 << 20) + '"}')
    elif kind == "deep":
        bundle = setup.bundle()
        (bundle / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "not-an-object":
        bundle = setup.bundle()
        (bundle / "config.json").write_text("[1, 2]")
    elif kind == "config-symlink":
        bundle = setup.bundle()
        (bundle / "config.json").unlink()
        (bundle / "config.json").symlink_to("/etc/passwd")
    elif kind == "config-fifo":
        bundle = setup.bundle()
        (bundle / "config.json").unlink()
        os.mkfifo(bundle / "config.json")
    elif kind == "bundle-symlink":
        real = setup.bundle(annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
        bundle = setup.bundles / "link"
        bundle.symlink_to(real)
    elif kind == "symlink-on-the-way":
        setup.bundle("inner", annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
        (setup.bundles / "via").symlink_to(setup.bundles)
        bundle = setup.bundles / "via" / "inner"
    elif kind == "outside":
        bundle = setup.tmp / "elsewhere"
        bundle.mkdir()
        (bundle / "config.json").write_text(
            json.dumps({"annotations": {"cdi.k8s.io/g": "example.com/gpu=ctl"}})
        )
    elif kind == "dotdot":
        setup.bundle(annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
        bundle = setup.bundles / ".." / "bundles" / "b"
    elif kind == "bad-annotations":
        bundle = setup.bundle(annotations={"cdi.k8s.io/gpu": ["example.com/gpu=ctl"]})  # type: ignore[dict-item]
    elif kind == "conflicting-node":
        bundle = setup.bundle(
            annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"},
            linux={"devices": [{"path": "/dev/nvidiactl", "type": "c", "major": 1, "minor": 3}]},
        )
    else:
        raise AssertionError(kind)
    return bundle


HOSTILE = [
    ("malformed", "not JSON"),
    ("huge", "larger than"),
    ("deep", "nested too deeply"),
    ("not-an-object", "not a JSON object"),
    ("config-symlink", "a symlink"),
    ("config-fifo", "not a regular file"),
    ("bundle-symlink", "a symlink or not a directory on the way"),
    ("symlink-on-the-way", "a symlink or not a directory on the way"),
    ("outside", "outside the engines' state directories"),
    ("dotdot", "not a normal path"),
    ("bad-annotations", "annotations: not an object of strings"),
    ("conflicting-node", "linux.devices[0].path"),
]


@pytest.mark.parametrize(("kind", "says"), HOSTILE)
def test_hostile_input_fails_closed_with_one_line_and_no_exec(setup: Setup, kind: str, says: str) -> None:
    bundle = _hostile(setup, kind)
    target = bundle / "config.json"
    before = target.read_bytes() if target.is_file() and not target.is_symlink() else None
    log = setup.tmp / "runtime.log"
    done = setup.run("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle), "c1")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0] and lines[0].startswith("cgdev-runtime: create c1: "), lines
    assert setup.exec_argv() is None
    if before is not None:
        assert target.read_bytes() == before
    record = json.loads(log.read_text())  # the engine reads a failed create's reason here
    assert record["level"] == "error" and says in record["msg"]


@pytest.mark.parametrize(("kind", "says"), [HOSTILE[0], HOSTILE[6], HOSTILE[8]])
def test_fail_open_warns_and_runs_the_runtime_on_the_unchanged_spec(
    setup: Setup, kind: str, says: str
) -> None:
    bundle = _hostile(setup, kind)
    before = (bundle / "config.json").read_bytes()
    done = setup.run("create", "--bundle", str(bundle), "c1", options=setup.options("--fail", "open"))
    assert done.returncode == 7
    assert len(done.stderr.splitlines()) == 1 and says in done.stderr and "--fail open" in done.stderr
    assert setup.exec_argv() is not None
    assert (bundle / "config.json").read_bytes() == before


def test_a_text_log_gets_a_logrus_line(setup: Setup) -> None:
    bundle = _hostile(setup, "malformed")
    log = setup.tmp / "runtime.log"
    done = setup.run("--log", str(log), "create", "--bundle", str(bundle), "c1")
    assert done.returncode == 2
    line = log.read_text()
    assert line.startswith('time="') and ' level=error msg="cgdev-runtime: create c1: config ' in line
    assert line.count("\n") == 1


POLICY = """\
annotation:
  enabled: true
  devices:
    - device: c 10:229
      access: rw
      path: /dev/fuse
"""


@pytest.mark.parametrize(
    ("annotations", "policy", "says"),
    [
        ({"cgdev.io/devices": "b 8:0 rwm"}, None, "refused annotation"),
        ({"cgdev.io/devices": "c 1:1 rw"}, None, "refused annotation"),
        ({"cgdev.io/devices": "c 1:11 rw"}, POLICY, "refused annotation"),  # /dev/kmsg, not listed
        ({"cgdev.io/devices": "c 195:*"}, POLICY, "wildcards are never granted"),
        ({"cdi.k8s.io/x": "nowhere.example/gpu=0"}, None, "refused cdi"),
        ({"cgdev.io/devices": "c 10:229 rwm"}, POLICY, "refused annotation"),  # wider than listed
    ],
)
def test_a_refused_claim_is_one_warning_and_adds_nothing(
    setup: Setup, annotations: dict[str, str], policy: str | None, says: str
) -> None:
    if policy:
        setup.policy.write_text(policy)
    bundle = setup.bundle(annotations=annotations)
    before = config_of(bundle)
    done = setup.run("create", "--bundle", str(bundle), "c1")
    assert done.returncode == 7, done.stderr  # a refusal is not a failure: the container starts
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert config_of(bundle) == before


def test_a_policy_listed_annotation_device_is_added(setup: Setup) -> None:
    setup.policy.write_text(POLICY)
    bundle = setup.bundle(annotations={"cgdev.io/devices": "c 10:229 rw"})
    done = setup.run("create", "--bundle", str(bundle), "c1")
    assert done.returncode == 7, done.stderr
    config = config_of(bundle)
    assert {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229} in config["linux"]["devices"]
    assert config["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}  # fmt: skip


def test_a_broken_policy_fails_closed(setup: Setup) -> None:
    setup.policy.write_text("annotation: {enabled: maybe}\n")
    bundle = setup.bundle(annotations={"cgdev.io/devices": "c 10:229 rw"})
    done = setup.run("create", "--bundle", str(bundle), "c1")
    assert done.returncode == 2 and setup.exec_argv() is None
    assert len(done.stderr.splitlines()) == 1 and str(setup.policy) in done.stderr


def test_wrapper_usage_errors(setup: Setup) -> None:
    done = setup.run("state", "c1", options=("--fail", "sometimes"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--fail 'sometimes'" in done.stderr
    done = setup.run("state", "c1", options=("--runtime-path", str(setup.tmp / "nope")))
    assert done.returncode == 3 and "not an executable file" in done.stderr


def test_the_wrapper_never_execs_itself(setup: Setup, tmp_path: Path) -> None:
    """An engine may install the wrapper as ``runc`` first on PATH: the search skips it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    me = bindir / "crun"
    me.write_text(f'#!/bin/sh\nexec {sys.executable} -m cgdev.runtime_wrapper "$@"\n')
    me.chmod(0o755)
    (bindir / "runc").symlink_to(setup.fake)
    env = {**os.environ, "PATH": str(bindir)}  # crun here is the wrapper itself: runc must be chosen
    done = subprocess.run([sys.executable, "-c", "import sys; from cgdev.runtime_wrapper.entry import main; "
                           f"sys.argv[0] = {str(me)!r}; sys.exit(main())", "state", "c1"],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert setup.exec_argv() == [str(bindir / "runc"), "state", "c1"]


def test_cgdev_runtime_is_the_same_front_end(setup: Setup) -> None:
    bundle = setup.bundle(annotations={"cdi.k8s.io/gpu": "example.com/gpu=ctl"})
    argv = [sys.executable, "-m", "cgdev", "runtime", *setup.options(), "create", "-b", str(bundle), "c1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert config_of(bundle)["linux"]["devices"][0]["path"] == "/dev/nvidiactl"


PROBE_IMPORTS = """
import sys
import time
before = set(sys.modules)
from cgdev.runtime_wrapper import entry
def execv(path, argv):
    print(" ".join(sorted(set(sys.modules) - before)))
    sys.exit(0)
entry.os.execv = execv
entry.main(sys.argv[1:])
"""


@pytest.mark.parametrize("command", ["state", "create"])
def test_the_fast_paths_import_nothing_but_cgdev_and_the_json_scanner(setup: Setup, command: str) -> None:
    """A plain exec and a create with no claim load no typing, dataclasses, re, json or msgspec:
    the wrapper runs for every step of every container (bench/bench_runtime.py measures it)."""
    bundle = setup.bundle(annotations={"org.example/other": "x"})
    argv = [command, "--bundle", str(bundle), "c1"] if command == "create" else [command, "c1"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE_IMPORTS, *setup.options(), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert loaded, "nothing reported"
    extra = [m for m in loaded if not m.startswith("cgdev") and m not in ("_json", "__future__")]
    assert extra == [], extra
    assert ("cgdev.adapters.oci_bundle" in loaded) is (command == "create")


# -- the cached claim path (adapters.cdi_cache) ---------------------------------------------------


@pytest.fixture
def settled(setup: Setup) -> Setup:
    """The spec files older than the cache's settle time (it never caches a file changed within
    the last 2 s; mtime and ctime cannot be backdated)."""
    time.sleep(2.1)
    return setup


def _probe(setup: Setup, bundle: Path) -> list[str]:
    """Run a create in a child that reports the modules it loaded instead of exec'ing."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE_IMPORTS, *setup.options(), "create", "--bundle", str(bundle), "c1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CGDEV_STATE_DIR": str(setup.state)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_cached_claim_edits_exactly_as_the_full_reader_and_loads_no_msgspec(settled: Setup) -> None:
    claim = {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}
    first, second = settled.bundle("first", claim), settled.bundle("second", claim)
    cold = _probe(settled, first)  # no cache yet: the full reader, which writes it
    assert "msgspec" in cold
    assert (settled.state / "cdi-cache.json").exists()
    warm = _probe(settled, second)
    assert "msgspec" not in warm and "yaml" not in warm, " ".join(m for m in warm if m.startswith("cgdev"))
    assert "cgdev.core.cdi_plain" in warm
    assert config_of(second) == config_of(first)
    assert config_of(second)["linux"]["devices"][0]["path"] == "/dev/nvidiactl"


def test_a_changed_spec_or_a_corrupt_cache_takes_the_full_path(settled: Setup) -> None:
    claim = {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}
    _probe(settled, settled.bundle("warm", claim))
    cache = settled.state / "cdi-cache.json"
    cache.write_text(cache.read_text()[:-10])  # corrupt
    assert "msgspec" in _probe(settled, corrupt := settled.bundle("corrupt", claim))
    assert config_of(corrupt)["linux"]["devices"][0]["path"] == "/dev/nvidiactl"
    # A spec rewritten after the cache: the new minor, never the cached one.
    spec = json.loads(json.dumps(GPU_SPEC))
    spec["devices"][0]["containerEdits"]["deviceNodes"][0]["minor"] = 254
    (settled.cdi / "gpu.json").write_text(json.dumps(spec))
    changed = settled.bundle("changed", claim)
    assert "msgspec" in _probe(settled, changed)
    assert config_of(changed)["linux"]["devices"][0]["minor"] == 254


def test_a_claim_the_cache_cannot_answer_is_refused_as_before(settled: Setup) -> None:
    claim = {"cdi.k8s.io/gpu": "example.com/gpu=ctl"}
    _probe(settled, settled.bundle("warm", claim))
    bundle = settled.bundle("unknown", {"cdi.k8s.io/gpu": "example.com/gpu=ctl,nowhere.example/gpu=0"})
    done = settled.run("create", "--bundle", str(bundle), "c1")
    assert done.returncode == 7, done.stderr
    assert "refused cdi 'nowhere.example/gpu=0'" in done.stderr
    assert config_of(bundle)["linux"]["devices"][0]["path"] == "/dev/nvidiactl"
