"""``lift``: a device program -> its exact policy, its rules and its generator (DESIGN.md §5).

The symbolic executor (``engine``) gives the terminal states; ``assembly`` turns them into the
canonical ``Policy`` and ``widen`` into one ``LiftedRule`` per block.  A program the method cannot
follow exactly is opaque, with the reason, and is then answered concretely (``LiftResult.decide``).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence

from cgdev.core import interp
from cgdev.core.fingerprint import is_cgdev_program
from cgdev.core.helpers import call_text
from cgdev.core.isa import Insn
from cgdev.core.lift.assembly import Pieces, policy_of_terminals
from cgdev.core.lift.coverage import gaps
from cgdev.core.lift.engine import Opaque, execute
from cgdev.core.lift.generators import recognise
from cgdev.core.lift.result import LiftResult
from cgdev.core.lift.widen import lifted_rules


def lift(
    insns: Sequence[Insn], *, blinded: bool = False, calls: Mapping[int, str] | None = None
) -> LiftResult:
    """Lift a program; raises ``ProgramError`` for programs the kernel would refuse to load.

    ``blinded`` says the kernel gave the program with its constants blinded (``bpf_jit_harden``:
    the adapter sees the verifier's AX register in the dump); such a program is opaque, its
    verdicts still available through ``decide``.  Without it the core does not guess: bytes that
    use AX, or that are all zero, are no device program (``ProgramError``).

    ``calls`` names the helper calls of a kernel dump (translated offset -> symbol, from the
    kernel's symbols); None when the calls hold helper ids (a program as loaded).  A helper call
    makes the program opaque, and the reason names the helper as bpftool prints it.
    """
    program = tuple(insns)
    interp.check(program, blinded=blinded)
    if blinded:
        reason = "constants are blinded (JIT hardening rewrote them through AX)"
        return LiftResult(program, None, reason, "unknown", blinded=True)
    generator = recognise(program, cgdev=is_cgdev_program(program))
    # The executor allocates millions of small, acyclic objects; the cyclic collector only slows
    # it down.  It stays off until the executor's intermediates (terminals, regions) are dropped:
    # the first collection after re-enabling walks every tracked object allocated meanwhile, and
    # at 100,000 rules that walk over garbage still referenced cost more than half of the lift.
    collecting = gc.isenabled()
    gc.disable()
    try:
        executor_terminals = execute(program)
        pieces_of = Pieces()
        policy = policy_of_terminals(executor_terminals, pieces_of)
        rules = lifted_rules(executor_terminals, pieces_of, chain=generator != "cgdev")
        del executor_terminals, pieces_of
        found_gaps = gaps(program, [r.insn_range for r in rules])
    except Opaque as err:
        reason = err.reason
        jop = program[err.pc].jmp_op
        if jop is not None and jop.mnemonic == "call":
            named = call_text(program[err.pc].imm, calls)
            reason = f"instruction {err.pc}: helper call {named}: the verdict depends on the helper"
        return LiftResult(program, None, reason, generator)
    finally:
        if collecting:
            _promote_survivors()
            gc.enable()
    return LiftResult(program, policy, None, generator, rules, gaps=found_gaps)


def _promote_survivors() -> None:
    """Move every object the lift allocated and kept (its rules, their cells, the policy: about
    a million at 100,000 rules) straight to the oldest generation.

    With the collector off they all sit in the youngest one, and the first allocation after it
    is back on would walk them all (0.43 s at 100,000 rules), then the middle generation would
    walk them again; objects that survive a lift are long-lived, so they go where the collector
    keeps those, at the price of a list splice.  Skipped when the caller froze objects itself
    (``unfreeze`` would thaw them too)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
