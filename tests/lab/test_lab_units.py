"""Parts of the lab that need no root and no running lab: presets, parsing, the hook's program."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cgdev.core import isa
from cgdev.errors import EnvError, InputError
from cgdev.lab import bundle, crun_build, hooksim, install, instance, presets
from cgdev.lab.paths import StateFiles, lab_timeout
from cgdev.lab.table import format_table


def test_presets_cover_the_eight_reference_cases() -> None:
    crun_181 = {"crun181-fs", "crun181-sd"}
    crun = {"crun-fs", "crun-sd", "crun-sd-nosub", "crun-sd-allow"}
    crun_pin = {"crun-pin-sd", "crun-pin-sd-allow"}  # crun >= 1.23 under systemd (BPFProgram)
    runc = {"runc-fs", "runc-sd", "runc-sd-allow"}
    assert set(presets.PRESETS) == crun_181 | crun | crun_pin | runc
    assert {p.name for p in presets.PRESETS.values() if p.hook_fails} == crun_pin
    assert {p.name for p in presets.PRESETS.values() if p.dev_char_checked} == {"runc-sd-allow"}
    for preset in presets.PRESETS.values():
        assert len(preset.nvidiactl) == len(presets.STEPS)
        # set-property needs a scope: it is "not run" exactly for the cgroupfs driver
        assert (preset.nvidiactl[3] is None) == (preset.driver == "cgroupfs")
    # the double filter: crun >= 1.18 with systemd stays denied after the hook
    assert presets.get("crun-sd").nvidiactl == ("EPERM",) * 4


def test_a_spec_device_runc_skips_is_expected_lost_at_the_next_reload() -> None:
    """runc 1.1.5 (checks /dev/char) vs 1.3.6 on systemd 262 (does not): the timeline follows."""
    preset = presets.get("runc-sd-allow")
    allowed, denied = presets.ALLOWED, presets.DENIED
    assert presets.expectation(preset, "262.1-1", True) == (allowed,) * 4
    assert presets.expectation(preset, "252.39-1", False) == (allowed, allowed, denied, denied)
    # systemd 257's daemon-reload re-applies nothing: the loss waits for set-property
    assert presets.expectation(preset, "257.13-1", False) == (allowed, allowed, allowed, denied)
    assert presets.spec_device_kept(preset, "1.3.6", "262.1-1") is True
    assert presets.spec_device_kept(preset, "1.3.6", None) is None  # unknown stays unknown
    if not Path("/dev/char/195:255").exists() and not Path("/sys/dev/char/195:255").exists():
        assert presets.spec_device_kept(preset, "1.1.5", "252.39-1") is False
    assert presets.spec_device_kept(presets.get("runc-sd"), "1.1.5", None) is True  # no spec device


def test_unknown_preset_is_an_input_error_naming_it() -> None:
    with pytest.raises(InputError, match="'nosuch' is unknown"):
        presets.select(["crun-sd", "nosuch"])


def _slot(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def test_hook_prefix_is_libnvidia_containers_shape() -> None:
    """Written independently as raw opcodes: 16-bit type load, JMP32 register compare, w0 = 1."""
    expected = b"".join(
        [
            _slot(0x69, 2, 1, 0),  # r2 = *(u16 *)(r1 + 0)
            _slot(0x61, 3, 1, 0),
            _slot(0x74, 3, imm=16),
            _slot(0x61, 4, 1, 4),
            _slot(0x61, 5, 1, 8),
            _slot(0x55, 2, off=7, imm=2),
            _slot(0xBC, 2, 3),
            _slot(0x54, 2, imm=6),
            _slot(0x5E, 2, 3, off=4),  # if w2 != w3 (JMP32, register)
            _slot(0x55, 4, off=3, imm=195),
            _slot(0x55, 5, off=2, imm=255),
            _slot(0xB4, 0, imm=1),
            _slot(0x95),
        ]
    )
    assert isa.encode(hooksim.allow_prefix(195, 255)) == expected


@pytest.mark.parametrize("text", ["195", "195:", "a:b", "195:-1", "4096:0", "b 8:0"])
def test_bad_device_is_rejected(text: str) -> None:
    with pytest.raises(InputError, match="DEVICE"):
        hooksim.parse_device(text)


def test_device_spellings() -> None:
    assert hooksim.parse_device("195:255") == (195, 255)
    assert hooksim.parse_device("c 195:0") == (195, 0)


def test_apt_mirror_from_one_line_and_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian/\nSuites: bookworm\n"
    )
    assert crun_build.apt_mirror(tmp_path) == "http://mirror.invalid/debian"
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://other.invalid/debian bookworm main\n"
    )
    assert crun_build.apt_mirror(tmp_path) == "http://other.invalid/debian"


def test_no_mirror_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="no Debian archive"):
        crun_build.apt_mirror(tmp_path)


def test_debian_release(tmp_path: Path) -> None:
    (tmp_path / "v").write_text("12.11\n")
    assert install.debian_major(tmp_path / "v") == 12
    (tmp_path / "v").write_text("trixie/sid\n")
    assert install.debian_major(tmp_path / "v") == 13
    with pytest.raises(EnvError, match="Debian 12 or 13"):
        install.debian_major(tmp_path / "missing")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"process": ', "not JSON"),
        ('{"process": {"args": "sleep"}, "root": {"path": "r"}}', r"\$\.process\.args"),
        ('{"process": {"args": ["sleep"]}}', "root"),
        ('{"process": {"args": []}, "root": {"path": "r"}}', "process.args is empty"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        bundle.load_config(path, tmp_path)


def test_relative_root_gets_the_lab_rootfs(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"process": {"args": ["true"], "terminal": True}, "root": {"path": "rootfs"}}))
    config = bundle.load_config(path, Path("/lab/rootfs"))
    assert config["root"] == {"path": "/lab/rootfs", "readonly": True}
    assert config["process"]["terminal"] is False


def test_base_config_has_the_node_but_no_rule_for_it() -> None:
    config = bundle.base_config(Path("/r"))
    assert {("major", 195), ("minor", 255)} <= config["linux"]["devices"][0].items()
    assert config["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    bundle.static_allow(config, 195, 255)
    assert config["linux"]["resources"]["devices"][-1]["major"] == 195


def test_table() -> None:
    table = format_table(["x", "long header"], [["1", "2"]]).splitlines()
    assert table[0] == "x  long header" and table[2] == "1  2"


def test_timeout_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CGDEV_LAB_TIMEOUT", "7.5")
    assert lab_timeout() == 7.5
    monkeypatch.setenv("CGDEV_LAB_TIMEOUT", "soon")
    with pytest.raises(InputError, match="CGDEV_LAB_TIMEOUT"):
        lab_timeout()


def test_no_state_means_no_lab(tmp_path: Path) -> None:
    assert instance.find_lab(StateFiles(tmp_path)) is None
    (tmp_path / "pid1").write_text("1\n")  # a pid that is not our systemd in our cgroup
    (tmp_path / "cgroup-root").write_text("/sys/fs/cgroup/cgdev-lab\n")
    assert instance.find_lab(StateFiles(tmp_path)) is None


def test_cli_help_and_usage_errors() -> None:
    run = [sys.executable, "-m", "cgdev", "lab"]
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "hook-sim" in helped.stdout and "CGDEV_LAB_TIMEOUT" in helped.stdout
    listed = subprocess.run([*run, "scenario", "--list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "crun-sd-nosub" in listed.stdout
    bad = subprocess.run([*run, "frobnicate"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_runtime_names_and_the_crun_1_8_alias() -> None:
    from cgdev.lab.containers import runtime_named
    from cgdev.lab.runtime import Runtime

    old = Runtime("crun-1.8.1", "/usr/bin/crun", "1.8.1")
    assert runtime_named("crun-1.8", {"crun-1.8.1": old}) is old
    assert runtime_named("crun-1.8.1", {"crun-1.8.1": old}) is old
    with pytest.raises(InputError, match="--runtime: 'podman'"):
        runtime_named("podman", {})
    with pytest.raises(EnvError, match="not available"):
        runtime_named("crun-1.8", {})
