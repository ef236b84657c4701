"""Stack roots without building one: the mirror read from apt's configuration, the stamp's rules, names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from cgdev.errors import EnvError, InputError
from cgdev.lab import roots
from cgdev.lab.paths import (
    CGROUP_NAME,
    LOCK_FILE,
    STATE_DIR,
    VAR_DIR,
    Stack,
    check_stack,
    current_stack,
    using_stack,
)


def _apt(tmp_path: Path, sources: str = "", listing: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir()
    if sources:
        (tmp_path / "sources.list.d" / "debian.sources").write_text(sources)
    if listing:
        (tmp_path / "sources.list").write_text(listing)
    return tmp_path


def test_the_mirror_is_the_first_non_security_deb_source_of_a_deb822_file(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        sources="Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment: with a colon\nURIs: http://archive.example/debian\n"
        "Suites: bookworm bookworm-updates\n",
    )
    assert roots.mirror_uri(apt) == "http://archive.example/debian"


def test_the_mirror_is_read_from_a_one_line_sources_list(tmp_path: Path) -> None:
    apt = _apt(tmp_path, listing="deb http://security.example/x bookworm-security main\n"
               "deb [signed-by=/k.gpg] http://archive.example/debian bookworm main\n")  # fmt: skip
    assert roots.mirror_uri(apt) == "http://archive.example/debian"


def test_no_mirror_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="debootstrap needs a mirror"):
        roots.mirror_uri(_apt(tmp_path))


def test_a_root_is_reused_only_with_a_complete_stamp_and_its_binaries(tmp_path: Path) -> None:
    for proof in roots.ROOT_PACKAGES.values():
        (tmp_path / proof).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / proof).write_text("")
    packages = {name: "1.0-1" for name in roots.ROOT_PACKAGES}
    stamp = roots.RootStamp("sid", "http://archive.example/debian", "2026-01-01T00:00:00Z", 1.0, packages)
    assert roots.read_stamp(tmp_path) is None  # no stamp: rebuilt
    (tmp_path / roots.STAMP_NAME).write_bytes(msgspec.json.encode(stamp))
    assert roots.read_stamp(tmp_path) == stamp
    incomplete = roots.RootStamp(**{**msgspec.structs.asdict(stamp), "packages": {"systemd": "262.1-1"}})
    (tmp_path / roots.STAMP_NAME).write_bytes(msgspec.json.encode(incomplete))
    assert roots.read_stamp(tmp_path) is None  # a package's version missing: rebuilt
    (tmp_path / roots.STAMP_NAME).write_bytes(msgspec.json.encode(stamp))
    (tmp_path / roots.ROOT_PACKAGES["crun"]).unlink()
    assert roots.read_stamp(tmp_path) is None  # a binary gone: rebuilt


def test_the_host_stack_keeps_todays_names_and_a_suite_gets_its_own() -> None:
    host, sid = Stack(), check_stack("sid")
    assert (host.state_dir, host.var_dir, host.lock_file, host.cgroup_name, host.root_dir) == (
        STATE_DIR,
        VAR_DIR,
        LOCK_FILE,
        CGROUP_NAME,
        None,
    )
    assert sid.cgroup_name == "cgdev-lab-sid" and sid.root_dir == VAR_DIR / "roots" / "sid"
    assert len({host.state_dir, sid.state_dir}) == len({host.var_dir, sid.var_dir}) == 2
    assert len({host.lock_file, sid.lock_file}) == 2
    assert current_stack() == host
    with using_stack("sid"):
        assert current_stack() == sid
    assert current_stack() == host
    with pytest.raises(InputError, match="--stack: 'jessie'"):
        check_stack("jessie")


def test_an_unknown_stack_on_the_command_line_is_exit_2_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cgdev", "lab", "status", "--stack", "jessie"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--stack: 'jessie'" in done.stderr
