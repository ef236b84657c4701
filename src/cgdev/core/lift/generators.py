"""Naming the generator of a program from its shape (anchors.md §1-5 and (c) 9).

Names are a convenience for the reader (``explain`` says "crun's program in scope/container");
the policy never depends on them.  Each test is a fingerprint that the other generators cannot
produce: crun's dead sentinel block, runc's 32-bit ``w0 = 1`` moves with a sorted, single-action
rule set, systemd's shared PASS exit, libnvidia-container's half-word prologue in front of a
complete old program, cgdev's own first instruction.
"""

from __future__ import annotations

from collections.abc import Sequence

from cgdev.core.isa import U32, Cls, Insn, JmpOp, Opcode, alu32, alu64, exit_, ldx

_EXIT = exit_()
_PROLOGUE_W = (
    ldx("w", 2, 1, 0),
    alu32("and", 2, imm=0xFFFF),
    ldx("w", 3, 1, 0),
    alu32("rsh", 3, imm=16),
    ldx("w", 4, 1, 4),
    ldx("w", 5, 1, 8),
)
_PROLOGUE_H = (
    ldx("h", 2, 1, 0),
    ldx("w", 3, 1, 0),
    alu32("rsh", 3, imm=16),
    ldx("w", 4, 1, 4),
    ldx("w", 5, 1, 8),
)
_MOV64_ONE = alu64("mov", 0, imm=1)
_MOV64_ZERO = alu64("mov", 0, imm=0)
_MOV32_ONE = alu32("mov", 0, imm=1)
_MOV32_ZERO = alu32("mov", 0, imm=0)
_JNE_IMM = Cls.JMP | JmpOp.JNE
_SYSTEMD_TAIL = (_MOV64_ZERO, Insn(int(Opcode.JA), 0, 0, 1, 0), _MOV64_ONE, _EXIT)


def _starts_with(insns: Sequence[Insn], prefix: Sequence[Insn], at: int = 0) -> bool:
    return tuple(insns[at : at + len(prefix)]) == tuple(prefix)


def _is_crun_sentinel(insns: Sequence[Insn], at: int) -> bool:
    """crun's dead first block: ``type c, access mask 0, 0:0 -> allow`` (anchors §1.1)."""
    block = insns[at : at + 8]
    return len(block) == 8 and (
        block[0] == Insn(_JNE_IMM, 2, 0, 7, 2)
        and block[2] == alu32("and", 1, imm=0)
        and block[4] == Insn(_JNE_IMM, 4, 0, 3, 0)
        and block[5] == Insn(_JNE_IMM, 5, 0, 2, 0)
    )


def _exits_are(insns: Sequence[Insn], moves: tuple[Insn, ...]) -> bool:
    """Every ``exit`` is preceded by one of ``moves`` (a chain of one-exit-per-rule blocks)."""
    found = False
    for pc, insn in enumerate(insns):
        if insn.code == Opcode.EXIT:
            if pc == 0 or insns[pc - 1] not in moves:
                return False
            found = True
    return found


def _classic(insns: Sequence[Insn]) -> str:
    """A program with the 6-instruction prologue (crun, runc, youki, systemd)."""
    if len(insns) >= 4 and tuple(insns[-4:]) == _SYSTEMD_TAIL:
        return "systemd"
    body = insns[len(_PROLOGUE_W) :]
    if tuple(body) == (_MOV64_ZERO, _EXIT):
        # An allow-list that matched nothing (anchors §3.1).  Checked before crun's chain shape,
        # which it also fits: crun never emits it, its forced defaults always come first.
        return "systemd"
    if _is_crun_sentinel(insns, len(_PROLOGUE_W)):
        return "crun"
    if _exits_are(body, (_MOV64_ONE, _MOV64_ZERO)):
        return "crun"  # crun before 1.18 (no sentinel yet): 64-bit moves, one exit per rule
    if _exits_are(body, (_MOV32_ONE, _MOV32_ZERO)):
        return "runc" if _runc_sorted(body) else "youki"
    return "unknown"


