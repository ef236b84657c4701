"""cgdev's fingerprint: how the lifter tells cgdev's own programs from the runtimes' ones.

It lives apart from the compiler so that naming a program's generator (every ``lift``, hence every
``explain`` and hook run) does not import the compiler.  The compiler starts each program with
``FINGERPRINT_FIRST``; ``tests/test_compile.py`` holds it to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cgdev.core.isa import Insn, Opcode, alu32, ldx

# w6 = ctx->access_type: no known runtime loads a context field into r6 (they use r2..r5).
FINGERPRINT_FIRST: Final = ldx("w", 6, 1, 0)
_MOV32_IMM: Final = alu32("mov", 0, imm=0).code


def is_cgdev_program(insns: Sequence[Insn]) -> bool:
    """Whether ``insns`` has cgdev's fingerprint: the load above first, or the whole program is
    ``w0 = 0|1; exit`` (a 32-bit move; systemd's deny-all stub is a 64-bit move)."""
    if insns and insns[0] == FINGERPRINT_FIRST:
        return True
    return (
        len(insns) == 2
        and insns[0].code == _MOV32_IMM
        and insns[0].dst == 0
        and insns[0].imm in (0, 1)
        and insns[1].code == Opcode.EXIT
    )
