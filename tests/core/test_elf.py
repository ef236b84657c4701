"""``compile --format elf`` (issue 12 item 19, first half): an object ``bpftool prog load`` accepts.

The structure is checked with a reader written here from the gABI (not cgdev's writer read back);
the kernel test loads the object with the real bpftool (libbpf), checks that the kernel holds the
very instructions cgdev compiled, attaches the pinned program to a scratch cgroup and compares the
kernel's verdicts with the policy.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cgdev.core.elf import EM_BPF, device_program_elf
from fixtures_kernel import ALLOW_C_1_3_R, requires_root_bpf

RULES = ["deny a", "allow c 1:3 rwm", "allow c 1:5 r", "allow c 136:* rw", "allow b 7:* m"]


def _cgdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgdev", *args], capture_output=True, text=True, check=False)


def _sections(obj: bytes) -> dict[str, tuple[int, int, bytes, int, int]]:
    """name -> (type, flags, data, link, info), read per the gABI."""
    (shoff,) = struct.unpack_from("<Q", obj, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", obj, 0x3C)
    headers = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + 64 * i) for i in range(shnum)]
    names_off = headers[shstrndx][4]

    def name(off: int) -> str:
        start = names_off + off
        return obj[start : obj.index(b"\0", start)].decode()

    return {name(h[0]): (h[1], h[2], obj[h[4] : h[4] + h[5]], h[6], h[7]) for h in headers[1:]}


def test_structure() -> None:
    obj = device_program_elf(ALLOW_C_1_3_R, name="cgdev_crun-1.8")
    assert obj[:6] == b"\x7fELF\x02\x01"  # ELF64, little-endian
    e_type, e_machine = struct.unpack_from("<HH", obj, 16)
    assert (e_type, e_machine) == (1, EM_BPF)  # ET_REL
    sections = _sections(obj)
    sh_type, flags, data, _, _ = sections["cgroup/dev"]
    assert (sh_type, flags & 0x6, data) == (1, 0x6, ALLOW_C_1_3_R)  # PROGBITS, ALLOC|EXECINSTR
    assert sections["license"][2] == b"GPL\0"
    sym_type, _, symtab, link, first_global = sections[".symtab"]
    assert sym_type == 2 and first_global == 1
    strtab = list(sections.values())[link - 1][2]
    sym_name, info, _, shndx, value, size = struct.unpack_from("<IBBHQQ", symtab, 24)
    assert strtab[sym_name : strtab.index(b"\0", sym_name)] == b"cgdev_crun_1.8"  # legal for the kernel
    assert (info >> 4, info & 0xF, shndx, value, size) == (1, 2, 1, 0, len(ALLOW_C_1_3_R))


def test_rejects_non_programs() -> None:
    from cgdev.errors import InputError

    for raw in (b"", b"\x95" * 7):
        with pytest.raises(InputError):
            device_program_elf(raw)


def test_cli_needs_an_output_file(tmp_path: Path) -> None:
    done = _cgdev("compile", "--format", "elf", *RULES)
    assert done.returncode == 2 and "--format" in done.stderr and "Traceback" not in done.stderr
    raw, elf = tmp_path / "p.bin", tmp_path / "p.o"
    assert _cgdev("compile", "-o", str(raw), *RULES).returncode == 0
    assert _cgdev("compile", "--format", "elf", "-o", str(elf), *RULES).returncode == 0
    assert _sections(elf.read_bytes())["cgroup/dev"][2] == raw.read_bytes()  # raw stays the default


def _bpftool(*args: str) -> None:
    tool = shutil.which("bpftool")
    if tool is None:
        from capabilities import skip_unless_ci

        skip_unless_ci("bpftool is not installed (apt-get install bpftool)")
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)  # type: ignore[list-item]
    assert done.returncode == 0, f"bpftool {' '.join(args)}: {done.stderr[-2000:]}"


@requires_root_bpf
@pytest.mark.parametrize("shape", ["cgdev", "runc", "crun-1.8"])
def test_bpftool_loads_it_and_the_kernel_enforces_the_policy(
    shape: str, tmp_path: Path, bpffs_dir: str, scratch_cgroup: object
) -> None:
    from cgdev.adapters import bpf
    from cgdev.core.rules import parse_rule_line
    from cgdev.core.semantics import policy_of
    from kernel_requests import sample_requests

    obj, raw = tmp_path / "prog.o", tmp_path / "prog.bin"
    assert _cgdev("compile", "--shape", shape, "-o", str(raw), *RULES).returncode == 0
    done = _cgdev("compile", "--shape", shape, "--format", "elf", "-o", str(obj), *RULES)
    assert done.returncode == 0, done.stderr
    pin = os.path.join(bpffs_dir, f"cgdev_elf_{os.getpid()}")
    _bpftool("prog", "load", str(obj), pin, "type", "cgroup/dev")
    try:
        dumped = tmp_path / "xlated.bin"
        _bpftool("prog", "dump", "xlated", "pinned", pin, "file", str(dumped))
        assert dumped.read_bytes() == raw.read_bytes()
        rules = [r for i, text in enumerate(RULES) for r in parse_rule_line(text, f"rule {i}")]
        policy = policy_of(rules, "ordered" if shape == "cgdev" else shape)
        with bpf.obj_get(pin) as fd:
            info = bpf.prog_info(fd)
            assert info.name == f"cgdev_{shape}".replace("-", "_")
            scratch_cgroup.attach(fd)  # type: ignore[attr-defined]
            requests = sample_requests()
            verdicts = scratch_cgroup.kernel_verdicts(requests)
        expected = [policy.allows(r) for r in requests]
        wrong = [str(r) for r, got, want in zip(requests, verdicts, expected, strict=True) if got != want]
        assert not wrong, f"kernel disagrees with the policy on {wrong[:10]}"
        assert any(verdicts) and not all(verdicts)
    finally:
        os.unlink(pin)
