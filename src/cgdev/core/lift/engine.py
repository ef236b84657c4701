"""The symbolic executor: every path of a device program, with major and minor kept symbolic.

Method (DESIGN.md §5): ``access_type`` takes only 2 types x 4 request masks = 8 values that
matter, so it is carried *concretely* as an 8-tuple (one value per context) and a state stands for
a set of contexts (``live``, a bitmask) that behaved alike so far; major and minor are symbolic
(``symbolic.Sym``) and constrained by a ``Region``.  Programs accepted here only jump forward, so
instructions are visited in address order and states that reach the same instruction with the
same registers (dead registers ignored) and the same rule block are merged: a rule chain of any
length then costs time linear in its length, not quadratic.

A join point whose code never reads the major (a decision tree's shared minor search, entered by
every major whose map differs from it at a few points) is walked once for any major instead of
once with every major's region (``_share``, ``shared``): its terminals pair the walk's outcome
with the region that arrived, and stay unexpanded until read.

Blocks shared by many rules are reached by one state per rule (each keeps the provenance of the
rule that sent it there, for rule reading).  Where that code reads neither major nor minor (a
tree's access tests and verdicts) the states are decided by one walk of it per register file
(``_tails``); elsewhere what does not depend on the state is decoded once per instruction, and a
constant verdict block (``w0 = 1; exit``) is applied in one step (``_verdict_block``).

Two more savings keep a 100,000-rule program in seconds, each exact by construction: a state
alone in its block that jumps where no other edge leads is walked on at once instead of waiting
in the queue for states to merge with (``_send``), and a state queued at an unconditional jump
goes straight to where it lands (``Analysis.hops``).  Tests turn each off and compare.

Each terminal state (an ``exit``) yields (contexts, verdict, region, the block that decided).
Programs the kernel would refuse raise ``RejectedProgram``; constructs this method cannot follow
exactly raise ``Opaque`` with the reason (never a guess).

Over 400 lines because it is one class whose step functions share the executor's state (pending
states, memo tables); split, they would pass that state around instead.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Final

import msgspec

from cgdev.core.arith import alu, byteswap, compare
from cgdev.core.interp import RejectedProgram, context_access_ok
from cgdev.core.isa import U32, AluOp, Cls, Insn, JmpOp, Mode, Opcode, imm64, jump_target
from cgdev.core.lift import intervals as iv
from cgdev.core.lift.intervals import Inexact, IntervalSet
from cgdev.core.lift.region import Region, ValueSet
from cgdev.core.lift.shared import Entry, Restricted
from cgdev.core.lift.symbolic import MAJOR, MINOR, VAR_NAMES, Sym, branch_set, extend, rebase
from cgdev.core.model import REQUEST_MASKS

# The 8 contexts: index i -> (kernel type, request mask).
CTX_TYPES: Final = tuple(t for t in (1, 2) for _ in REQUEST_MASKS)
CTX_MASKS: Final = tuple(m for _ in (1, 2) for m in REQUEST_MASKS)
ALL_CONTEXTS: Final = 0xFF
ACCESS_WORDS: Final = tuple(m << 16 | t for t, m in zip(CTX_TYPES, CTX_MASKS, strict=True))
MAX_STATES: Final = 2_000_000
# A join point whose merged state holds at least this many columns and boxes, and whose code
# never reads the major, is walked once for any major (``shared``); below it, walking the real
# region is as cheap.  Tests lower it to run every eligible join through the shared path.
SHARE_MIN_PIECES = 16
# Apply a shared verdict block (``w0 = 1; exit``) to each arriving state in one step
# (``_verdict_block``); tests turn it off to check that it decides exactly as the step loop.
VERDICT_SHORTCUT = True
# States that reach the same major- and minor-free code (a decision tree's shared access tests
# and verdicts, reached by one state per rule, each with its own provenance) from this many on
# are decided by one walk of that code for their contexts (``_tails``); tests set it to 1 to run
# every eligible join through it, or above any count to turn it off.
TAIL_MIN_STATES = 4
# Walk a state on at once where nobody can join it (``_send``), and step over unconditional jumps
# when enqueueing (``Analysis.hops``); tests turn them off to check that they change nothing.
WALK_AHEAD = True
THREAD_JUMPS = True
READS_MAJOR: Final = 1
READS_MINOR: Final = 2
# enum members as module names: the step loop would otherwise pay a class attribute look-up each
_JMP, _JMP32, _ALU, _ALU64, _LDX = Cls.JMP, Cls.JMP32, Cls.ALU, Cls.ALU64, Cls.LDX
_LD_IMM64, _EXIT, _JA_OP = Opcode.LD_IMM64, Opcode.EXIT, JmpOp.JA
_JUMP_CLASSES: Final = frozenset((int(_JMP), int(_JMP32)))  # an opcode's low 3 bits, as ints
_ALU_CLASSES: Final = frozenset((int(_ALU), int(_ALU64)))
_EXIT_KIND, _CALL_KIND, _JA_KIND, _CONDITIONAL = range(4)  # a jump's kind, decoded once (_decode_jump)
_JUMP_KINDS: Final = {"exit": _EXIT_KIND, "call": _CALL_KIND, "ja": _JA_KIND}
_FLIPPED = {
    "jeq": "jeq", "jne": "jne", "jset": "jset", "jgt": "jlt", "jlt": "jgt", "jge": "jle", "jle": "jge",
    "jsgt": "jslt", "jslt": "jsgt", "jsge": "jsle", "jsle": "jsge",
}  # fmt: skip


class Opaque(Exception):
    """The program is valid as far as we can tell but cannot be lifted exactly; ``reason`` says why."""

    def __init__(self, pc: int, reason: str) -> None:
        super().__init__(f"instruction {pc}: {reason}")
        self.pc = pc
        self.reason = f"instruction {pc}: {reason}"


class Ptr(msgspec.Struct, frozen=True):
    region: str  # "ctx" | "stack"
    offset: int


_CTX: Final = Ptr("ctx", 0)
Known = int | tuple[int, ...] | Sym | Ptr
Value = Known | None  # None: not written yet
Provenance = tuple[int, int, int]
# (block start, block end or -1 while still inside it, contexts passing the block's own tests)


class Terminal(msgspec.Struct):
    live: int
    verdict: int
    region: Region | Restricted
    prov: Provenance


def _in_entry_block(entering: Provenance, walked: Provenance) -> Provenance:
    """The provenance of what a walk from an ``_ENTRY`` state decided in the block the walk was
    entered in: that block is the entering state's (its start, its end if it had reached one,
    else where the walk ended it), and its own tests are the state's and the walk's together."""
    start, end, accepted = entering
    return (start, end if end >= 0 else walked[1], accepted & walked[2])


def _per_ctx(values: tuple[int, ...]) -> int | tuple[int, ...]:
    first = values[0]
    for v in values:
        if v != first:
            return values
    return first


def _spread(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,) * 8


def _uniform(value: int | tuple[int, ...], live: int) -> int | None:
    """The one value ``value`` has on every live context, or None when contexts differ."""
    if isinstance(value, int):
        return value
    seen = {value[i] for i in range(8) if live >> i & 1}
    return seen.pop() if len(seen) == 1 else None


# -- static analyses -----------------------------------------------------------------------------


def _uses_defs(insn: Insn) -> tuple[int, int]:
    """Registers read and written, as bitmasks (for liveness)."""
    cls = insn.cls
    if insn.code == Opcode.LD_IMM64:
        return 0, 1 << insn.dst
    if cls is Cls.ALU or cls is Cls.ALU64:
        op = insn.alu_op
        uses = 0 if op is AluOp.MOV else 1 << insn.dst
        if insn.uses_reg_source and op not in (AluOp.NEG, AluOp.END):
            uses |= 1 << insn.src
        return uses, 1 << insn.dst
    if cls is Cls.JMP or cls is Cls.JMP32:
        jop = insn.jmp_op
        if jop is JmpOp.EXIT:
            return 1, 0
        if jop is JmpOp.CALL:
            return 0b111110, 0b111111
        if jop is JmpOp.JA:
            return 0, 0
        return (1 << insn.dst) | ((1 << insn.src) if insn.uses_reg_source else 0), 0
    if cls is Cls.LDX:
        return 1 << insn.src, 1 << insn.dst
    if cls is Cls.ST:
        return 1 << insn.dst, 0
    if cls is Cls.STX:
        return (1 << insn.dst) | (1 << insn.src), 0
    return 0, 0


class Analysis:
    """What the executor needs to know of the whole program before it walks it, from one
    backward pass (jumps only go forward, so every successor is seen before its predecessor):

    - ``live_in``: per instruction, the registers some path from it reads before writing them
      (dead registers are forgotten, so states that differ only in them merge);
    - ``targets``: the jump targets (join points, where a straight-line run ends);
    - ``reads``: per instruction, which context fields some path from it loads (``READS_MAJOR``,
      ``READS_MINOR``): code that loads no major decides alike for every major unless a register
      already holds it;
    - ``hops``: where each unconditional jump lands after any further unconditional jumps, with
      the first of them (a far ``gotol`` behind a short ``goto``: a state enqueued at one goes
      straight on, as stepping through them would, without a round through the queue);
    - ``entries``: per instruction, how many edges lead to it (a jump, a fall-through): a state
      that is alone where it is and goes to an instruction with one entry meets nobody there,
      so it is walked on at once instead of waiting in the queue for states to merge with.
    """

    __slots__ = ("entries", "hops", "live_in", "reads", "targets")

    def __init__(self, insns: Sequence[Insn]) -> None:
        n = len(insns)
        targets: set[int] = set()
        usage: dict[tuple[int, int, int], tuple[int, int]] = {}
        live = [0] * (n + 2)
        reads = [0] * (n + 2)
        hops: dict[int, int] = {}
        entries = [0] * (n + 2)
        ldx, ja, exit_, ld_imm64 = _LDX, _JA_OP, _EXIT, _LD_IMM64
        for pc in range(n - 1, -1, -1):
            insn = insns[pc]
            code = insn.code
            key = (code, insn.dst, insn.src)
            uses_defs = usage.get(key)
            if uses_defs is None:
                uses_defs = usage[key] = _uses_defs(insn)
            uses, defs = uses_defs
            if insn.is_jump:
                target = jump_target(insns, pc)
                if target <= pc:
                    raise Opaque(pc, f"back-edge to {target} (a loop)")
                targets.add(target)
                entries[target] += 1
                if insn.op == ja:
                    out = live[target]
                    reads[pc] = reads[target] if target < n else 0
                    hops[pc] = hops.get(target, target)
                else:
                    entries[pc + 1] += 1
                    out = live[target] | live[pc + 1]
                    reads[pc] = (reads[target] if target < n else 0) | reads[pc + 1]
            elif code == ld_imm64:
                entries[pc + 2] += 1
                out = live[pc + 2]
                reads[pc] = reads[pc + 2]
            elif code == exit_:
                out = 0
            else:
                entries[pc + 1] += 1
                out = live[pc + 1]
                if code & 0x07 == ldx:
                    off = insn.off
                    field = READS_MAJOR if 4 <= off < 8 else READS_MINOR if 8 <= off < 12 else 0
                    reads[pc] = reads[pc + 1] | field
                else:
                    reads[pc] = reads[pc + 1]
            live[pc] = uses | (out & ~defs)
        self.live_in, self.targets, self.reads, self.hops = live, targets, reads, hops
        self.entries = entries


# -- the executor --------------------------------------------------------------------------------


Groups = dict[int, Region]  # contexts bitmask -> the (major, minor) region they are in


def _add_group(groups: Groups, live: int, region: Region) -> None:
    old = groups.get(live)
    groups[live] = region if old is None else old.absorb(region)


class _State:
    """Registers shared by several groups of contexts, each with its own region: contexts that
    part ways at an access test meet again at the next rule and travel on together."""

    __slots__ = ("groups", "prov", "regs")

    def __init__(self, regs: list[Value], groups: Groups, prov: Provenance) -> None:
        self.regs = regs
        self.groups = groups
        self.prov = prov

    @property
    def live(self) -> int:
        live = 0
        for mask in self.groups:
            live |= mask
        return live


_Outcomes = list[tuple[Terminal, IntervalSet]]  # a shared walk's terminals and their minors
_Walk = tuple[_Outcomes, list[tuple[int, IntervalSet]]]  # ... and what it allows: (contexts, minors)
_ENTRY: Final = -2  # block start of a shared walk's first block: the entering state's, put back


class Executor:
    analysis: Analysis

    def __init__(self, insns: Sequence[Insn], parent: Executor | None = None) -> None:
        self.insns = insns
        self.shares = parent is None  # a shared walk starts from one box: nothing to share in it
        # a walk of a shared sub-program: same program, same analysis
        self.analysis = analysis = Analysis(insns) if parent is None else parent.analysis
        self.live_in, self.targets, self.reads = analysis.live_in, analysis.targets, analysis.reads
        self.hops, self.entries = analysis.hops, analysis.entries
        self.pending: dict[int, dict[tuple[object, ...], _State]] = {}
        # States walked on at once (``_send``): alone where they are, bound where nobody else goes
        self._alone = False
        self._ahead: list[tuple[int, _State]] = []
        self.heap: list[int] = []
        self.terminals: list[Terminal] = []
        self.states = 0
        self._compare_memo: dict[tuple[object, ...], int] = {}
        self._alu_memo: dict[tuple[object, ...], int | tuple[int, ...]] = {}
        # Blocks shared by many rules (a chain's "allow" and "deny" tails, reached by a ``goto``
        # that keeps each rule's provenance) run once per arriving state: at 100,000 rules some
        # run 70,000 times, so what does not depend on the state is decoded once per instruction.
        self._jumps: dict[int, tuple[int, str, int, int, int, int, int]] = {}  # pc -> _decode_jump
        self._loads: dict[tuple[int, int], Value] = {}  # (code, off) -> what a context load yields
        self._verdicts: dict[int, tuple[tuple[tuple[int, int], ...], int] | None] = {}  # _verdict_block
        self._dead: dict[int, tuple[int, ...]] = {}  # live-in mask -> the registers it leaves dead

    def run(self, pc: int = 0, state: _State | None = None) -> list[Terminal]:
        if state is None:
            regs: list[Value] = [None] * 11
            regs[1] = _CTX
            regs[10] = Ptr("stack", 0)
            state = _State(regs, {ALL_CONTEXTS: Region.everything()}, (0, -1, ALL_CONTEXTS))
        self._enqueue(pc, state)
        reads = self.reads
        shares = self.shares
        while self.heap:
            pc = heapq.heappop(self.heap)
            states = list(self.pending.pop(pc).values())
            self._count(pc, len(states))
            if shares and not reads[pc] and len(states) >= TAIL_MIN_STATES:
                states = self._tails(pc, states)
            elif self._may_share(pc, states):
                states = self._share(pc, states)
            self._alone = len(states) == 1
            ahead = self._ahead
            for state in states:
                self._step_block(pc, state)
                while ahead:
                    self._step_block(*ahead.pop())
        return self.terminals

    def _count(self, pc: int, states: int) -> None:
        self.states += states
        if self.states > MAX_STATES:
            raise Opaque(pc, f"more than {MAX_STATES} symbolic states")

    def _may_share(self, pc: int, states: Sequence[_State]) -> bool:
        """Whether ``_share`` applies at ``pc``: code that reads no major, entered by regions
        of enough pieces that walking it once for any major pays."""
        if not self.shares or self.reads[pc] & READS_MAJOR:
            return False
        pieces = 0
        for state in states:
            for region in state.groups.values():
                pieces += len(region.points) + len(region.boxes)
        return pieces >= SHARE_MIN_PIECES

    def _tails(self, pc: int, states: list[_State]) -> list[_State]:
        """Decide the states at ``pc``, whose code reads neither major nor minor, by one walk of
        that code per register file; returns the states to walk as usual (registers holding
        major or minor, too few alike, a walk that fails: the usual walk then says why).

        Every test on the way compares registers that hold the same per-context constants in
        each state, so where a context goes depends on the context alone: one walk from an
        ``_ENTRY`` state with every context that arrives gives each context's outcome, and each
        arriving region is handed whole to the outcomes of its contexts.  Outcomes decided in
        the block the states were in keep each state's own provenance (as ``_enter``); those
        of later blocks are one terminal per outcome and contexts, the regions joined, as the
        usual walk would have merged them at the join.  (Arriving regions are disjoint: one
        request follows one path.)"""
        by_regs: dict[tuple[Value, ...], list[_State]] = {}
        for state in states:
            by_regs.setdefault(tuple(state.regs), []).append(state)
        rest: list[_State] = []
        for regs, alike in by_regs.items():
            if len(alike) < TAIL_MIN_STATES or any(isinstance(value, Sym) for value in regs):
                rest.extend(alike)
                continue
            live = 0
            for state in alike:
                live |= state.live
            walk = Executor(self.insns, self)
            entering = _State(list(regs), {live: Region.everything()}, (_ENTRY, -1, ALL_CONTEXTS))
            try:
                outcomes = [(term.live, term.verdict, term.prov) for term in walk.run(pc, entering)]
            except (Opaque, RejectedProgram):
                rest.extend(alike)
                continue
            self.states += walk.states
            self._hand_out(alike, outcomes)
        return rest

    def _hand_out(self, states: list[_State], outcomes: list[tuple[int, int, Provenance]]) -> None:
        later: dict[tuple[int, int], Region] = {}  # (outcome, contexts) -> the regions joined
        terminals = self.terminals
        for state in states:
            for live, region in state.groups.items():
                hits = [index for index, outcome in enumerate(outcomes) if outcome[0] & live]
                last = hits[-1]
                for index in hits:
                    part = region if index == last else region.copy()
                    contexts, verdict, prov = outcomes[index]
                    contexts &= live
                    if prov[0] == _ENTRY:
                        terminals.append(Terminal(contexts, verdict, part, _in_entry_block(state.prov, prov)))
                    else:
                        old = later.get((index, contexts))
                        later[(index, contexts)] = part if old is None else old.absorb(part)
        for (index, contexts), region in later.items():
            _live, verdict, prov = outcomes[index]
            terminals.append(Terminal(contexts, verdict, region, prov))

    def _share(self, pc: int, states: list[_State]) -> list[_State]:
        """Pair each outcome of the major-free code from ``pc``, walked once for any major, with
        the regions that arrived (``shared``); returns the states to walk as usual: where that
        gains nothing or does not apply (a register still holding the major, code that tests no
        minor, a walk that fails: it may go where the real regions never do).

        States that differ only in the block they come from (majors entering a shared search by
        their own ``goto``) share one walk and, unless the walk decides something in that block
        (whose bounds are each state's own), one entry: their regions are disjoint."""
        by_key: dict[tuple[object, ...], list[_State]] = {}
        for state in states:
            by_key.setdefault((tuple(state.regs), state.live), []).append(state)
        rest: list[_State] = []
        for alike in by_key.values():
            syms = [value.var for value in alike[0].regs if isinstance(value, Sym)]
            if MAJOR in syms or (MINOR not in syms and not self.reads[pc] & READS_MINOR):
                rest.extend(alike)  # depends on the major, or tests no minor: nothing to share
                continue
            top = max(region.max_minor() for state in alike for region in state.groups.values())
            walked = self._walk(pc, alike[0], top)
            if walked is None:
                rest.extend(alike)
                continue
            outcomes, allowed = walked
            first = [(term, minors) for term, minors in outcomes if term.prov[0] == _ENTRY]
            later = [(term, minors) for term, minors in outcomes if term.prov[0] != _ENTRY]
            if first:  # decided in the block each state was in: each with its own bounds
                for state in alike:
                    groups = state.groups
                    if later and len(alike) > 1:
                        groups = {live: region.copy() for live, region in groups.items()}
                    self._enter(_State(state.regs, groups, state.prov), first, allowed)
            if len(alike) > 1:
                merged: Groups = {}
                for state in alike:
                    for live, region in state.groups.items():
                        _add_group(merged, live, region)
                alike = [_State(alike[0].regs, merged, alike[0].prov)]
            for state in alike:
                self._enter(state, later, allowed)
        return rest

    def _enter(self, state: _State, outcomes: _Outcomes, allowed: list[tuple[int, IntervalSet]]) -> None:
        for live, region in state.groups.items():
            entry = Entry(live, region, allowed, state.live)
            for term, minors in outcomes:
                if term.live & live:
                    prov = term.prov
                    if prov[0] == _ENTRY:
                        prov = _in_entry_block(state.prov, prov)
                    decided = Restricted(entry, minors)
                    self.terminals.append(Terminal(term.live & live, term.verdict, decided, prov))

    def _walk(self, pc: int, state: _State, top: int) -> _Walk | None:
        """The walk from ``pc`` for any major and the minors up to ``top`` (those that arrive:
        the bound keeps arithmetic on the minor as cheap to invert as in the usual walk)."""
        walk = Executor(self.insns, self)
        anything = Region({}, [(ValueSet(iv.ALL_U32), ValueSet(((0, top),)))])
        entering = _State(list(state.regs), {state.live: anything}, (_ENTRY, -1, ALL_CONTEXTS))
        try:
            terminals = walk.run(pc, entering)
        except (Opaque, RejectedProgram):
            return None
        outcomes = []
        for term in terminals:
            region = term.region
            assert isinstance(region, Region)  # the walk itself shares nothing
            if region.points or any(m.base != iv.ALL_U32 or m.excluded for m, _ in region.boxes):
                return None  # pragma: no cover - major-free code never narrows the majors
            minors = iv.union_all(m.materialize() for _, m in region.boxes)
            if minors:
                outcomes.append((term, minors))
        if all(minors == ((0, top),) for _term, minors in outcomes):
            return None  # the code tests no minor: nothing to share
        self.states += walk.states
        allowed = [(term.live, minors) for term, minors in outcomes if term.verdict == 1]
        return outcomes, allowed

    def _send(self, pc: int, state: _State) -> None:
        """Where a state jumps: walked on at once (``_ahead``) when it is alone (the only state
        in its block) and ``pc`` has no other entry, so no state can join it there, unless a
        shared walk might apply at ``pc`` (as in ``run``); else queued, to merge with others."""
        if self._alone and self.entries[pc] == 1 and WALK_AHEAD and not self._may_share(pc, (state,)):
            self._forget_dead(pc, state.regs)
            self._count(pc, 1)
            self._ahead.append((pc, state))
        else:
            self._enqueue(pc, state)

    def _forget_dead(self, pc: int, regs: list[Value]) -> None:
        """Clear the registers no path from ``pc`` reads, so states that differ only there merge."""
        live_regs = self.live_in[pc]
        dead = self._dead.get(live_regs)
        if dead is None:
            dead = self._dead[live_regs] = tuple(r for r in range(10) if not live_regs >> r & 1)
        for r in dead:
            regs[r] = None

    def _enqueue(self, pc: int, state: _State) -> None:
        landing = self.hops.get(pc) if THREAD_JUMPS else None
        if landing is not None:  # what stepping through the unconditional jumps would do
            start, end, accepted = state.prov
            if end < 0:
                state.prov = (start, pc, accepted)
            pc = landing
        if pc >= len(self.insns):
            raise RejectedProgram(pc - 1, "falls off the end of the program")
        self._forget_dead(pc, state.regs)
        key = (tuple(state.regs), state.prov)
        bucket = self.pending.get(pc)
        if bucket is None:
            self.pending[pc] = {key: state}
            heapq.heappush(self.heap, pc)
            return
        other = bucket.get(key)
        if other is None:
            bucket[key] = state
        else:
            for live, region in state.groups.items():
                _add_group(other.groups, live, region)

    def _verdict_block(self, pc: int) -> tuple[tuple[tuple[int, int], ...], int] | None:
        """``((register, value) moves, exit pc)`` when the code from ``pc`` only moves constants
        into registers and exits, with no join point inside: a rule chain's shared ``w0 = 1;
        exit``, which tens of thousands of states reach (each with its own provenance) and which
        is then applied to each in one step; None for any other code.  Memoized by the caller
        (``_step_block``, in ``_verdicts``)."""
        insns = self.insns
        moves: list[tuple[int, int]] = []
        found = None
        at = pc
        while at < len(insns):
            insn = insns[at]
            if at != pc and at in self.targets:
                break
            if insn.code == _EXIT:
                found = (tuple(moves), at)
                break
            cls = insn.cls
            if (
                (cls is _ALU or cls is _ALU64)
                and insn.alu_op is AluOp.MOV
                and not insn.uses_reg_source
                and insn.off == 0
                and insn.dst != 10
            ):
                moves.append((insn.dst, insn.imm & (U32 if cls is _ALU else (1 << 64) - 1)))
                at += 1
                continue
            break
        self._verdicts[pc] = found
        return found

    # one straight-line run, ending at a branch, an exit or a join point
    def _step_block(self, pc: int, state: _State) -> None:
        insns = self.insns
        regs = state.regs
        verdict = None
        if VERDICT_SHORTCUT:
            verdict = self._verdicts[pc] if pc in self._verdicts else self._verdict_block(pc)
        if verdict is not None:
            moves, exit_pc = verdict
            for reg, value in moves:
                regs[reg] = value
            start, end, accepted = state.prov
            self._exit(exit_pc, state, (start, exit_pc if end < 0 else end, accepted))
            return
        while True:
            insn = insns[pc]
            cls = insn.code & 0x07
            if cls in _JUMP_CLASSES:
                after = self._jump(pc, insn, state)
                if after is None:
                    return
                state, regs, pc = after, after.regs, pc + 1
                continue
            if insn.code == _LD_IMM64:
                if insn.src != 0:
                    raise Opaque(pc, f"ld_imm64 with pseudo source {insn.src} (a map reference)")
                self._write(pc, regs, insn.dst, imm64(insns, pc))
                nxt = pc + 2
            elif cls in _ALU_CLASSES:
                self._alu(pc, insn, regs, state.live)
                nxt = pc + 1
            elif cls == _LDX:
                self._load(pc, insn, regs)
                nxt = pc + 1
            else:
                base = regs[insn.dst]
                if isinstance(base, Ptr) and base.region == "stack":
                    raise Opaque(pc, "stack traffic (stores and reloads) is not followed")
                raise RejectedProgram(pc, "store outside the stack (the context is read-only)")
            if nxt in self.targets or nxt >= len(insns):
                self._enqueue(nxt, state)
                return
            pc = nxt

    @staticmethod
    def _write(pc: int, regs: list[Value], reg: int, value: Value) -> None:
        if reg == 10:
            raise RejectedProgram(pc, "r10 (frame pointer) is read-only")
        regs[reg] = value

    @staticmethod
    def _read(pc: int, regs: list[Value], reg: int) -> Known:
        value = regs[reg]
        if value is None:
            raise RejectedProgram(pc, f"r{reg} is read before it is written")
        return value

    def _load(self, pc: int, insn: Insn, regs: list[Value]) -> None:
        base = self._read(pc, regs, insn.src)
        if base == _CTX:  # the usual case, checked once per kind of load
            known = self._loads.get((insn.code, insn.off))
            if known is not None:
                self._write(pc, regs, insn.dst, known)
                return
        size = insn.size.nbytes
        if not isinstance(base, Ptr):
            raise RejectedProgram(pc, f"load through r{insn.src}, which is not a pointer")
        if base.region == "stack":
            raise Opaque(pc, "stack traffic (stores and reloads) is not followed")
        if insn.mode != Mode.MEM:
            raise RejectedProgram(pc, "sign-extending load from the context")
        if base.offset:
            raise RejectedProgram(pc, "load through a modified context pointer")
        off = insn.off
        if not context_access_ok(off, size):
            raise RejectedProgram(pc, f"invalid context access off={off} size={size}")
        if off < 4:
            mask = (1 << (8 * size)) - 1
            value: Value = _per_ctx(tuple(word >> (8 * off) & mask for word in ACCESS_WORDS))
        else:
            value = Sym(MAJOR if off == 4 else MINOR)
        self._loads[insn.code, insn.off] = value
        self._write(pc, regs, insn.dst, value)

    def _alu(self, pc: int, insn: Insn, regs: list[Value], live: int) -> None:
        op = insn.alu_op
        if op is None:  # pragma: no cover - check() admitted only known operations
            raise RejectedProgram(pc, f"unknown ALU opcode 0x{insn.code:02x}")
        name = op.mnemonic
        bits = 64 if insn.cls is _ALU64 else 32
        mask = (1 << bits) - 1
        if insn.uses_reg_source and name not in ("neg", "end"):
            src: Known = self._read(pc, regs, insn.src)
        else:
            src = insn.imm & mask
            if name in ("lsh", "rsh", "arsh") and not 0 <= insn.imm < bits:
                raise RejectedProgram(pc, f"invalid shift by {insn.imm}")
        if name == "mov" and insn.off == 0:
            if bits == 64:
                self._write(pc, regs, insn.dst, src)
                return
            if isinstance(src, int):  # a verdict's ``w0 = 1``: the same on every context
                self._write(pc, regs, insn.dst, src & mask)
                return
            if not isinstance(src, (Sym, Ptr)):
                self._write(pc, regs, insn.dst, _per_ctx(tuple(v & mask for v in _spread(src))))
                return
        dst: Value = 0 if name == "mov" else self._read(pc, regs, insn.dst)
        if isinstance(dst, Ptr) or isinstance(src, Ptr):
            if isinstance(dst, Ptr) and bits == 64 and name in ("add", "sub") and isinstance(src, int):
                delta = src if src < 1 << 63 else src - (1 << 64)
                self._write(
                    pc, regs, insn.dst, Ptr(dst.region, dst.offset + (delta if name == "add" else -delta))
                )
                return
            raise Opaque(pc, f"pointer arithmetic ({name}) is not followed")
        if isinstance(dst, Sym) or isinstance(src, Sym):
            self._write(pc, regs, insn.dst, self._alu_sym(pc, name, dst, src, bits, insn, live))
            return
        assert dst is not None and src is not None
        if name == "end":
            if insn.imm not in (16, 32, 64):
                raise RejectedProgram(pc, f"invalid byte swap width {insn.imm}")
            to_big = bool(insn.uses_reg_source) or bits == 64
            self._write(
                pc, regs, insn.dst, _per_ctx(tuple(byteswap(v, insn.imm, to_big) for v in _spread(dst)))
            )
            return
        if isinstance(dst, int) and isinstance(src, int):
            result = alu(name, dst, src, bits, insn.off)
            assert result is not None
            self._write(pc, regs, insn.dst, result)
            return
        key = (name, bits, insn.off, dst, src)
        result_ctx = self._alu_memo.get(key)
        if result_ctx is None:
            values = []
            for a, b in zip(_spread(dst), _spread(src), strict=True):
                value = alu(name, a, b, bits, insn.off)
                if value is None:  # pragma: no cover - every operation but "end" (above) computes
                    raise RejectedProgram(pc, f"unsupported ALU op {name}")
                values.append(value)
            result_ctx = self._alu_memo[key] = _per_ctx(tuple(values))
        self._write(pc, regs, insn.dst, result_ctx)

    @staticmethod
    def _alu_sym(pc: int, name: str, dst: Value, src: Value, bits: int, insn: Insn, live: int) -> Value:
        if insn.off and name in ("mov", "div", "mod"):
            raise Opaque(pc, f"signed {name} on major/minor is not followed")
        try:
            if isinstance(dst, Sym) and isinstance(src, Sym):
                raise Opaque(pc, f"{name} combining major/minor with another field")
            if name == "mov":
                assert isinstance(src, Sym)
                return extend(src, "trunc", 0, 32)
            if name in ("neg", "end"):
                assert isinstance(dst, Sym)
                if name == "end":
                    raise Inexact("byte swap of major/minor")
                return extend(dst, "neg", 0, bits)
            if isinstance(dst, Sym):
                if src is None or isinstance(
                    src, (Sym, Ptr)
                ):  # pragma: no cover - the caller split these off
                    raise Opaque(pc, f"{name} of major/minor with a non-constant")
                const = _uniform(src, live)
                if const is None:
                    raise Opaque(pc, f"{name} of major/minor with an access-dependent value")
                return extend(dst, name, const, bits)
            assert isinstance(src, Sym)
            if dst is None or isinstance(dst, Ptr):  # pragma: no cover - the caller split these off
                raise Opaque(pc, f"{name} of major/minor with a non-constant")
            const = _uniform(dst, live)
            if const is None:
                raise Opaque(pc, f"{name} of major/minor with an access-dependent value")
            if name in ("add", "and", "or", "xor"):
                return extend(src, name, const, bits)
            if name == "sub":
                return extend(extend(src, "neg", 0, bits), "add", const, bits)
            raise Inexact(f"{name} with major/minor as the operand")
        except Inexact as err:
            raise Opaque(pc, str(err)) from None

    # -- control flow ----------------------------------------------------------------------------

    def _jump(self, pc: int, insn: Insn, state: _State) -> _State | None:
        """Follow a jump; returns the fall-through state when it can run on inline."""
        decoded = self._jumps.get(pc)
        if decoded is None:
            decoded = self._decode_jump(pc, insn)
        kind, name, target, bits, dst, src, imm = decoded
        if kind != _CONDITIONAL:
            start, end, accepted = state.prov
            if kind == _EXIT_KIND:
                self._exit(pc, state, (start, pc if end < 0 else end, accepted))
                return None
            if kind == _CALL_KIND:
                raise Opaque(pc, f"helper call #{insn.imm}")
            state.prov = (start, pc if end < 0 else end, accepted)
            self._send(target, state)
            return None
        regs = state.regs
        left = regs[dst]
        if left is None:
            self._read(pc, regs, dst)
        right: Value = imm if src < 0 else regs[src]
        if right is None:
            self._read(pc, regs, src)
        left_type, right_type = type(left), type(right)
        if left_type is Ptr or right_type is Ptr:
            raise Opaque(pc, "comparison involving a pointer")
        taken_prov: Provenance = (target, -1, ALL_CONTEXTS)
        if left_type is not Sym and right_type is not Sym:
            return self._branch_concrete(pc, name, left, right, bits, state, target, taken_prov)  # type: ignore[arg-type]
        if left_type is Sym and right_type is Sym:
            raise Opaque(pc, "comparison of major/minor with a non-constant")
        if right_type is Sym:
            left, right, name = right, left, _FLIPPED[name]
        assert isinstance(left, Sym) and isinstance(right, (int, tuple))
        const = right if type(right) is int else _uniform(right, state.live)
        if const is None:
            raise Opaque(pc, "comparison of major/minor with an access-dependent value")
        taken: Groups = {}
        fall: Groups = {}
        if not left.ops and name in ("jeq", "jne") and const <= U32:
            # the common case, ``if r4 != M``: split off one point without building sets
            split = Region.split_major_point if left.var == MAJOR else Region.split_minor_point
            for live, region in state.groups.items():
                equal, other = split(region, const)
                yes, no = (equal, other) if name == "jeq" else (other, equal)
                if not yes.is_empty():
                    taken[live] = yes
                if not no.is_empty():
                    fall[live] = no
            return self._follow(pc, target, state, taken, fall, taken_prov, state.prov)
        try:
            if left.ops:
                bound = max(
                    region.max_major() if left.var == MAJOR else region.max_minor()
                    for region in state.groups.values()
                )
                left = rebase(left, bound)
            taken_set = branch_set(left, name, const, bits)
        except Inexact as err:
            raise Opaque(pc, str(err)) from None
        for live, region in state.groups.items():
            yes, no = region.split_major(taken_set) if left.var == MAJOR else region.split_minor(taken_set)
            if not yes.is_empty():
                taken[live] = yes
            if not no.is_empty():
                fall[live] = no
        return self._follow(pc, target, state, taken, fall, taken_prov, state.prov)

    def _decode_jump(self, pc: int, insn: Insn) -> tuple[int, str, int, int, int, int, int]:
        """What a jump does, decoded once per instruction (a shared block runs once per state);
        from the opcode's bits, as most instructions are visited once and this is their cost."""
        code = insn.code
        jop = insn.jmp_op
        if jop is None:  # pragma: no cover - check() admitted only known operations
            raise RejectedProgram(pc, f"unknown jump opcode 0x{code:02x}")
        name = jop.mnemonic
        kind = _JUMP_KINDS.get(name, _CONDITIONAL)
        target = -1 if kind in (_EXIT_KIND, _CALL_KIND) else jump_target(self.insns, pc)
        bits = 32 if code & 0x07 == _JMP32 else 64
        src = insn.src if code & 0x08 else -1
        decoded = self._jumps[pc] = (kind, name, target, bits, insn.dst, src, insn.imm & ((1 << bits) - 1))
        return decoded

    def _follow(
        self,
        pc: int,
        target: int,
        state: _State,
        taken: Groups,
        fall: Groups,
        taken_prov: Provenance,
        fall_prov: Provenance,
    ) -> _State | None:
        fall_state = _State(list(state.regs) if taken else state.regs, fall, fall_prov) if fall else None
        if taken:
            self._send(target, _State(state.regs, taken, taken_prov))
        if fall_state is None or (pc + 1 in self.targets or pc + 1 >= len(self.insns)):
            if fall_state is not None:
                self._enqueue(pc + 1, fall_state)
            return None
        return fall_state

    def _branch_concrete(
        self,
        pc: int,
        name: str,
        left: int | tuple[int, ...],
        right: int | tuple[int, ...],
        bits: int,
        state: _State,
        target: int,
        taken_prov: Provenance,
    ) -> _State | None:
        memo_key = (name, bits, left, right)
        taken_all = self._compare_memo.get(memo_key)
        if taken_all is None:
            if isinstance(left, int) and isinstance(right, int):
                taken_all = ALL_CONTEXTS if compare(name, left, right, bits) else 0
            else:
                taken_all = 0
                for i, (a, b) in enumerate(zip(_spread(left), _spread(right), strict=True)):
                    if compare(name, a, b, bits):
                        taken_all |= 1 << i
            self._compare_memo[memo_key] = taken_all
        taken: Groups = {}
        fall: Groups = {}
        for live, region in state.groups.items():
            yes, no = live & taken_all, live & ~taken_all
            if yes and no:
                _add_group(taken, yes, region.copy())
                _add_group(fall, no, region)
            elif yes:
                _add_group(taken, yes, region)
            else:
                _add_group(fall, no, region)
        start, end, accepted = state.prov
        fall_prov = (start, end, accepted & ~taken_all & ALL_CONTEXTS)
        return self._follow(pc, target, state, taken, fall, taken_prov, fall_prov)

    def _exit(self, pc: int, state: _State, prov: Provenance) -> None:
        r0 = self._read(pc, state.regs, 0)
        if isinstance(r0, Ptr):
            raise RejectedProgram(pc, "r0 holds a pointer at exit")
        if isinstance(r0, Sym):
            raise Opaque(pc, f"the verdict is computed from {VAR_NAMES[r0.var]}")
        if isinstance(r0, int):  # one verdict for every context: one terminal per group
            if r0 not in (0, 1):
                raise RejectedProgram(pc, f"r0 = {r0} at exit; a device program returns 0 or 1")
            for group_live, region in state.groups.items():
                self.terminals.append(Terminal(group_live, r0, region, prov))
            return
        values = _spread(r0)
        for group_live, region in state.groups.items():
            by_value: dict[int, int] = {}
            for i in range(8):
                if group_live >> i & 1:
                    by_value[values[i]] = by_value.get(values[i], 0) | 1 << i
            for value, live in by_value.items():
                if value not in (0, 1):
                    raise RejectedProgram(pc, f"r0 = {value} at exit; a device program returns 0 or 1")
                self.terminals.append(Terminal(live, value, region, prov))


def execute(insns: Sequence[Insn]) -> list[Terminal]:
    """All terminal states of a program that passed ``interp.check``."""
    return Executor(insns).run()