def _runc_sorted(body: Sequence[Insn]) -> bool:
    """runc's emulator emits rules of one action sorted by (major, minor, type), wildcards first;
    youki keeps the spec's (reversed) order and may mix actions."""
    exits = [pc for pc, insn in enumerate(body) if insn.code == Opcode.EXIT]
    verdicts: set[int] = set()
    keys: list[tuple[int, int, int]] = []
    block: dict[int, int] = {}
    for pc, insn in enumerate(body):
        if insn.code == _JNE_IMM and insn.dst in (2, 4, 5):
            block[insn.dst] = insn.imm & U32
        if insn.code == Opcode.EXIT:
            if pc != exits[-1]:
                verdicts.add(body[pc - 1].imm)
                keys.append((block.get(4, -1), block.get(5, -1), block.get(2, 0)))
            block = {}
    return len(verdicts) <= 1 and keys == sorted(keys)


def _find_second_prologue(insns: Sequence[Insn]) -> int | None:
    for pc in range(len(_PROLOGUE_H), len(insns)):
        if _starts_with(insns, _PROLOGUE_W, pc) or _starts_with(insns, _PROLOGUE_H, pc):
            return pc
    return None


def hook_prefix_length(insns: Sequence[Insn]) -> int | None:
    """Where the complete old program starts behind libnvidia-container's prefix (None: no such
    prefix, or no old program behind it).  The prefix's "no match" jumps all land there, so
    whatever program is put at that index runs in the old one's place."""
    if not _starts_with(insns, _PROLOGUE_H):
        return None
    return _find_second_prologue(insns)


def recognise(insns: Sequence[Insn], cgdev: bool = False) -> str:
    """The generator's name, ``"unknown"`` when no fingerprint matches."""
    if cgdev:
        return "cgdev"
    if _starts_with(insns, _PROLOGUE_H):
        inner_at = _find_second_prologue(insns)
        if inner_at is None:
            return "libnvidia-container"
        inner = recognise(insns[inner_at:])
        return "libnvidia-container" + ("" if inner == "unknown" else f" + {inner}")
    if tuple(insns) == (_MOV64_ZERO, _EXIT):
        return "systemd"  # DevicePolicy=strict with nothing allowed
    if _starts_with(insns, _PROLOGUE_W):
        return _classic(insns)
    return "unknown"


# Which releases write each shape: only what was compared byte for byte with programs dumped from
# the real runtimes (docs/stacks.md, tests/lab/test_lab_shapes.py and test_lab_stacks.py), never
# a guess at where a range ends.  The name alone does not tell crun's two shapes apart, so the
# shape is asked again (``releases``).
MEASURED_RELEASES: dict[str, str] = {
    "crun": "crun 1.21-1.28 (measured; crun's dead sentinel block)",
    "crun-old": "crun 1.8.1 (measured; before the sentinel block)",
    "runc": "runc 1.1.5-1.3.6 (measured)",
    "systemd": "systemd 252-262 (measured)",
    "youki": "youki (not measured here)",
}


def releases(insns: Sequence[Insn], generator: str) -> str:
    """The releases known to emit this program's shape, for a reader to set beside the versions
    on the node ("" when nothing is known: an unknown generator, or a hook prefix whose inner
    program says it)."""
    name = generator.removeprefix("libnvidia-container + ")
    if name.startswith("libnvidia-container"):
        return ""
    inner = insns
    if generator != name:
        at = hook_prefix_length(insns)
        inner = insns[at:] if at is not None else insns
    if name == "crun" and not _is_crun_sentinel(inner, len(_PROLOGUE_W)):
        name = "crun-old"
    return MEASURED_RELEASES.get(name, "")


__all__ = ["MEASURED_RELEASES", "hook_prefix_length", "recognise", "releases"]
