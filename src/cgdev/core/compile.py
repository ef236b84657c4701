"""cgdev's own compiler: a ``Policy`` -> the smallest, fastest device program we know how to build.

Over 400 lines because search planning, block layout and leaf sharing work on one graph of blocks;
split apart, each piece would need the others' private representation.

Why a decision tree and not a rule chain: every runtime emits one block per rule and tests them in
order, so a request for the last device walks the whole program (runc's default set: up to 64
instructions per check).  A policy is already a canonical step function over (type, major,
minor), so it can be compiled as a search over its breakpoints instead, and the cost of a check
grows with the logarithm of the number of distinct devices, not with their number.

Shape of the output (registers are fixed, which is also the fingerprint, see below):

- ``r6 = *(u32 *)(r1 +0)`` — ``access_type`` (``access << 16 | type``), loaded once and never
  shifted except in a generic leaf, which is terminal.  Type and access tests compare this raw
  word against constants, so neither field is ever extracted on the common paths.
- optionally one *pre-test* on the access mask, when a mask group gets the same answer
  everywhere (typical: ``m`` is allowed for every device, so mknod is decided by one test and the
  rest of the tree only has to be right for r/w/rw, which collapses leaves to plain allow/deny);
- a type split (``if w6 & 1`` — block = 1, char = 2) only where the two types' maps differ;
- per type a search over the major breakpoints (``r7`` loaded lazily where needed), per major
  piece a search over its minor breakpoints (``r8`` loaded at the start of each minor search).
  Searches are chains of ``jeq``/``jle``/``jge`` against a background value when that is short
  (a device is one ``jeq``), balanced splits otherwise; for small maps the best mix is found by
  dynamic programming on (size + depth);
- leaves are hash-consed: the same minor map under many majors, or the same leaf under many
  minors, is compiled once.  A minor map that differs from a shared one at a few points (a
  major's own rules under the ``*:N`` pattern every major repeats in the canonical form) is
  compiled as a search over those points that falls through to the shared map's search, so
  wildcard-major rules cost once, not once per major (issue 12: 10,000 rules with 3 % ``c *:N``
  went from 1.42M instructions to 18k; runc's chain for the list is 60k).  A leaf decides the
  access mask with one test when one exists (``w6 < 2 << 16`` is "mknod", ``w6 & 4 << 16`` is
  "asks write", ...) and otherwise with the
  branch-free ``w6 >>= 16; w0 = S; w0 >>= w6; w0 &= 1; exit`` over the mask set ``S``.

All comparisons are JMP32 so every u32 constant (majors/minors up to 2^32 - 1) is compared
unsigned and exactly; 64-bit JMP would sign-extend immediates above 2^31.  Every jump goes
forward (the layout is a topological order of the blocks), so the program is a DAG and its worst
case path length is computed statically.

Fingerprint (for the lifter to name the generator "cgdev"): the first instruction loads a context
field into r6 (``FINGERPRINT_FIRST``), which no known runtime does (they load into r2..r5); or the
whole program is ``w0 = 0|1; exit`` (a 32-bit move; systemd's deny-all stub is a 64-bit move).

Measured sizes (``bench/bench_compile.py``; anchors are the runtimes' programs for the same list):
OCI default set (a): 21 instructions, at most 11 executed (runc 69, crun 1.21 133, systemd 55;
the captured real programs, with deny-all specs, are 64 / 77 / 58); set (a) + 8 GPUs and 4 more
nvidia nodes (b): 34 instructions, at most 13 executed (runc 165, crun 229, systemd 139).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cgdev.core import fingerprint
from cgdev.core.isa import (
    OPCODE_EXIT,
    OPCODE_GOTOL,
    OPCODE_JA,
    Insn,
    Item,
    Jump,
    Label,
    alu32,
    assemble,
    exit_,
    ja,
    jmp,
    jump_target,
    ldx,
)
from cgdev.core.model import MASKSET_ALL, REQUEST_MASKS, U32_MAX
from cgdev.core.policy import MajorMap, MinorMap, Policy, StepFn

# -- register and context conventions ----------------------------------------------------------

REG_CTX: Final = 1
REG_ACCESS_TYPE: Final = 6
REG_MAJOR: Final = 7
REG_MINOR: Final = 8
OFF_ACCESS_TYPE: Final = 0
OFF_MAJOR: Final = 4
OFF_MINOR: Final = 8
ACCESS_SHIFT: Final = 16
TYPE_BLOCK_BIT: Final = 1  # block = 1, char = 2: bit 0 of access_type tells them apart

# w6 = access_type, the first instruction of every program: also the lifter's fingerprint.
FINGERPRINT_FIRST: Final = fingerprint.FINGERPRINT_FIRST

# Blocks this small (counting the blocks they fall into) may be copied instead of jumped to: a
# copy of ``w0 = 1; exit`` costs one instruction more than ``goto`` but one executed instruction
# less.  Both layouts are tried and the better one kept.
DUPLICATE_LIMITS: Final = (0, 3)
# Above this many blocks only the first (smallest) layout is tried: the difference is noise there.
SMALL_PROGRAM_BLOCKS: Final = 512
# Exact (dynamic programming) search planning up to this many pieces; balanced heuristics above.
EXACT_PLAN_PIECES: Final = 8
# A chain of at most this many compares is kept linear by the heuristic planner.
CHAIN_LIMIT: Final = 3


# -- access tests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessTest:
    """A one-instruction test of the raw ``access_type`` word that ignores the type bits."""

    op: str  # "jlt" or "jset"
    imm: int

    def truth(self, mask: int) -> bool:
        word = mask << ACCESS_SHIFT
        return word < self.imm if self.op == "jlt" else bool(word & self.imm)

    @property
    def maskset(self) -> int:
        """The request masks (as a mask set) for which the jump is taken."""
        return sum(1 << m for m in REQUEST_MASKS if self.truth(m))


ACCESS_TESTS: Final[tuple[AccessTest, ...]] = (
    *(AccessTest("jlt", k << ACCESS_SHIFT) for k in (2, 3, 5)),
    *(AccessTest("jset", bits << ACCESS_SHIFT) for bits in range(1, 7)),
)


# -- the node graph (hash-consed) --------------------------------------------------------------

NodeId = int


@dataclass(frozen=True, slots=True)
class Exit:
    verdict: int


@dataclass(frozen=True, slots=True)
class TestLeaf:
    """``if test goto exit(when_true) else exit(1 - when_true)``."""

    test: AccessTest
    when_true: int


@dataclass(frozen=True, slots=True)
class MaskLeaf:
    """Branch-free lookup of the request mask in the mask set ``maskset``."""

    maskset: int


@dataclass(frozen=True, slots=True)
class Search:
    """A search over one context field; ``values`` are node ids, canonical like ``StepFn``."""

    reg: int
    offset: int
    starts: tuple[int, ...]
    values: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class TypeSplit:
    block: NodeId
    char: NodeId


@dataclass(frozen=True, slots=True)
class PreTest:
    """Decides the masks ``decided`` (the test's taken set, or its complement) up front."""

    test: AccessTest
    exit_on_true: bool
    verdict: int
    rest: NodeId = -1

    @property
    def decided(self) -> int:
        taken = self.test.maskset
        return taken if self.exit_on_true else MASKSET_ALL & ~taken


Node = Exit | TestLeaf | MaskLeaf | Search | TypeSplit | PreTest


class _Graph:
    """Interns nodes so equal subtrees get one id and therefore one piece of code."""

    def __init__(self) -> None:
        self.ids: dict[Node, NodeId] = {}
        self.nodes: list[Node] = []

    def intern(self, node: Node) -> NodeId:
        found = self.ids.get(node)
        if found is None:
            found = self.ids[node] = len(self.nodes)
            self.nodes.append(node)
        return found


def _leaf_node(maskset: int, care: int) -> Node:
    """The cheapest leaf that is right on the ``care`` masks (others are decided elsewhere)."""
    maskset &= care
    if maskset == care:
        return Exit(1)
    if maskset == 0:
        return Exit(0)
    for test in ACCESS_TESTS:
        taken = test.maskset & care
        if taken == maskset:
            return TestLeaf(test, 1)
        if taken == care & ~maskset:
            return TestLeaf(test, 0)
    return MaskLeaf(maskset)


def _build_graph(policy: Policy, pretest: PreTest | None, graph: _Graph) -> NodeId:
    care = MASKSET_ALL if pretest is None else MASKSET_ALL & ~pretest.decided
    leaf_ids: dict[int, NodeId] = {}
    minor_ids: dict[MinorMap, NodeId] = {}

    def leaf(maskset: int) -> NodeId:
        if maskset not in leaf_ids:
            leaf_ids[maskset] = graph.intern(_leaf_node(maskset, care))
        return leaf_ids[maskset]

    def search(fn: StepFn[NodeId], reg: int, offset: int) -> NodeId:
        if fn.is_const:
            return fn.values[0]
        return graph.intern(Search(reg, offset, fn.starts, fn.values))

    def plain(minors: MinorMap) -> NodeId:
        if minors not in minor_ids:
            minor_ids[minors] = search(minors.map(leaf), REG_MINOR, OFF_MINOR)
        return minor_ids[minors]

    def against(minors: MinorMap, base: MinorMap | None) -> NodeId:
        """``minors`` as a search of its own, or as its differences from ``base``'s search."""
        if minors in minor_ids:
            return minor_ids[minors]
        if minors.origin is not None:  # made as base + points: the differences are known
            made_from, points = minors.origin
            base_node = against(made_from, base if made_from is not base else None)
            edits = {n: leaf(minors.at(n)) for n in points}
            delta = StepFn.from_points(
                base_node, {n: v for n, v in edits.items() if v != leaf(made_from.at(n))}
            )
        elif base is None or base == minors:
            return plain(minors)
        else:
            base_node = against(base, None)
            delta = _delta(minors.map(leaf), base.map(leaf), base_node)
        if len(delta.starts) >= len(minors.starts):
            return plain(minors)
        minor_ids[minors] = search(delta, REG_MINOR, OFF_MINOR)
        return minor_ids[minors]

    def major_search(majors: MajorMap) -> NodeId:
        background = _background(majors)
        rep = _widest_start(background)
        # Without a known origin: one base per value on the background's widest stretch (the
        # majors whose own ``M:*`` rules give that value share what ``*:N`` rules do to it), each
        # map compiled as its differences from the smallest map of its group.
        bases: dict[NodeId, MinorMap] = {}
        for minors in majors.values:
            if minors.origin is None:
                key = leaf(minors.at(rep))
                if key not in bases or len(minors.starts) < len(bases[key].starts):
                    bases[key] = minors
        bases[leaf(background.at(rep))] = background
        against(background, None)

        def minor_node(minors: MinorMap) -> NodeId:
            if minors.origin is not None:
                return against(minors, background)
            return against(minors, bases[leaf(minors.at(rep))])

        return search(majors.map(minor_node), REG_MAJOR, OFF_MAJOR)

    block = major_search(policy.block)
    char = major_search(policy.char)
    root = block if block == char else graph.intern(TypeSplit(block, char))
    if pretest is not None:
        root = graph.intern(PreTest(pretest.test, pretest.exit_on_true, pretest.verdict, root))
    return root


def _background(majors: MajorMap) -> MinorMap:
    """The minor map of the widest major piece: what most majors share (the "column" pattern
    that wildcard-major rules such as ``c *:N r`` put under every major)."""
    widest = max(majors.pieces(), key=lambda piece: piece[1] - piece[0])
    return widest[2]


def _widest_start(minors: MinorMap) -> int:
    return max(minors.pieces(), key=lambda piece: piece[1] - piece[0])[0]


def _delta(own: StepFn[NodeId], base: StepFn[NodeId], base_node: NodeId) -> StepFn[NodeId]:
    """``own`` with every stretch where it agrees with ``base`` sent to ``base_node`` instead.

    Why: the canonical form repeats the background's breakpoints (one per ``*:N`` rule) in the
    minor map of every major that has a rule of its own, so compiling each map on its own costs
    majors x wildcard-major rules.  A search over only the points where a major differs from the
    background, falling through to the background's (shared) search, costs what the major's own
    rules cost.  Exact: where the delta goes to ``base_node`` the two maps agree.  Linear merge.
    """
    pieces: list[tuple[int, NodeId]] = []
    i = j = 0
    os_, ov, bs, bv = own.starts, own.values, base.starts, base.values
    while i < len(os_) or j < len(bs):
        at = min(os_[i] if i < len(os_) else U32_MAX + 1, bs[j] if j < len(bs) else U32_MAX + 1)
        if i < len(os_) and os_[i] == at:
            i += 1
        if j < len(bs) and bs[j] == at:
            j += 1
        mine = ov[i - 1]
        pieces.append((at, base_node if mine == bv[j - 1] else mine))
    return StepFn.from_pieces(pieces)


def _pretests(policy: Policy) -> list[PreTest]:
    """Access tests whose taken masks get one answer for every device of the policy."""
    maps = {id(m): m for major_map in (policy.block, policy.char) for m in major_map.values}
    masksets = {ms for m in maps.values() for ms in m.values}
    out = []
    for test in ACCESS_TESTS:
        for exit_on_true in (True, False):
            decided = PreTest(test, exit_on_true, 0).decided
            answers = {ms & decided for ms in masksets}
            if decided and answers in ({0}, {decided}):
                out.append(PreTest(test, exit_on_true, int(answers == {decided})))
    return out


# -- search planning -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Piece:
    lo: int
    hi: int
    target: NodeId


@dataclass(frozen=True, slots=True)
class Chain:
    """Tests each non-background piece in turn, then goes to the background."""

    background: NodeId
    pieces: tuple[Piece, ...]
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Split:
    """``if x >= at goto right else left``."""

    at: int
    left: Plan
    right: Plan


Plan = NodeId | Chain | Split


def _piece_cost(piece: Piece, lo: int, hi: int) -> int:
    return 1 if piece.lo == piece.hi or piece.lo == lo or piece.hi == hi else 2


def _best_chain(pieces: Sequence[Piece]) -> tuple[int, Chain]:
    lo, hi = pieces[0].lo, pieces[-1].hi
    best: tuple[int, Chain] | None = None
    for background in dict.fromkeys(p.target for p in pieces):
        rest = tuple(p for p in pieces if p.target != background)
        cost = sum(_piece_cost(p, lo, hi) for p in rest)
        if best is None or cost < best[0]:
            best = (cost, Chain(background, rest, lo, hi))
    assert best is not None
    return best


def _plan_exact(pieces: Sequence[Piece]) -> Plan:
    """Minimise size + worst depth over chains and splits (few pieces only: O(n^4))."""
    memo: dict[tuple[int, int], tuple[int, int, Plan]] = {}

    def solve(i: int, j: int) -> tuple[int, int, Plan]:
        if (i, j) in memo:
            return memo[i, j]
        part = pieces[i:j]
        if len(part) == 1:
            result: tuple[int, int, Plan] = (0, 0, part[0].target)
        else:
            cost, chain = _best_chain(part)
            result = (cost, cost, chain)
            for k in range(i + 1, j):
                ls, ld, lp = solve(i, k)
                rs, rd, rp = solve(k, j)
                size, depth = 1 + ls + rs, 1 + max(ld, rd)
                if size + depth < result[0] + result[1]:
                    result = (size, depth, Split(pieces[k].lo, lp, rp))
        memo[i, j] = result
        return result

    return solve(0, len(pieces))[2]


def _plan_balanced(pieces: Sequence[Piece]) -> Plan:
    """Chains for short stretches, balanced splits above: O(n log n) for huge maps."""
    if len(pieces) == 1:
        return pieces[0].target
    # Neighbours differ, so at least half of the pieces are not the background: skip hopeless chains.
    if len(pieces) // 2 <= CHAIN_LIMIT:
        cost, chain = _best_chain(pieces)
        if cost <= CHAIN_LIMIT:
            return chain
    mid = len(pieces) // 2
    return Split(pieces[mid].lo, _plan_balanced(pieces[:mid]), _plan_balanced(pieces[mid:]))


def plan_search(starts: Sequence[int], targets: Sequence[NodeId]) -> Plan:
    ends = [*starts[1:], U32_MAX + 1]
    pieces = [Piece(lo, end - 1, t) for lo, end, t in zip(starts, ends, targets, strict=True)]
    if len(pieces) == 1:
        return pieces[0].target
    if len(pieces) <= EXACT_PLAN_PIECES:
        cost, chain = _best_chain(pieces)
        # A chain of one or two compares scores 2 or 4 (size + depth); no split scores less.
        return chain if cost <= 2 else _plan_exact(pieces)
    return _plan_balanced(pieces)


# -- blocks and layout ---------------------------------------------------------------------------


@dataclass(slots=True)
class Block:
    """Straight-line code; ``next`` is where it continues (fall-through or ``goto``) if set."""

    name: str
    items: list[Insn | Jump] = field(default_factory=list)
    next: str | None = None

    def jump_targets(self) -> Iterable[str]:
        for item in self.items:
            if isinstance(item, Jump) and isinstance(item.target, str):
                yield item.target


def _label(node: NodeId) -> str:
    return f"n{node}"


def _cmp(op: str, reg: int, imm: int, target: str | int) -> Jump:
    return jmp(op, reg, target, imm=imm, wide32=True)


class _Emitter:
    def __init__(self, graph: _Graph) -> None:
        self.graph = graph
        self.blocks: dict[str, Block] = {}
        self._fresh = 0

    def emit_all(self, root: NodeId) -> None:
        todo = [root]
        while todo:
            node_id = todo.pop()
            if _label(node_id) in self.blocks:
                continue
            self._emit(node_id)
            todo.extend(self._children(self.graph.nodes[node_id]))

    def _children(self, node: Node) -> list[NodeId]:
        if isinstance(node, Search):
            return list(node.values)
        if isinstance(node, TypeSplit):
            return [node.block, node.char]
        if isinstance(node, PreTest):
            return [node.rest, self._exit_id(node.verdict)]
        if isinstance(node, TestLeaf):
            return [self._exit_id(0), self._exit_id(1)]
        return []

    def _exit_id(self, verdict: int) -> NodeId:
        return self.graph.intern(Exit(verdict))

    def _add(self, block: Block) -> Block:
        self.blocks[block.name] = block
        return block

    def _emit(self, node_id: NodeId) -> None:
        node = self.graph.nodes[node_id]
        name = _label(node_id)
        at = REG_ACCESS_TYPE
        if isinstance(node, Exit):
            self._add(Block(name, [alu32("mov", 0, imm=node.verdict), exit_()]))
        elif isinstance(node, TestLeaf):
            target = _label(self._exit_id(node.when_true))
            self._add(Block(name, [_cmp(node.test.op, at, node.test.imm, target)]))
            self.blocks[name].next = _label(self._exit_id(1 - node.when_true))
        elif isinstance(node, MaskLeaf):
            items: list[Insn | Jump] = [
                alu32("rsh", at, imm=ACCESS_SHIFT),
                alu32("mov", 0, imm=node.maskset),
                alu32("rsh", 0, src=at),
                alu32("and", 0, imm=1),
                exit_(),
            ]
            self._add(Block(name, items))
        elif isinstance(node, TypeSplit):
            jump = _cmp("jset", at, TYPE_BLOCK_BIT, _label(node.block))
            self._add(Block(name, [jump], _label(node.char)))
        elif isinstance(node, PreTest):
            done, rest = _label(self._exit_id(node.verdict)), _label(node.rest)
            taken, other = (done, rest) if node.exit_on_true else (rest, done)
            self._add(Block(name, [_cmp(node.test.op, at, node.test.imm, taken)], other))
        else:
            plan = plan_search(node.starts, node.values)
            entry = self._add(Block(name, [ldx("w", node.reg, REG_CTX, node.offset)]))
            self._emit_plan(plan, entry, node.reg)

    def _target(self, plan: Plan, reg: int) -> str:
        """The label to jump to for ``plan``, emitting a block for it unless it is a node."""
        if isinstance(plan, NodeId):
            return _label(plan)
        self._fresh += 1
        block = self._add(Block(f"s{self._fresh}"))
        self._emit_plan(plan, block, reg)
        return block.name

    def _emit_plan(self, plan: Plan, block: Block, reg: int) -> None:
        if isinstance(plan, NodeId):
            block.next = _label(plan)
        elif isinstance(plan, Split):
            right = self._target(plan.right, reg)
            block.items.append(_cmp("jge", reg, plan.at, right))
            block.next = self._target(plan.left, reg)
        else:
            for piece in plan.pieces:
                target = _label(piece.target)
                if piece.lo == piece.hi:
                    block.items.append(_cmp("jeq", reg, piece.lo, target))
                elif piece.lo == plan.lo:
                    block.items.append(_cmp("jle", reg, piece.hi, target))
                elif piece.hi == plan.hi:
                    block.items.append(_cmp("jge", reg, piece.lo, target))
                else:
                    block.items.append(_cmp("jlt", reg, piece.lo, 1))
                    block.items.append(_cmp("jle", reg, piece.hi, target))
            block.next = _label(plan.background)


def _inline_size(blocks: dict[str, Block], name: str, limit: int) -> int:
    size = 0
    cursor: str | None = name
    while cursor is not None and size <= limit:
        block = blocks[cursor]
        size += len(block.items)
        cursor = block.next
    return size if cursor is None else limit + 1


def _inline_copy(blocks: dict[str, Block], name: str) -> list[Insn | Jump]:
    return [item for b in _tail_chain(blocks, name) for item in blocks[b].items]


def _layout(blocks: dict[str, Block], entry: str, duplicate_limit: int) -> list[Item]:
    """Order blocks topologically (forward jumps only), preferring fall-through successors.

    Small tails (``w0 = 1; exit`` and one-test leaves) are copied where a block would otherwise
    end in ``goto`` them; copies and fall-throughs are what keep executed counts minimal.
    """
    small = {n for n in blocks if _inline_size(blocks, n, duplicate_limit) <= duplicate_limit}
    succs: dict[str, list[str]] = {}
    for name, block in blocks.items():
        out = list(block.jump_targets())
        if block.next is not None:
            if block.next in small:
                out.extend(t for b in _tail_chain(blocks, block.next) for t in blocks[b].jump_targets())
            else:
                out.append(block.next)
        succs[name] = out
    preds: dict[str, int] = dict.fromkeys(blocks, 0)
    for name in _reachable(blocks, succs, entry):
        for s in succs[name]:
            preds[s] += 1
    ready = [entry]
    order: list[str] = []
    placed: set[str] = set()
    while ready:
        cursor: str | None = ready.pop()
        while cursor is not None and cursor not in placed:
            order.append(cursor)
            placed.add(cursor)
            for s in succs[cursor]:
                preds[s] -= 1
                if preds[s] == 0 and s != blocks[cursor].next:
                    ready.append(s)
            nxt = blocks[cursor].next
            cursor = nxt if nxt is not None and preds[nxt] == 0 else None
    if any(preds[n] for n in placed):
        raise AssertionError("compiler produced a cyclic block graph")
    items: list[Item] = []
    for index, name in enumerate(order):
        block = blocks[name]
        items.append(Label(name))
        items.extend(block.items)
        nxt = block.next
        if nxt is None or (index + 1 < len(order) and order[index + 1] == nxt):
            continue
        if nxt in small:
            items.extend(_inline_copy(blocks, nxt))
        else:
            items.append(ja(nxt))
    return items


def _tail_chain(blocks: dict[str, Block], name: str) -> list[str]:
    out = []
    cursor: str | None = name
    while cursor is not None:
        out.append(cursor)
        cursor = blocks[cursor].next
    return out


def _reachable(blocks: dict[str, Block], succs: dict[str, list[str]], entry: str) -> set[str]:
    seen: set[str] = set()
    stack = [entry]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(succs[name])
            nxt = blocks[name].next
            if nxt is not None:
                stack.append(nxt)
    return seen


# -- public API ----------------------------------------------------------------------------------


def _compile_with(policy: Policy, pretest: PreTest | None) -> list[tuple[Insn, ...]]:
    graph = _Graph()
    root = _build_graph(policy, pretest, graph)
    if isinstance(graph.nodes[root], Exit):
        verdict = graph.nodes[root].verdict  # type: ignore[union-attr]  # isinstance above: an Exit
        return [(alu32("mov", 0, imm=verdict), exit_())]
    emitter = _Emitter(graph)
    emitter.emit_all(root)
    prologue = Block("entry", [FINGERPRINT_FIRST], _label(root))
    emitter.blocks[prologue.name] = prologue
    limits = DUPLICATE_LIMITS if len(emitter.blocks) <= SMALL_PROGRAM_BLOCKS else DUPLICATE_LIMITS[:1]
    return [assemble(_layout(emitter.blocks, prologue.name, limit)) for limit in limits]


def worst_path(insns: Sequence[Insn]) -> int:
    """Most instructions any run executes (the program is a forward-only DAG by construction)."""
    longest = [0] * (len(insns) + 1)
    for pc in range(len(insns) - 1, -1, -1):
        insn = insns[pc]
        if insn.code == OPCODE_EXIT:
            longest[pc] = 1
            continue
        after = longest[pc + 1] if pc + 1 < len(insns) else 0
        if insn.is_jump:
            taken = longest[jump_target(insns, pc)]
            is_ja = insn.code in (OPCODE_JA, OPCODE_GOTOL)
            longest[pc] = 1 + (taken if is_ja else max(taken, after))
        else:
            longest[pc] = 1 + after
    return longest[0]


def _score(insns: Sequence[Insn]) -> tuple[int, int]:
    return (len(insns) + worst_path(insns), len(insns))


def compile_policy(policy: Policy) -> tuple[Insn, ...]:
    """Compile ``policy`` exactly (on every request mask) into a verifier-clean device program.

    Tries the program with and without each useful access pre-test, with shared and with copied
    exits, and keeps the best by size + worst-case executed instructions.
    """
    candidates = [None, *_pretests(policy)]
    best: tuple[Insn, ...] | None = None
    for pretest in candidates:
        for program in _compile_with(policy, pretest):
            if best is None or _score(program) < _score(best):
                best = program
    assert best is not None
    return best
