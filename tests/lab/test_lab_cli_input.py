"""``cgdev lab`` input checked before the lab is touched: container ids, and each action's help.

None of these needs the lab (or root): bad input is exit 2 with one line, whoever runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cgdev.cli import lab_cmd
from cgdev.errors import InputError
from cgdev.lab import runtime
from cgdev.lab.paths import VAR_DIR


def cgdev_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgdev", "lab", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "name", ["bad name/x", "ABSOLUTE", "..", ".hidden", "-f", "a/../b", "x\n", "", "é", "scn-crun-sd", "a+b"]
)
def test_bad_name_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, name: str) -> None:
    if name == "ABSOLUTE":
        name = str(tmp_path / "bundle")  # os.path.join(bundles, "/abs") is "/abs"
    done = cgdev_lab("run", "crun-sd", f"--name={name}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"cgdev lab: --name {name!r}: "), lines[0]
    assert not (tmp_path / "bundle").exists()
    if name and "/" not in name and name not in (".", ".."):
        assert not (VAR_DIR / "bundles" / name).exists()
    assert not (VAR_DIR / "bundles" / "bad name").exists()


@pytest.mark.parametrize("name", ["a", "lab-crun-sd", "Ctr_1.2-x-y", "9", "x" * runtime.CONTAINER_ID_MAX])
def test_ids_within_the_rule_are_accepted(name: str) -> None:
    """cgdev's own check lets these through (that crun and runc start such ids is shown by every
    lab test, whose ids all follow this rule)."""
    assert runtime.check_container_id(name) == name


def test_overlong_id_is_refused() -> None:
    with pytest.raises(InputError, match=f"at most {runtime.CONTAINER_ID_MAX} characters"):
        runtime.check_container_id("x" * (runtime.CONTAINER_ID_MAX + 1), "--name")


def _description(action: str) -> str:
    done = cgdev_lab(action, "--help")
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split("\n\n")[1].split())  # the paragraph after the usage


def test_every_action_has_its_own_description() -> None:
    descriptions = {action: _description(action) for action in lab_cmd._ACTIONS}
    lab_help = " ".join(lab_cmd.HELP.split())
    for action, text in descriptions.items():
        assert text and lab_help not in text and not text.startswith("The lab runs"), (action, text)
    assert len(set(descriptions.values())) == len(descriptions), descriptions


def test_demo_help_describes_the_demo() -> None:
    text = _description("demo")
    assert text.startswith("Show the double-filter problem")
    assert "lab-crun-sd" in text and "prediction" in text and "left running" in text
