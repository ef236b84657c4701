"""``cgdev lift`` and ``cgdev disasm`` end to end, as a user runs them (``python -m cgdev``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cgdev.core.isa import encode
from evidence import EVIDENCE
from fixtures_kernel import ALLOW_C_1_3_R, requires_root_bpf

HOOKED = (
    EVIDENCE
    / "programs"
    / ("crun121-sd-default_hook--system.slice_crun-hc-crun121-sd-default.scope_container--nvhook_sim.bin")
)
needs_evidence = pytest.mark.skipif(not HOOKED.is_file(), reason=f"reference evidence not found: {HOOKED}")


def cgdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, timeout=60)


@needs_evidence
def test_lift_human_view_names_generator_rules_and_ranges() -> None:
    done = cgdev("lift", str(HOOKED))
    assert done.returncode == 0, done.stderr
    assert "libnvidia-container + crun [crun 1.21-1.28" in done.stdout and ", 90 instructions" in done.stdout
    assert "[   0-12  ] allow c 195:255 rw" in done.stdout
    assert "allow c 1:3 rwm" in done.stdout


@needs_evidence
def test_lift_json_and_checks() -> None:
    done = cgdev("lift", str(HOOKED), "--json", "--check", "c 195:255 rw", "--check", "c 195:0 r")
    assert done.returncode == 1, done.stderr  # one request is denied
    data = json.loads(done.stdout)
    (prog,) = data["programs"]
    assert prog["generator"] == "libnvidia-container + crun"
    assert prog["opaque"] is None and prog["instructions"] == 90
    assert prog["rules"][0]["rule"] == "allow c 195:255 rw" and prog["rules"][0]["insn_range"] == [0, 12]
    assert [c["allowed"] for c in prog["checks"]] == [True, False]
    assert prog["checks"][0]["insn_range"] == [0, 12]
    assert data["checks"] == [
        {"request": "c 195:255 rw", "allowed": True},
        {"request": "c 195:0 r", "allowed": False},
    ]
    assert set(prog["policy"]) == {"b", "c"}


@needs_evidence
def test_lift_of_a_text_dump_and_disasm_agree(tmp_path: Path) -> None:
    listing = cgdev("disasm", str(HOOKED))
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0] == "   0: (69) r2 = *(u16 *)(r1 +0)"
    text = tmp_path / "dump.txt"
    text.write_text(listing.stdout)
    from_text = cgdev("lift", "--text", str(text), "--json", "--no-policy", "--check", "c 1:3 rw")
    assert from_text.returncode == 0
    assert json.loads(from_text.stdout)["programs"][0]["generator"] == "libnvidia-container + crun"
    as_json = json.loads(cgdev("disasm", str(HOOKED), "--json").stdout)
    assert as_json["programs"][0]["instructions"][13] == {
        "pc": 13,
        "code": 0x61,
        "text": "(61) r2 = *(u32 *)(r1 +0)",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x61\x12\x00\x00\x00\x00\x00\x00\x95\x00", "not a multiple of 8 (truncated?)"),
        (b"\x7fELF\x02\x01\x01\x00" * 4, "not a device program"),
        (b"", "empty"),
    ],
)
def test_bad_program_files_are_one_line_exit_2(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "prog.bin"
    path.write_bytes(content)
    for command in ("lift", "disasm"):
        done = cgdev(command, str(path))
        assert done.returncode == 2, (command, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/prog.bin"], "no such file"),
        (["--check", "x 1:3 r"], "type 'x' is not b or c"),
        (["--check", "c 1-3 r"], "is not MAJOR:MINOR"),
        (["--check", "c 1:3 rwx"], "access 'rwx'"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    prog = tmp_path / "p.bin"
    prog.write_bytes(ALLOW_C_1_3_R)
    full = args if args[0].startswith("/") else [str(prog), *args]
    done = cgdev("lift", *full)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_opaque_program_still_answers_checks(tmp_path: Path) -> None:
    prog = tmp_path / "stack.bin"
    # r2 = major; *(u32 *)(r10 - 4) = r2; r0 = 1; exit: valid, but stack traffic is not followed
    prog.write_bytes(bytes.fromhex("6112040000000000632af8ff00000000b7000000010000009500000000000000"))
    done = cgdev("lift", str(prog), "--check", "c 1:3 r")
    assert done.returncode == 0, done.stderr
    assert "opaque: instruction 1: stack traffic" in done.stdout
    assert "check c 1:3 r: allowed" in done.stdout


@requires_root_bpf
def test_lift_by_cgroup_and_id_reads_the_kernel(scratch_cgroup: object) -> None:
    scratch_cgroup.attach(ALLOW_C_1_3_R)  # type: ignore[attr-defined]
    (prog_id,) = scratch_cgroup.program_ids()  # type: ignore[attr-defined]
    path = scratch_cgroup.path  # type: ignore[attr-defined]
    by_cgroup = cgdev("lift", "--cgroup", path, "--json", "--check", "c 1:3 r", "--check", "c 1:3 w")
    assert by_cgroup.returncode == 1, by_cgroup.stderr
    data = json.loads(by_cgroup.stdout)
    assert [p["id"] for p in data["programs"]] == [prog_id]
    assert [c["allowed"] for c in data["checks"]] == [True, False]
    from cgdev.adapters.cgroupfs import cgroup2_mount

    rel = "/" + os.path.relpath(path, cgroup2_mount())
    assert data["programs"][0]["cgroup"] == rel  # as explain and audit print cgroups
    same = json.loads(cgdev("lift", "--cgroup", rel, "--json").stdout)
    assert [p["id"] for p in same["programs"]] == [prog_id]
    empty = cgdev("lift", "--cgroup", scratch_cgroup.child("empty"))  # type: ignore[attr-defined]
    assert empty.returncode == 0 and "no device program is attached" in empty.stdout
    by_id = cgdev("disasm", "--id", str(prog_id))
    assert by_id.returncode == 0 and by_id.stdout.splitlines()[0] == "   0: (61) r2 = *(u32 *)(r1 +0)"
    missing = cgdev("lift", "--cgroup", path + "-missing")
    assert missing.returncode == 2 and "no such cgroup" in missing.stderr


def test_encode_of_fixture_is_what_we_decode() -> None:
    from cgdev.core.isa import decode

    assert encode(decode(ALLOW_C_1_3_R)) == ALLOW_C_1_3_R


def _unprivileged_python(kind: str) -> list[str]:
    """argv prefix running Python without capabilities: root with every capability dropped, or
    uid 65534 (with a Python that user can reach, else the case is skipped)."""
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop privileges")
    if kind == "no-caps":
        return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", sys.executable]
    import cgdev

    src = str(Path(cgdev.__file__).resolve().parents[1])
    for python in (sys.executable, "/usr/bin/python3"):
        argv = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            f"PYTHONPATH={src}",
            python,
        ]
        probe = subprocess.run(
            [*argv, "-c", "import cgdev.cli.main, msgspec, jeepney"], capture_output=True, timeout=60
        )
        if probe.returncode == 0:
            return argv
    pytest.skip("no Python that uid 65534 can run with cgdev importable")


@requires_root_bpf
@pytest.mark.parametrize("kind", ["no-caps", "uid-65534"])
def test_lift_pinned_without_privilege_needs_root_like_id_and_cgroup(
    bpffs_dir: str, scratch_cgroup: object, kind: str
) -> None:
    """Issue 12 item 7: the kernel hands an unprivileged holder of a pin its fd but not its
    instructions; that is "needs root" (exit 3) as for --id/--cgroup, not a withheld program."""
    from cgdev.adapters import bpf

    fd = scratch_cgroup.attach(ALLOW_C_1_3_R)  # type: ignore[attr-defined]
    (prog_id,) = scratch_cgroup.program_ids()  # type: ignore[attr-defined]
    pin = os.path.join(bpffs_dir, "cgdev_lift_pin")
    bpf.obj_pin(fd, pin)
    os.chmod(bpffs_dir, 0o755)
    os.chmod(pin, 0o666)  # so that uid 65534 may open it: only the capability is missing
    try:
        argv = _unprivileged_python(kind)
        cases = [
            ["--pinned", pin],
            ["--pinned", pin, "--check", "c 1:3 r"],
            ["--id", str(prog_id)],
            ["--cgroup", scratch_cgroup.path],  # type: ignore[attr-defined]
        ]
        for args in cases:
            done = subprocess.run(
                [*argv, "-m", "cgdev", "lift", *args], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 3, (args, done.stdout, done.stderr)
            assert "needs root" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert done.stdout == ""
        as_root = cgdev("lift", "--pinned", pin, "--check", "c 1:3 r")
        assert as_root.returncode == 0 and "check c 1:3 r: allowed" in as_root.stdout, as_root.stderr
    finally:
        os.unlink(pin)


def test_lift_names_the_instructions_no_rule_covers(tmp_path: Path) -> None:
    """Issue 12 item 13, through the command: prologue and dead code get a line each."""
    prog = tmp_path / "crun.bin"
    assert cgdev("compile", "--shape", "crun", "deny a", "allow c 1:3 rwm", "-o", str(prog)).returncode == 0
    done = cgdev("lift", str(prog))
    assert done.returncode == 0, done.stderr
    assert "[   0-5   ] (prologue: loads of the context before the first test)" in done.stdout
    assert "(dead code: decides no request" in done.stdout


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_into_lift_check_are_one_line_exit_2(tmp_path: Path, seed: int) -> None:
    """Issue 12 item 3: 800 random bytes into ``lift --check`` gave an IndexError/KeyError
    traceback and exit 1 ("denied"); any input is one line and exit 0-3 with its meaning."""
    import random

    rng = random.Random(seed)
    prog = tmp_path / "random.bin"
    prog.write_bytes(bytes(rng.randrange(256) for _ in range(800)))
    for extra in ([], ["--check", "c 1:3 r"]):
        done = cgdev("lift", str(prog), *extra)
        assert "Traceback" not in done.stderr
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1 and "not a device program" in done.stderr
    done = cgdev("disasm", str(prog))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "BUG_" not in done.stdout
