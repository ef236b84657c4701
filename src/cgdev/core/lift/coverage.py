"""Which instructions no lifted rule accounts for, and why: the lines a listing of rules leaves out.

A rule's instruction range is the block that decided it (from the jump that led there to its
``exit`` or ``goto``).  The other instructions are the prologue (loads of the context before the
first test) or dead code: blocks that decide no request (a rule shadowed by earlier ones, a rule
whose test matches nothing such as crun's empty-access entries, code after an unconditional
verdict).  ``lift`` prints them so that no instruction silently disappears from its output
(issue 12 item 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import msgspec

from cgdev.core.isa import JUMP_CODES, Insn, JmpOp, Opcode, jump_target


class GapKind(StrEnum):
    PROLOGUE = "prologue"
    DEAD = "dead code"


_WHY = {
    GapKind.PROLOGUE: "loads of the context before the first test",
    GapKind.DEAD: "decides no request (shadowed by earlier rules, matches nothing, or unreachable)",
}


class Gap(msgspec.Struct, frozen=True):
    """Instructions ``start``..``end`` (inclusive) that no rule covers, and why."""

    start: int
    end: int
    kind: GapKind

    @property
    def why(self) -> str:
        return _WHY[self.kind]

    def to_json(self) -> dict[str, object]:
        return {"insn_range": [self.start, self.end], "kind": str(self.kind), "why": self.why}


def _reachable(insns: Sequence[Insn]) -> list[bool]:
    """Instructions some path from the entry reaches (every branch taken as possible)."""
    n = len(insns)
    seen = [False] * n
    todo = [0]
    ld_imm64, exit_, ja = Opcode.LD_IMM64, Opcode.EXIT, JmpOp.JA
    while todo:
        pc = todo.pop()
        if not 0 <= pc < n or seen[pc]:
            continue
        seen[pc] = True
        insn = insns[pc]
        code = insn.code
        if code == ld_imm64:
            if pc + 1 < n:  # always true (a program ends in exit): mutating it is equivalent
                seen[pc + 1] = True
            todo.append(pc + 2)
        elif code == exit_:
            continue
        elif code in JUMP_CODES:
            todo.append(jump_target(insns, pc))
            if code & 0xF0 != ja:  # past the first test: dead code whether reached or not
                todo.append(pc + 1)
        else:
            todo.append(pc + 1)
    return seen


def gaps(insns: Sequence[Insn], ranges: Sequence[tuple[int, int]]) -> list[Gap]:
    """The maximal runs of instructions outside every range in ``ranges``, by kind."""
    n = len(insns)
    covered = [False] * n
    for start, end in ranges:
        low, high = max(start, 0), (n - 1 if end < 0 else min(end, n - 1)) + 1
        if low < high:  # a slice, not a loop: 100,000 rules have as many ranges
            covered[low:high] = [True] * (high - low)
    live = _reachable(insns)
    first_test = next(
        (pc for pc, insn in enumerate(insns) if live[pc] and insn.is_jump and insn.jmp_op is not JmpOp.JA), n
    )
    out: list[Gap] = []
    for pc in range(n):
        if covered[pc]:
            continue
        kind = GapKind.PROLOGUE if live[pc] and pc < first_test else GapKind.DEAD
        if out and out[-1].end == pc - 1 and out[-1].kind == kind:
            out[-1] = Gap(out[-1].start, pc, kind)
        else:
            out.append(Gap(pc, pc, kind))
    return out
