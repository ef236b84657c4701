"""Every kind of malformed rule input the core issue lists, through the real command line: one line
on stderr naming the field and the value, exit status 2, nothing on stdout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = '{{"linux": {{"resources": {{"devices": [{entry}]}}}}}}'

ARGUMENT_CASES = [
    ("allow x 1:3 rw", ['type "x"']),
    ("allow c 1:3 rwx", ['access "rwx"', '"x"']),
    ("allow c -1:3 rw", ['major "-1"']),
    ("allow c 4294967296:3 rw", ['major "4294967296"']),
    ("c 1:4294967296 r", ['minor "4294967296"']),
    ("char-pts rwz", ['access "rwz"']),
]
CONFIG_CASES = [
    (
        '{"allow": "false", "type": "c", "major": 1, "minor": 3, "access": "rw"}',
        ["devices[0].allow", '"false"'],
    ),
    ('{"allow": true, "type": "c", "major": "1", "access": "rw"}', ["devices[0].major", '"1"']),
    ('{"allow": true, "type": "z"}', ["devices[0].type", "z"]),
    ('{"allow": true, "type": "c", "major": -2}', ["devices[0].major", "-2"]),
    ('{"allow": true, "type": "c", "minor": 4294967296}', ["devices[0].minor", "4294967296"]),
    ('{"allow": true, "access": "rwq"}', ["devices[0].access", "q"]),
]


def _compile(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgdev", "compile", *argv], capture_output=True, text=True, timeout=60
    )


def _assert_one_line(done: subprocess.CompletedProcess[str], words: list[str]) -> None:
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(("rule", "words"), ARGUMENT_CASES, ids=[c[0] for c in ARGUMENT_CASES])
def test_bad_rule_argument(rule: str, words: list[str]) -> None:
    _assert_one_line(_compile(rule), words)


@pytest.mark.parametrize(
    ("entry", "words"), CONFIG_CASES, ids=[c[1][0] + " " + c[1][-1] for c in CONFIG_CASES]
)
def test_bad_oci_config_entry(tmp_path: Path, entry: str, words: list[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(CONFIG.format(entry=entry))
    _assert_one_line(_compile("--config", str(config)), words)


def test_malformed_json(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"linux":')
    _assert_one_line(_compile("--config", str(config)), ["--config", str(config)])


def test_rule_file_errors_say_file_and_line(tmp_path: Path) -> None:
    """Issue 12 item 12: ``FILE:5: ...`` where it said "rule 5"."""
    rules = tmp_path / "rules.txt"
    rules.write_text("# devices\nc 1:3 rwm\n\nallow c 5:1 r\nc 1:3 rwx\n")
    _assert_one_line(_compile("--rules", str(rules)), [f"{rules}:5: ", 'access "rwx"'])


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("config.json", '{"linux":{}}', ["no linux.resources", "no device rules"]),
        ("empty.txt", "", ["no rules"]),
        (
            "config.json",
            CONFIG.format(entry='{"allow": true, "tpye": "c", "major": 1, "access": "r"}'),
            ['unknown key "tpye"', 'did you mean "type"'],
        ),
    ],
)
def test_silent_rule_lists_warn(tmp_path: Path, name: str, content: str, words: list[str]) -> None:
    """Issue 12 item 11: these compiled silently (to deny-all, or to a type-``a`` rule)."""
    path = tmp_path / name
    path.write_text(content)
    done = _compile("--config" if name.endswith(".json") else "--rules", str(path))
    assert done.returncode == 0, done.stderr
    warning = next(line for line in done.stderr.splitlines() if line.startswith("warning: "))
    for word in words:
        assert word in warning, (word, warning)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["explain", "1", "--device", "c 1:3", "--systemd-root", "/nope"], ["--systemd-root", "/nope"]),
        (["explain", "1", "--device", "c 1:3", "--systemd-fs-root", "/nope"], ["--systemd-fs-root", "/nope"]),
        (["show", "1", "--systemd-root", ""], ["--systemd-root", "''"]),
        (["audit", "--root", ""], ["--root", "''", "empty"]),
    ],
)
def test_wrong_systemd_and_root_flags_are_refused(argv: list[str], words: list[str]) -> None:
    """Issue 12 item 10: these were accepted silently (``--root ''`` audited the whole tree)."""
    done = subprocess.run(
        [sys.executable, "-m", "cgdev", *argv, "--no-systemd"], capture_output=True, text=True, timeout=60
    )
    _assert_one_line(done, words)
