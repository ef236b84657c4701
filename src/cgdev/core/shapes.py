"""The programs runc 1.1.5, crun 1.21 and systemd 252 attach, reproduced instruction for instruction.

Why reproduce them at all: "what would crun do with this config" is only answered exactly by the
program crun would build, and the lifter, the interpreter and the benchmarks need the runtimes'
real shapes (tested byte-equal against programs captured from the real runtimes, see
tests/test_shapes.py).  Which rules a runtime tests, and in which order, is engineer A's
``cgdev.core.semantics`` (the emulators); this module only lays those rules out the way each
generator's C/Go code does:

- all three share the 6-instruction prologue crun took from systemd:
  ``r2 = type (w2 &= 0xffff)``, ``r3 = access (w3 >>= 16)``, ``r4 = major``, ``r5 = minor``;
- runc (``devicefilter.go``): per rule ``if r2 != type``; ``w1 = w3; w1 &= mask; if r1 != r3``
  unless the mask is rwm; ``if r4 != major``; ``if r5 != minor``; ``w0 = 1-or-0; exit`` (32-bit
  moves); terminal ``w0 = default; exit``;
- crun (``ebpf.c``): the same blocks but no type test for type ``a`` and 64-bit ``r0 = v`` moves,
  terminal ``r0 = 0; exit`` unless the chain ended in an unconditional rule;
- systemd (``bpf-devices.c``): access test first, then type, major, minor, then ``goto PASS``;
  the tail is ``r0 = 0; goto +1; PASS: r0 = 1; exit``; deny-everything is ``r0 = 0; exit``.

All of them compare with 64-bit ``JNE`` against a sign-extended 32-bit immediate, as the originals
do; so (like the originals) a rule with a major or minor >= 2^31 never matches.

The layouts have not changed since: crun 1.28 (its pinned ``BPFProgram`` as well as its
cgroupfs program), runc 1.3.6 and systemd 262 attach byte for byte what these build, measured on
Debian unstable in the lab (``cgdev lab up --stack sid``; tests/test_lab_stacks.py, docs/stacks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from cgdev.core.isa import Insn, Item, Jump, Label, alu32, alu64, assemble, exit_, ja, jmp, ldx
from cgdev.core.model import ACC_ALL, KERNEL_TYPE, Rule
from cgdev.errors import InputError

if TYPE_CHECKING:  # the systemd model is imported lazily, where a systemd shape is asked for
    from cgdev.core.semantics.systemd import StatFn

Shape = Literal["runc", "crun", "crun-1.8", "systemd"]
SHAPES: Final[tuple[Shape, ...]] = ("runc", "crun", "crun-1.8", "systemd")

R_ACCESS_TMP: Final = 1
R_TYPE: Final = 2
R_ACCESS: Final = 3
R_MAJOR: Final = 4
R_MINOR: Final = 5

PROLOGUE: Final[tuple[Insn, ...]] = (
    ldx("w", R_TYPE, 1, 0),
    alu32("and", R_TYPE, imm=0xFFFF),
    ldx("w", R_ACCESS, 1, 0),
    alu32("rsh", R_ACCESS, imm=16),
    ldx("w", R_MAJOR, 1, 4),
    ldx("w", R_MINOR, 1, 8),
)


def _jne(reg: int, value: int, target: str | int) -> Jump:
    return jmp("jne", reg, target, imm=value)


def _access_test(mask: int, target: str | int) -> list[Insn | Jump]:
    """``request & mask == request``, with R1 as scratch (the idiom all three share)."""
    return [
        alu32("mov", R_ACCESS_TMP, src=R_ACCESS),
        alu32("and", R_ACCESS_TMP, imm=mask),
        jmp("jne", R_ACCESS_TMP, target, src=R_ACCESS),
    ]


def _rule_block(rule: Rule, index: int, *, wide_return: bool) -> list[Item]:
    """One runc/crun block: tests that jump to the next block, then the rule's verdict."""
    nxt = f"rule{index + 1}"
    items: list[Item] = [Label(f"rule{index}")]
    if rule.type != "a":
        items.append(_jne(R_TYPE, KERNEL_TYPE[rule.type], nxt))
    if rule.access != ACC_ALL:
        items.extend(_access_test(rule.access, nxt))
    if rule.major is not None:
        items.append(_jne(R_MAJOR, rule.major, nxt))
    if rule.minor is not None:
        items.append(_jne(R_MINOR, rule.minor, nxt))
    items.extend(_return(int(rule.allow), wide=wide_return))
    return items


