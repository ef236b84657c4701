"""Encoding, decoding and assembling eBPF slots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgdev.core import isa
from cgdev.errors import ProgramError

slots = st.builds(
    isa.Insn,
    st.integers(0, 255),
    st.integers(0, 15),
    st.integers(0, 15),
    st.integers(-0x8000, 0x7FFF),
    st.integers(-(2**31), 2**31 - 1),
)


@given(st.lists(slots, min_size=1, max_size=40))
def test_decode_inverts_encode(insns: list[isa.Insn]) -> None:
    assert isa.decode(isa.encode(insns)) == tuple(insns)


@given(st.binary(max_size=200))
def test_decode_of_any_bytes_either_works_or_says_why(raw: bytes) -> None:
    try:
        out = isa.decode(raw)
    except ProgramError as err:
        assert "\n" not in str(err)
        assert raw == b"" or len(raw) % 8
    else:
        assert isa.encode(out) == raw


def test_known_encodings_match_bpftool_opcodes() -> None:
    assert isa.ldx("w", 2, 1, 0).code == 0x61
    assert isa.ldx("h", 2, 1, 0).code == 0x69
    assert isa.alu32("and", 2, imm=0xFFFF).code == 0x54
    assert isa.alu32("rsh", 3, imm=16).code == 0x74
    assert isa.alu32("mov", 1, src=3).code == 0xBC
    assert isa.alu64("mov", 0, imm=1).code == 0xB7
    assert isa.alu32("mov", 0, imm=1).code == 0xB4
    assert isa.exit_().code == 0x95
    prog = isa.assemble(
        [isa.jmp("jne", 2, "x", imm=2), isa.jmp("jne", 1, "x", src=3), isa.Label("x"), isa.exit_()]
    )
    assert (prog[0].code, prog[0].off) == (0x55, 1)
    assert (prog[1].code, prog[1].off) == (0x5D, 0)
    assert isa.jmp("jne", 2, 0, src=3, wide32=True).code == 0x5E
    assert isa.ja("x").code == 0x05
    assert isa.encode([isa.alu32("and", 2, imm=0xFFFF)]) == bytes.fromhex("54020000ffff0000")


def test_immediates_accept_unsigned_spelling() -> None:
    assert isa.alu32("mov", 0, imm=0xFFFF_FFFF).imm == -1
    with pytest.raises(ValueError):
        isa.alu32("mov", 0, imm=1 << 32)


def test_ld_imm64_spans_two_slots() -> None:
    prog = isa.assemble([isa.ld_imm64(1, 0x1122334455667788), isa.exit_()])
    assert len(prog) == 3
    assert isa.imm64(prog, 0) == 0x1122334455667788


def test_assembler_errors() -> None:
    with pytest.raises(ValueError, match="undefined label"):
        isa.assemble([isa.ja("nowhere")])
    with pytest.raises(ValueError, match="twice"):
        isa.assemble([isa.Label("a"), isa.Label("a")])
    with pytest.raises(ValueError):
        isa.jmp("jeq", 1, "a")


def test_far_jumps_are_relaxed_to_gotol_and_keep_their_targets() -> None:
    """Jumps beyond the signed 16-bit offset become ``gotol`` (JA) or ``if; ja +1; gotol``."""
    filler = [isa.alu64("mov", 0, imm=0)] * 40_000
    prog = isa.assemble(
        [
            isa.jmp("jset", 2, "far", imm=4),
            isa.ja("far"),
            *filler,
            isa.Label("far"),
            isa.alu64("mov", 0, imm=1),
            isa.exit_(),
        ]
    )
    far = len(prog) - 2
    assert [i.code for i in prog[:4]] == [0x45, 0x05, isa.Opcode.GOTOL, isa.Opcode.GOTOL]
    assert isa.jump_target(prog, 0) == 2  # taken: on to the gotol
    assert isa.jump_target(prog, 1) == 3  # not taken: over it, to where the original fell through
    assert isa.jump_target(prog, 2) == far
    assert isa.jump_target(prog, 3) == far
    near = isa.assemble([isa.jmp("jeq", 1, "x", imm=0), isa.Label("x"), isa.exit_()])
    assert near[0].off == 0 and len(near) == 2


def test_helper_names_follow_the_uapi_header() -> None:
    """The helper table is ``__BPF_FUNC_MAPPER``'s order (ids are append-only uapi)."""
    import re
    from pathlib import Path

    from cgdev.core.helpers import HELPER_NAMES, call_text, helper_name

    assert helper_name(15) == "bpf_get_current_uid_gid" and helper_name(1) == "bpf_map_lookup_elem"
    assert helper_name(0) is None and helper_name(len(HELPER_NAMES)) is None
    assert call_text(10_000) == "#10000"
    header = Path("/usr/include/linux/bpf.h")
    if not header.exists():
        pytest.skip("no linux/bpf.h to compare with")
    mapper = header.read_text().split("#define __BPF_FUNC_MAPPER(FN)", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"FN\((\w+)", mapper)
    common = min(len(names), len(HELPER_NAMES))
    assert [f"bpf_{n}" for n in names[1:common]] == list(HELPER_NAMES[1:common])
