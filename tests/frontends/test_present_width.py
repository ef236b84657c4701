"""Human views at a fixed width and with every styling switch (issue 12 item 17).

Rendered with rich consoles of a fixed width into a buffer, and through the CLI in-process (a
terminal simulated by the stream's isatty) and once as a real piped child with COLUMNS=80: no line
of a fix command is cut, long cgroup paths keep their start and end, NO_COLOR and --color=never
leave no escape sequence (bold and italic included), --color=always styles a pipe, -q prints one
line; audit stays one line per container within 100 columns unless --wide.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from cgdev.core.rules import RuleList, parse_rule_text
from cgdev.ops.audit import AuditResult, AuditRow
from cgdev.ops.compile_rules import compile_rules
from cgdev.ops.explain import explain_device
from cgdev.ops.findings import Finding, FindingCode
from cgdev.ops.layers import Inspection, Layer, ProgramRecord, UnitRecord
from cgdev.ops.show import show
from cgdev.ops.snapshot import dumps
from cgdev.ops.targets import Target, TargetKind
from cgdev.present.human import make_console, print_audit, print_explanation, print_show, short_middle
from cli_inprocess import run_main

POD = (
    "/kubepods.slice/kubepods-besteffort.slice/"
    "kubepods-besteffort-pod0f3c4a5e_1b2c_4d5e_8f90_123456789abc.slice"
)
SCOPE_NAME = "crio-" + "0123456789abcdef" * 4 + ".scope"
SCOPE = f"{POD}/{SCOPE_NAME}"
COMMAND = f"systemctl set-property --runtime {SCOPE_NAME} DeviceAllow='/dev/char/195:255 rw'"
GRANT = f"cgdev grant {SCOPE_NAME} 'c 195:255' --access rw"
ESC = "\x1b["


def _program(text: str, shape: str) -> bytes:
    return compile_rules(RuleList(parse_rule_text(text)), shape).raw


def _inspection() -> Inspection:
    """A crio container under systemd + crun, as the review's node had it: systemd's filter on
    the scope denies c 195:255, crun's on the container sub-cgroup allows it."""
    unit = UnitRecord(
        SCOPE_NAME,
        control_group=SCOPE,
        device_policy="strict",
        device_allow=(("/dev/char/1:3", "rwm"), ("/dev/char/1:5", "rwm"), ("char-pts", "rw")),
    )
    systemd = _program("c 1:3 rwm\nc 1:5 rwm\nc 136:* rw", "systemd")
    crun = _program("deny a\nallow c 1:3 rwm\nallow c 136:* rw\nallow c 195:255 rw", "crun")
    layers = (
        Layer("/"),
        Layer(SCOPE, (ProgramRecord(41, "sd_devices", "ab" * 8, 0, systemd),), unit),
        Layer(SCOPE + "/container", (ProgramRecord(42, "crun", "cd" * 8, 0, crun),)),
    )
    target = Target("0123456789ab", TargetKind.CONTAINER, SCOPE + "/container", runtime="crun")
    proc = "Character devices:\n  1 mem\n136 pts\n195 nvidia\n"
    return Inspection(target, layers, proc_devices=proc, systemd="ok", systemd_version="252")


def _explanation():  # type: ignore[no-untyped-def]
    from cgdev.core.model import ACC_R, ACC_W

    return explain_device(_inspection(), "c 195:255", ACC_R | ACC_W, live=False)


def _render(draw, width: int, color: str = "never") -> str:  # type: ignore[no-untyped-def]
    buffer = io.StringIO()
    draw(make_console(color, width=width, file=buffer))
    return buffer.getvalue()


def _assert_fits(text: str, width: int) -> None:
    """Every line within ``width`` cells, except a command line, which must be whole."""
    for line in text.splitlines():
        if line.lstrip().startswith("$ "):
            assert line.strip() in (f"$ {COMMAND}", f"$ {GRANT}"), line
            continue
        assert cell_len(line) <= width, line


@pytest.mark.parametrize("width", [80, 100])
def test_explain_at_a_fixed_width(width: int) -> None:
    text = _render(lambda c: print_explanation(_explanation(), c), width)
    _assert_fits(text, width)
    assert any(line.strip() == f"$ {COMMAND}" for line in text.splitlines())
    # both layers are told apart: their lines end differently, and keep the slice they start with
    layer_lines = [line for line in text.splitlines() if "/kubepods.slice" in line and "──" in line]
    assert len({line.rstrip() for line in layer_lines}) >= 2, layer_lines
    assert any(line.rstrip().endswith(".scope") for line in layer_lines)
    assert any(line.rstrip().endswith("/container") for line in layer_lines)


@pytest.mark.parametrize("width", [80, 120])
def test_show_at_a_fixed_width(width: int) -> None:
    text = _render(lambda c: print_show(show(_inspection()), c), width)
    for line in text.splitlines():
        if not line.lstrip().startswith("$ "):
            assert cell_len(line) <= width, line
    assert "allow c 136:* rw" in text


def test_short_middle_keeps_both_ends() -> None:
    short = short_middle(SCOPE + "/container", 40)
    assert len(short) <= 40 and short.startswith("/kubepods.slice/") and short.endswith("/container")
    assert short_middle("/a/b", 40) == "/a/b"
    cut = short_middle(SCOPE, 30)
    assert len(cut) == 30 and cut.startswith("/kubepods") and cut.endswith(".scope") and "…" in cut