def _return(value: int, *, wide: bool) -> list[Item]:
    return [alu64("mov", 0, imm=value) if wide else alu32("mov", 0, imm=value), exit_()]


def runc_program(default_allow: bool, rules: Sequence[Rule]) -> tuple[Insn, ...]:
    """runc 1.1.5 ``DeviceFilter`` for the emulator's output (``semantics.runc_program_rules``)."""
    items: list[Item] = list(PROLOGUE)
    for i, rule in enumerate(rules):
        if rule.type == "a":
            raise InputError(f"rule {i + 1} ({rule}): runc's emulator never emits type a")
        items.extend(_rule_block(rule, i, wide_return=False))
    items.append(Label(f"rule{len(rules)}"))
    items.extend(_return(int(default_allow), wide=False))
    return assemble(items)


def crun_program(chain: Sequence[Rule], terminal: bool) -> tuple[Insn, ...]:
    """crun's ``create_dev_bpf`` (1.21, 1.8.1) for its test-ordered chain (``crun_program_rules``)."""
    items: list[Item] = list(PROLOGUE)
    for i, rule in enumerate(chain):
        items.extend(_rule_block(rule, i, wide_return=True))
    items.append(Label(f"rule{len(chain)}"))
    if terminal:
        items.extend(_return(0, wide=True))
    return assemble(items)


def systemd_entries_program(
    prologue: bool, entries: Sequence[Rule], deny_everything: bool
) -> tuple[Insn, ...]:
    """systemd 252 ``sd_devices`` for resolved allow entries, in emission order."""
    items: list[Item] = list(PROLOGUE) if prologue else []
    if deny_everything:
        items.extend(_return(0, wide=True))
        return assemble(items)
    for i, entry in enumerate(entries):
        nxt = f"entry{i + 1}"
        items.append(Label(f"entry{i}"))
        if entry.access != ACC_ALL:
            items.extend(_access_test(entry.access, nxt))
        items.append(_jne(R_TYPE, KERNEL_TYPE[entry.type], nxt))
        if entry.major is not None:
            items.append(_jne(R_MAJOR, entry.major, nxt))
            if entry.minor is not None:
                items.append(_jne(R_MINOR, entry.minor, nxt))
        items.append(ja("pass"))
    items.append(Label(f"entry{len(entries)}"))
    items.extend([alu64("mov", 0, imm=0), ja(1), Label("pass"), *_return(1, wide=True)])
    return assemble(items)


def systemd_properties_program(
    device_policy: str,
    device_allow: Sequence[tuple[str, str]],
    proc_devices: str = "",
    stat: StatFn | None = None,
) -> tuple[Insn, ...]:
    """What systemd 252 attaches for unit properties (DeviceAllow in ``systemctl show`` order).

    Returns ``()`` when systemd attaches no program at all (``auto`` without DeviceAllow).
    """
    from cgdev.core.semantics import systemd as sd

    program = sd.systemd_program(device_policy, device_allow, proc_devices, stat)
    if not program.attached:
        return ()
    entries = [e.as_rule() for e in program.entries]
    return systemd_entries_program(program.prologue, entries, program.deny_everything)


def shape_program(spec_rules: Sequence[Rule], shape: str) -> tuple[Insn, ...]:
    """The program ``shape`` attaches for an OCI rule list (``linux.resources.devices``).

    ``systemd``: the rules become DevicePolicy=strict + DeviceAllow the way runc and crun convert
    them; systemd keeps its list newest-first, so the program tests the last rule first.  ``()``
    means no program (an allow-all list becomes ``DevicePolicy=auto`` with no entries).
    """
    if shape == "runc":
        from cgdev.core.semantics.runc import runc_program_rules

        default_allow, rules = runc_program_rules(spec_rules)
        return runc_program(default_allow, rules)
    if shape in ("crun", "crun-1.8"):
        from cgdev.core.semantics.crun import crun_emits_terminal, crun_program_rules

        chain = crun_program_rules(spec_rules, "1.8" if shape == "crun-1.8" else "1.21")
        return crun_program(chain, crun_emits_terminal(chain))
    if shape == "systemd":
        from cgdev.core.semantics.systemd import systemd_properties_of

        props = systemd_properties_of(spec_rules)
        return systemd_properties_program(props.device_policy, list(reversed(props.device_allow)))
    raise InputError(f'shape "{shape}": not one of {", ".join(SHAPES)}')
