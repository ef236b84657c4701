"""Disassembler: bpftool's xlated text, line for line, and reading such dumps back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cgdev.core.disasm import disassemble, format_insn, parse_bpftool_text
from cgdev.core.isa import Insn, alu32, alu64, decode, encode, exit_, ld_imm64, ldx
from cgdev.errors import ProgramError
from evidence import EVIDENCE

TEXT_DUMPS = sorted(EVIDENCE.glob("per-case/*/prog-*.txt"))
BIN_DUMPS = sorted(EVIDENCE.glob("programs/*.bin"))
needs_evidence = pytest.mark.skipif(not TEXT_DUMPS, reason=f"reference evidence not found under {EVIDENCE}")


def _lines(text: str) -> list[str]:
    return [re.sub(r"\s+", " ", line).strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("insn", "text"),
    [
        (ldx("w", 2, 1, 0), "(61) r2 = *(u32 *)(r1 +0)"),
        (ldx("h", 2, 1, 0), "(69) r2 = *(u16 *)(r1 +0)"),
        (ldx("b", 3, 10, -8), "(71) r3 = *(u8 *)(r10 -8)"),
        (alu32("and", 2, imm=0xFFFF), "(54) w2 &= 65535"),
        (alu32("rsh", 3, imm=16), "(74) w3 >>= 16"),
        (Insn(0x55, 2, 0, 4, 2), "(55) if r2 != 0x2 goto pc+4"),
        (Insn(0x5D, 1, 3, 2, 0), "(5d) if r1 != r3 goto pc+2"),
        (Insn(0x5E, 2, 3, 4, 0), "(5e) if w2 != w3 goto pc+4"),
        (Insn(0x15, 4, 0, -3, -1), "(15) if r4 == 0xffffffff goto pc-3"),
        (Insn(0x6D, 4, 5, 1, 0), "(6d) if r4 s> r5 goto pc+1"),
        (Insn(0x45, 6, 0, 2, 1), "(45) if r6 & 0x1 goto pc+2"),
        (alu64("mov", 0, imm=1), "(b7) r0 = 1"),
        (alu32("mov", 0, imm=1), "(b4) w0 = 1"),
        (alu64("mov", 0, imm=-1), "(b7) r0 = -1"),
        (Insn(0x05, 0, 0, 46, 0), "(05) goto pc+46"),
        (exit_(), "(95) exit"),
        (alu32("mov", 1, src=3), "(bc) w1 = w3"),
        (alu64("mov", 1, src=3), "(bf) r1 = r3"),
        (Insn(0x84, 2), "(84) w2 = -w2"),
        (Insn(0x85, 0, 0, 0, 14), "(85) call #14"),
        (Insn(0x7B, 10, 1, -8, 0), "(7b) *(u64 *)(r10 -8) = r1"),
        (Insn(0x62, 10, 0, -4, 7), "(62) *(u32 *)(r10 -4) = 7"),
    ],
)
def test_format_matches_bpftool(insn: Insn, text: str) -> None:
    assert format_insn([insn, exit_()], 0) == text
    assert parse_bpftool_text(f"   0: {text}\n") == (insn,)


def test_ld_imm64_takes_two_slots_and_numbering_skips_the_second() -> None:
    insns = (*ld_imm64(1, 0x1_0000_0002), alu64("mov", 0, imm=0), exit_())
    listing = disassemble(insns)
    assert listing.splitlines() == ["   0: (18) r1 = 0x100000002", "   2: (b7) r0 = 0", "   3: (95) exit"]
    assert parse_bpftool_text(listing) == insns


@needs_evidence
@pytest.mark.parametrize("path", TEXT_DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_text_dumps_round_trip(path: Path) -> None:
    text = path.read_text()
    insns = parse_bpftool_text(text)
    assert len(insns) == len(_lines(text))
    assert _lines(disassemble(insns)) == _lines(text)


@needs_evidence
@pytest.mark.parametrize("path", BIN_DUMPS, ids=lambda p: p.name[:60])
def test_real_binaries_disassemble_like_a_matching_text_dump(path: Path) -> None:
    insns = decode(path.read_bytes())
    listing = disassemble(insns)
    assert parse_bpftool_text(listing) == insns
    assert encode(insns) == path.read_bytes()
    # The per-case dumps come from runs of the same runtimes and configs: where one holds the
    # same program, bpftool's text and ours must agree line for line.
    same = [p for p in TEXT_DUMPS if parse_bpftool_text(p.read_text()) == insns]
    for dump in same:
        assert _lines(listing) == _lines(dump.read_text())


@needs_evidence
def test_most_binaries_have_a_text_twin() -> None:
    texts = {parse_bpftool_text(p.read_text()) for p in TEXT_DUMPS}
    twins = [p for p in BIN_DUMPS if decode(p.read_bytes()) in texts]
    assert len(twins) >= len(BIN_DUMPS) // 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no bpftool instruction lines"),
        ("   0: (b7) r0 = 0\n   2: (95) exit\n", "index 2, expected 1"),
        ("   0: (b7) r0 = banana\n", "cannot read instruction"),
        ("   0: (55) if r2 !! 0x2 goto pc+1\n", "cannot read"),
    ],
)
def test_bad_text_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        parse_bpftool_text(text)


def test_byte_swap_prints_as_bpftool_does() -> None:
    assert "(d4) w1 = le16 w1" in disassemble([Insn(0xD4, 1, 0, 0, 16), exit_()])


@pytest.mark.parametrize(
    ("insn", "why"),
    [
        (Insn(0xFF, 1, 2, 3, 4), "unknown ALU opcode 0xff"),
        (Insn(0x20), "legacy packet load"),
        (Insn(0x00), "legacy packet load"),  # once printed as BUG_00
        (Insn(0xB7, 12, 0, 0, 0), "invalid register"),  # once printed as r12
        (Insn(0xB7, 11, 0, 0, 0), "invalid register"),  # AX only in a dump the kernel blinded
    ],
)
def test_garbage_is_not_listed_as_a_program(insn: Insn, why: str) -> None:
    """Issue 12 item 4: disasm printed ``BUG_00`` and ``r12`` for random bytes."""
    with pytest.raises(ProgramError, match=f"not a device program: instruction 1: .*{why}"):
        disassemble([exit_(), insn, exit_()])


def test_blinded_dump_lists_the_aux_register() -> None:
    assert "(b7) r11 = 5" in disassemble([Insn(0xB7, 11, 0, 0, 5), exit_()], blinded=True)