def test_styling_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(_inspection()))
    argv = ["explain", "--snapshot", str(snap), "--device", "c 195:255"]
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    styled = run_main(argv, tty=True)
    assert styled.code == 1 and re.search(r"\x1b\[1[;m]", styled.out)  # bold (DENY, finding codes)
    assert re.search(r"\x1b\[[0-9;]*3m", styled.out)  # italic (a fix's trade-off)
    assert ESC not in run_main([*argv, "--color=never"], tty=True).out
    assert ESC not in run_main(argv).out  # piped
    assert ESC in run_main([*argv, "--color=always"]).out  # piped, styled on request
    monkeypatch.setenv("NO_COLOR", "1")
    plain = run_main(argv, tty=True)
    assert plain.code == 1 and ESC not in plain.out and "verdict now: DENY" in plain.out
    assert ESC not in run_main(["show", "--snapshot", str(snap)], tty=True).out


def test_quiet_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(_inspection()))
    explained = run_main(["explain", "--snapshot", str(snap), "--device", "c 195:255", "-q"])
    assert explained.code == 1 and explained.out == "verdict now: DENY\n", explained.out
    allowed = run_main(["explain", "--snapshot", str(snap), "--device", "c 1:3", "-q"])
    assert allowed.code == 0 and allowed.out == "verdict now: allow\n"
    shown = run_main(["show", "--snapshot", str(snap), "-q"])
    assert shown.out.count("\n") == 1 and "findings: double-filter" in shown.out, shown.out


def test_cli_piped_with_columns_80(tmp_path: Path) -> None:
    """The real path: a child process, stdout a pipe, COLUMNS=80."""
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(_inspection()))
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "cgdev", "explain", "--snapshot", str(snap), "--device", "c 195:255"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert ESC not in done.stdout
    _assert_fits(done.stdout, 80)
    assert any(line.strip() == f"$ {COMMAND}" for line in done.stdout.splitlines())


def _audit() -> AuditResult:
    rows = []
    codes = [FindingCode.DOUBLE_FILTER, FindingCode.NEED_DAEMON_RELOAD, FindingCode.OPAQUE_PROGRAM]
    for i in range(6):
        cid = f"{i:02d}" + "0123456789abcdef" * 4
        cgroup = f"{POD}/crio-{cid[:64]}.scope/container"
        target = Target(cid, TargetKind.CONTAINER, cgroup, runtime="crun", container_id=cid)
        findings = tuple(Finding(code, "x", ()) for code in codes[: i % 4])
        rows.append(AuditRow(target, 2, 0, findings))
    return AuditResult(tuple(rows), 50, 12, 12, 3, 2, 0.01, "ok")


def test_audit_is_one_line_per_container_in_100_columns() -> None:
    result = _audit()
    text = _render(lambda c: print_audit(result, c), 100)
    lines = text.splitlines()
    assert all(cell_len(line) <= 100 for line in lines), text
    for row in result.rows:
        mine = [line for line in lines if (row.target.container_id or "")[:12] in line]
        assert len(mine) == 1, text
        assert mine[0].rstrip().split()[-1] != "", mine
    assert "double-filter, need-daemon-reload, opaque-program" in text
    wide = _render(lambda c: print_audit(result, c, wide=True), 100_000)
    assert result.rows[0].target.cgroup in wide


def test_audit_piped_cli_default_is_100_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make_console`` as the audit command builds it for a pipe: 100 columns, not the 290 of
    the review; --wide keeps every column whole."""
    monkeypatch.delenv("COLUMNS", raising=False)
    from cgdev.present.human import AUDIT_PIPE_WIDTH

    buffer = io.StringIO()
    print_audit(_audit(), make_console(width=AUDIT_PIPE_WIDTH, file=buffer))
    assert max(cell_len(line) for line in buffer.getvalue().splitlines()) <= 100


def test_audit_quiet_is_one_line_however_long() -> None:
    """Failed before the fix: a lab with many findings and missing links made the summary longer
    than the pipe's 100 columns and rich folded it onto a second line."""
    from cgdev.ops.spec_devices import MissingLink
    from cgdev.present.human import audit_summary

    result = _audit()
    links = tuple(MissingLink(f"/dev/char/195:{m}", f"c 195:{m}", ("x",), "1.1.5", True) for m in range(3))
    long = AuditResult(result.rows, 50, 12, 12, 3, 2, 0.01, "ok", ("e1", "e2"), links)
    text = _render(lambda c: print_audit(long, c, quiet=True), 40)
    assert text.splitlines() == [audit_summary(long)], text


def test_audit_headers_stay_whole_and_wide_ids_too() -> None:
    """Review: piped, long names and findings cut the headers ("runti…", "findin…"); --wide cut
    the container ids to 12 with no ellipsis although its help says every column whole."""
    result = _audit()
    long_named = tuple(
        AuditRow(Target(f"name-{i}", TargetKind.CONTAINER, row.target.cgroup, runtime="crun",
                        container_id=f"a-rather-long-container-name-{i:02d}-x"), 2, 0, row.findings)
        for i, row in enumerate(result.rows)
    )  # fmt: skip
    for rows in (result.rows, long_named):
        narrow = _render(lambda c, rows=rows: print_audit(dataclasses.replace(result, rows=rows), c), 100)
        header = next(line for line in narrow.splitlines() if line.lstrip().startswith("container"))
        assert header.split() == ["container", "runtime", "cgroup", "programs", "findings"], narrow
    wide = _render(lambda c: print_audit(result, c, wide=True), 100_000)
    for row in result.rows:
        assert (row.target.container_id or "") in wide, wide
    narrow = _render(lambda c: print_audit(dataclasses.replace(result, rows=long_named), c), 100)
    assert "a-rather-long-container-name" in narrow, narrow  # a name-like id is not cut to 12
