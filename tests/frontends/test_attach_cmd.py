"""``cgdev attach`` / ``cgdev detach`` on real scratch cgroups, judged by the kernel (issue 12
item 19): the verdicts change exactly as the attached program says, a replacement never leaves a
moment without a filter (a child opening /dev/null in a loop never sees EPERM), and the last
program of a unit's cgroup is not detached without --force."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cgdev.core.model import Request
from cli_inprocess import Ran, run_main

NULL, ZERO, FULL = Request.parse("c 1:3 rw"), Request.parse("c 1:5 rw"), Request.parse("c 1:7 rw")
ASKED = [NULL, ZERO, FULL]


def _ok(*argv: str) -> Ran:
    ran = run_main(argv)
    assert ran.code == 0, ran
    return ran


def _ids(scratch: object) -> list[int]:
    return scratch.program_ids()  # type: ignore[attr-defined,no-any-return]


def test_attach_rules_raw_and_elf_give_the_kernel_verdicts_they_say(
    scratch_cgroup: object, tmp_path: Path
) -> None:
    cg = scratch_cgroup.path  # type: ignore[attr-defined]
    assert scratch_cgroup.kernel_verdicts(ASKED) == [True, True, True]  # type: ignore[attr-defined]
    _ok("attach", cg, "allow c 1:3 rw; allow c 1:5 rw")
    assert scratch_cgroup.kernel_verdicts(ASKED) == [True, True, False]  # type: ignore[attr-defined]
    # an ELF object as compile writes it, beside the first program: both must allow
    elf = tmp_path / "p.o"
    _ok("compile", "allow c 1:3 rw", "allow c 1:7 rw", "--format", "elf", "-o", str(elf))
    ran = _ok("attach", cg, str(elf), "--json")
    assert '"how": "attach"' in ran.out
    assert scratch_cgroup.kernel_verdicts(ASKED) == [True, False, False]  # type: ignore[attr-defined]
    assert len(_ids(scratch_cgroup)) == 2
    # raw instructions, in place of the ELF's program (two programs: attach, then detach)
    raw = tmp_path / "p.bin"
    _ok("compile", "allow c 1:3 rw", "allow c 1:5 rw", "-o", str(raw))
    elf_id = _ids(scratch_cgroup)[1]
    ran = _ok("attach", cg, str(raw), "--replace", str(elf_id))
    assert f"in place of #{elf_id} (attached, then #{elf_id} detached)" in ran.out
    assert elf_id not in _ids(scratch_cgroup) and len(_ids(scratch_cgroup)) == 2
    assert scratch_cgroup.kernel_verdicts(ASKED) == [True, True, False]  # type: ignore[attr-defined]


def test_bad_inputs_are_one_line_and_change_nothing(scratch_cgroup: object, tmp_path: Path) -> None:
    cg = scratch_cgroup.path  # type: ignore[attr-defined]
    _ok("attach", cg, "allow c 1:3 rw")
    before = _ids(scratch_cgroup)
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(13) + b"\0")
    framed = tmp_path / "framed"  # whole instructions, but no exit: the kernel's verifier refuses it
    framed.write_bytes(bytes.fromhex("b700000001000000") * 2)
    cases = [
        ([cg, str(framed)], "last instruction is not an exit or jump"),  # bad input (2), not environment
        ([cg, str(tmp_path / "missing")], "no such file"),
        ([cg, "/bin/true"], "not a device program ELF object"),
        ([cg, str(junk)], "not a device program"),
        ([cg, "allow c 1:3 rw", "--replace", "999999999"], "--replace 999999999: not attached"),
        ([cg + "-nope", "allow c 1:3 rw"], "no such cgroup"),
        ([cg, "allow q 1:3 rw"], 'type "q"'),
    ]
    for argv, words in cases:
        ran = run_main(["attach", *argv])
        assert ran.code == 2 and ran.out == "", ran
        assert len(ran.err.strip().splitlines()) == 1 and words in ran.err, ran.err
    ran = run_main(["detach", cg, "999999999", "--no-systemd"])
    assert ran.code == 2 and "ID 999999999: not attached" in ran.err, ran.err
    assert _ids(scratch_cgroup) == before


_WATCHER = textwrap.dedent(
    """
    import os, sys
    cg, stop = sys.argv[1], sys.argv[2]
    with open(os.path.join(cg, "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    print("in", flush=True)
    opened = null_denied = urandom_opened = 0
    while not os.path.exists(stop):
        try:
            os.close(os.open("/dev/null", os.O_RDWR))  # every program allows it
            opened += 1
        except PermissionError:
            null_denied += 1
        try:
            os.close(os.open("/dev/urandom", os.O_RDONLY))  # no program allows c 1:9
            urandom_opened += 1
        except PermissionError:
            pass
    print(opened, null_denied, urandom_opened, flush=True)
    """
)


@pytest.mark.parametrize("beside", [False, True], ids=["alone-atomic", "beside-attach-then-detach"])
def test_replace_never_leaves_a_gap(scratch_cgroup: object, tmp_path: Path, beside: bool) -> None:
    """Old and new programs allow /dev/null and deny /dev/urandom: a moment with both attached is
    harmless, a moment with neither lets the watcher open /dev/urandom, one with a wrong program
    denies it /dev/null.  (The program beside denies every block device, so it is a real filter
    that still allows c 1:9: only the swapped program stands between the watcher and urandom.)"""
    cg = scratch_cgroup.path  # type: ignore[attr-defined]
    if beside:  # another program stays: the swap attaches first, then detaches
        _ok("attach", cg, "allow c *:* rwm")
    _ok("attach", cg, "allow c 1:3 rw; allow c 1:5 rw")
    stop = tmp_path / "stop"
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, cg, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert watcher.stdout is not None and watcher.stdout.readline().strip() == "in"
        rules = ("allow c 1:3 rw; allow c 1:7 rw", "allow c 1:3 rw; allow c 1:5 rw")
        for i in range(30):
            current = _ids(scratch_cgroup)[-1]
            ran = _ok("attach", cg, rules[i % 2], "--replace", str(current))
            assert ("atomically" in ran.out) == (not beside), ran.out
    finally:
        stop.touch()
        out, _ = watcher.communicate(timeout=60)
    opened, null_denied, urandom_opened = map(int, out.split())
    assert null_denied == 0 and urandom_opened == 0 and opened > 0, (opened, null_denied, urandom_opened)
    assert len(_ids(scratch_cgroup)) == (2 if beside else 1)
    # the last replacement put back the 1:3 + 1:5 program
    verdicts = scratch_cgroup.kernel_verdicts(ASKED)  # type: ignore[attr-defined]
    assert verdicts == [True, True, False]


def test_detach_keeps_a_units_last_program_unless_forced(scratch_cgroup: object) -> None:
    unit_cg = scratch_cgroup.child("cgdev-test.scope")  # type: ignore[attr-defined]
    _ok("attach", unit_cg, "allow c 1:3 rw; allow c 1:5 rw")
    _ok("attach", unit_cg, "allow c 1:3 rw")
    first, second = (int(i) for i in _ids_of(unit_cg))
    # not the last one: detached, the rest said
    ran = _ok("detach", unit_cg, str(second), "--no-systemd")
    assert f"is left with: #{first}" in ran.out
    assert scratch_cgroup_verdicts(unit_cg) == [True, True, False]
    # the last one: refused, one line naming --force, nothing changed
    ran = run_main(["detach", unit_cg, str(first), "--no-systemd"])
    assert ran.code == 2 and "--force" in ran.err and "cgdev-test.scope" in ran.err, ran
    assert len(ran.err.strip().splitlines()) == 1
    assert _ids_of(unit_cg) == [first]
    ran = _ok("detach", unit_cg, str(first), "--no-systemd", "--force")
    assert "no device program of its own (none on its parents)" in ran.out, ran.out
    assert "re-attaches its own" in ran.out
    assert _ids_of(unit_cg) == []
    assert scratch_cgroup_verdicts(unit_cg) == [True, True, True]


def _ids_of(path: str) -> list[int]:
    from cgdev.adapters import bpf

    with bpf.open_cgroup(path) as fd:
        return bpf.prog_query(fd).ids


def scratch_cgroup_verdicts(path: str) -> list[bool]:
    from cgdev.adapters.kernel_probe import kernel_verdicts

    return kernel_verdicts(path, ASKED)
