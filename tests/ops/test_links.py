"""``cgdev links`` on a scratch dev directory of real mknod'ed nodes (root): the real /dev/char is
never touched.  What is asserted is what systemd and runc will read: the link resolves (through
the kernel's own path walk, ``os.stat``) to a char node of the right numbers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from capabilities import skip_unless_ci
from cgdev.core.dev_char import CharNode, ExistingLink, LinkState, plan_links
from cgdev.ops.dev_links import check_links, create_links


def _mknod(path: Path, major: int, minor: int, kind: int = stat.S_IFCHR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o600 | kind, os.makedev(major, minor))


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        skip_unless_ci("needs root to mknod device nodes")
    d = tmp_path / "dev"
    _mknod(d / "nvidiactl", 195, 255)
    _mknod(d / "nvidia0", 195, 0)
    _mknod(d / "dri" / "card7", 226, 7)
    _mknod(d / "sdz", 8, 250, stat.S_IFBLK)  # a block node: never linked from /dev/char
    (d / "stdin").symlink_to("/proc/self/fd/0")  # a symlink is not a node
    (d / "pts").mkdir()
    _mknod(d / "pts" / "0", 136, 0)  # the pts mount is skipped
    return d


def _no_sys(tmp_path: Path) -> str:
    """A sysfs stand-in that knows no device: every node counts as one udev does not link."""
    (tmp_path / "sys" / "dev" / "char").mkdir(parents=True, exist_ok=True)
    return str(tmp_path / "sys")


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgdev", "links", *argv], capture_output=True, text=True, timeout=60
    )


def _resolves(link: Path) -> tuple[int, int]:
    st = os.stat(link)
    assert stat.S_ISCHR(st.st_mode)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def test_check_lists_missing_links_then_create_makes_them(dev: Path, tmp_path: Path) -> None:
    checks, errors = check_links(str(dev), sys_dir=_no_sys(tmp_path))
    assert errors == []
    by_link = {Path(c.link).name: c for c in checks}
    assert set(by_link) == {"195:0", "195:255", "226:7"}
    assert all(c.state is LinkState.MISSING for c in checks)
    assert by_link["226:7"].target == "../dri/card7"
    done = create_links(checks)
    assert all(c.state is LinkState.OK for c in done)
    for name, numbers in (("195:255", (195, 255)), ("195:0", (195, 0)), ("226:7", (226, 7))):
        link = dev / "char" / name
        assert link.is_symlink() and _resolves(link) == numbers
    assert os.readlink(dev / "char" / "195:255") == "../nvidiactl"
    assert not list((dev / "char").glob(".*"))  # no temporary left behind
    again, _ = check_links(str(dev), sys_dir=_no_sys(tmp_path))
    assert all(c.state is LinkState.OK for c in again)


def test_correct_link_and_non_link_file_are_never_replaced(dev: Path, tmp_path: Path) -> None:
    char = dev / "char"
    char.mkdir()
    (char / "195:0").symlink_to("../nvidia0")
    inode = os.lstat(char / "195:0").st_ino
    (char / "195:255").write_text("not a link\n")
    (char / "226:7").symlink_to("../gone")  # dangling: wrong
    checks, _ = check_links(str(dev), sys_dir=_no_sys(tmp_path))
    states = {Path(c.link).name: c.state for c in checks}
    assert states == {"195:0": LinkState.OK, "195:255": LinkState.BLOCKED, "226:7": LinkState.WRONG}
    done = {Path(c.link).name: c.state for c in create_links(checks)}
    assert done == {"195:0": LinkState.OK, "195:255": LinkState.BLOCKED, "226:7": LinkState.OK}
    assert os.lstat(char / "195:0").st_ino == inode
    assert (char / "195:255").read_text() == "not a link\n"
    assert _resolves(char / "226:7") == (226, 7)


def test_link_to_another_device_is_wrong() -> None:
    nodes = [CharNode("/d/nvidiactl", 195, 255)]
    existing = {"195:255": ExistingLink(True, "../null", (1, 3))}
    (check,) = plan_links("/d/char", nodes, existing, include_udev=False)
    assert check.state is LinkState.WRONG and check.have == "../null" and check.target == "../nvidiactl"


def test_udev_known_nodes_only_with_all(dev: Path, tmp_path: Path) -> None:
    sys_dir = _no_sys(tmp_path)
    (Path(sys_dir) / "dev" / "char" / "226:7").mkdir()  # "udev knows the DRM card"
    checks, _ = check_links(str(dev), sys_dir=sys_dir)
    assert {Path(c.link).name for c in checks} == {"195:0", "195:255"}
    checks, _ = check_links(str(dev), include_udev=True, sys_dir=sys_dir)
    assert {Path(c.link).name for c in checks} == {"195:0", "195:255", "226:7"}


def test_duplicate_numbers_choose_the_shallowest_node() -> None:
    nodes = [CharNode("/d/a/b/x", 10, 1), CharNode("/d/z", 10, 1), CharNode("/d/y", 10, 1)]
    (check,) = plan_links("/d/char", nodes, {}, include_udev=True)
    assert check.target == "../y"


def test_cdi_nodes_outside_dev_are_linked(dev: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    _mknod(other / "accel0", 511, 3)
    specs = tmp_path / "cdi"
    specs.mkdir()
    (specs / "a.json").write_text(
        json.dumps(
            {
                "cdiVersion": "0.5.0",
                "kind": "cgdev.test/accel",
                "devices": [
                    {
                        "name": "a0",
                        "containerEdits": {
                            "deviceNodes": [{"path": "/dev/accel0", "hostPath": str(other / "accel0")}]
                        },
                    }
                ],
            }
        )
    )
    checks, errors = check_links(str(dev), spec_dirs=[str(specs)], sys_dir=_no_sys(tmp_path))
    assert errors == []
    (accel,) = [c for c in checks if c.link.endswith("/511:3")]
    assert accel.target == os.path.relpath(other / "accel0", dev / "char")
    create_links(checks)
    assert _resolves(dev / "char" / "511:3") == (511, 3)


def test_cli_check_create_check(dev: Path, tmp_path: Path) -> None:
    first = _cli("--check", "--all", "--no-cdi", "--dev", str(dev))
    assert first.returncode == 1, first.stderr
    assert "missing  " + str(dev / "char" / "195:255") + " -> ../nvidiactl" in first.stdout
    made = _cli("--create", "--all", "--no-cdi", "--dev", str(dev), "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert {Path(r["link"]).name for r in doc["links"] if r["created"]} == {"195:0", "195:255", "226:7"}
    last = _cli("--all", "--no-cdi", "--dev", str(dev))
    assert last.returncode == 0 and "3 of 3 links correct" in last.stdout


def test_cli_bad_dev_is_one_line_exit_2(tmp_path: Path) -> None:
    out = _cli("--dev", str(tmp_path / "nope"), "--no-cdi")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "dev " in out.stderr and "Traceback" not in out.stderr


def test_shipped_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    root = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
    for unit in ("cgdev-links.service", "cgdev-links.path"):
        text = (root / unit).read_text().replace("/usr/local/bin/cgdev", f"{sys.executable} -m cgdev")
        text = "\n".join(line for line in text.splitlines() if not line.startswith("Documentation="))
        (tmp_path / unit).write_text(text + "\n")
    out = subprocess.run(
        [analyze, "verify", *(str(tmp_path / u) for u in ("cgdev-links.service", "cgdev-links.path"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
