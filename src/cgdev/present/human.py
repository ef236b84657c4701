"""Human views of explain, show and audit results (rich, imported only here, only when needed).

The JSON views are the contract; these are for people reading a terminal: a tree of layers with
each program's verdict and deciding rule, the final answer in one line, then the findings with
their fix options.
"""

from __future__ import annotations

import re
from typing import Any

from cgdev.ops.audit import AuditResult
from cgdev.ops.explain import Explanation, LayerAnswer, PodExplanation
from cgdev.ops.findings import Finding, Fix
from cgdev.ops.lift_report import LiftReport
from cgdev.ops.reload import ProgramOrigin, reload_trigger
from cgdev.ops.show import ShowResult


def _console() -> Any:
    import sys

    from rich.console import Console

    # a pipe gets whole lines, for grep (rich would crop the tree at 80 columns; a unit's
    # DeviceAllow list alone can pass 400)
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 100_000)


def _mark(allowed: bool | None) -> str:
    if allowed is None:
        return "[yellow]unknown[/]"
    return "[green]allow[/]" if allowed else "[bold red]DENY[/]"


def _unit_properties(unit: Any, *, with_bpf: bool = False) -> str:
    """``DevicePolicy=strict DeviceAllow=/dev/char/1:3 rwm, char-pts rw`` as systemctl spells them."""
    allow = ", ".join(f"{path} {access}".rstrip() for path, access in unit.device_allow) or "-"
    text = f"DevicePolicy={unit.device_policy} DeviceAllow={allow}"
    if with_bpf:
        text += " BPFProgram=" + (", ".join(f"{kind}:{path}" for kind, path in unit.bpf_program) or "-")
    return text


def _unit_label(layer: LayerAnswer) -> str:
    unit = layer.unit
    if unit is None:
        return ""
    return f"  [dim]{unit.unit}: {_unit_properties(unit)}[/]"


def _layers_tree(title: str, layers: tuple[LayerAnswer, ...]) -> Any:
    from rich.markup import escape
    from rich.tree import Tree

    tree = Tree(title)
    for layer in layers:
        if not layer.programs and layer.unit is None:
            continue
        node = tree.add(f"{escape(layer.cgroup)}{_unit_label(layer)}")
        if not layer.programs:
            node.add("[dim]no device program[/]")
        for p in layer.programs:
            ident = f"#{p.id}" if p.id is not None else "(new)"
            where = (
                f" insns {p.verdict.insn_range[0]}-{p.verdict.insn_range[1]}" if p.verdict.insn_range else ""
            )
            source = (
                "" if p.source in (ProgramOrigin.ATTACHED, ProgramOrigin.KEPT) else escape(f" [{p.source}]")
            )
            rule = escape(p.verdict.rule or p.opaque or "")
            label = f"{ident} {escape(p.name or 'unnamed')} ({p.generator}){source}"
            node.add(f"{_mark(p.verdict.allowed)} {label}: {rule}{where}")
    return tree


def print_findings(console: Any, findings: tuple[Finding, ...]) -> None:
    from rich.markup import escape
    from rich.padding import Padding

    shown: set[Fix] = set()
    for finding in findings:
        console.print(f"[bold yellow]{finding.code}[/]: {escape(finding.message)}")
        for fix in finding.fix:  # padded, so a narrow console keeps the indentation when it wraps
            if fix in shown:  # two findings often share a fix: its text once is enough
                short = re.split(r":| \(", fix.action, maxsplit=1)[0]
                console.print(Padding(f"- {escape(short)} (as above)", (0, 0, 0, 2), expand=False))
                continue
            shown.add(fix)
            console.print(Padding(f"- {escape(fix.action)}", (0, 0, 0, 2), expand=False))
            console.print(Padding(f"[dim]{escape(fix.tradeoff)}[/]", (0, 0, 0, 4), expand=False))


def print_explanation(result: Explanation | PodExplanation, console: Any = None) -> None:
    """``console``: a rich Console to print on (the lab demo's); default: stdout.  A pod: each
    container's explanation, then the pod's verdict naming the containers that decide it."""
    console = console if console is not None else _console()
    if isinstance(result, PodExplanation):
        from rich.markup import escape
        from rich.rule import Rule

        from cgdev.ops.targets import container_label

        for one in result.containers:
            console.print(Rule(escape(container_label(one.inspection.target)), align="left"))
            _print_one(one, console)
        count = len(result.containers)
        console.print(Rule())
        deciding = [container_label(c.inspection.target) for c in result.containers if c.allowed is not True]
        which = (
            f" ({', '.join(escape(d) for d in deciding)})" if deciding and result.allowed is not True else ""
        )
        console.print(
            f"pod {escape(result.spec)}, {count} containers: verdict now: {_mark(result.allowed)}{which}"
        )
        return
    _print_one(result, console)


def _print_one(result: Explanation, console: Any) -> None:
    req = result.request
    asked = result.device if result.device == str(req) else f"{result.device} ({req})"
    head = f"{result.inspection.target.spec or result.inspection.target.cgroup}: {asked}"
    console.print(_layers_tree(head, result.layers))
    if result.v1_allowed is not None:
        console.print(f"v1 devices.list: {_mark(result.v1_allowed)}")
    console.print(f"verdict now: {_mark(result.allowed)}")
    if result.after_allowed != result.allowed or _changes(result):
        trigger = reload_trigger(result.inspection.systemd_version)
        console.print(_layers_tree(f"after the next {trigger}", result.after_layers))
    console.print(f"verdict after reload: {_mark(result.after_allowed)}")
    for note in result.after_notes:
        console.print(f"[dim]note: {note}[/]")
    print_findings(console, result.findings)


def explanation_text(result: Explanation, width: int) -> str:
    """``print_explanation``'s text for a console ``width`` columns wide (the lab demo's), trailing
    spaces removed: for a front end that prints through its own channel."""
    from rich.console import Console

    console = Console(highlight=False, width=width)
    with console.capture() as captured:
        print_explanation(result, console)
    return "\n".join(line.rstrip() for line in captured.get().rstrip("\n").splitlines())


def _changes(result: Explanation) -> bool:
    """Whether a reload changes any layer's programs (by identity and verdict)."""

    def shape(layers: tuple[LayerAnswer, ...]) -> list[list[tuple[int | None, bool | None]]]:
        return [[(p.id, p.verdict.allowed) for p in layer.programs] for layer in layers]

    return shape(result.after_layers) != shape(result.layers)


def print_show(result: ShowResult) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    console = _console()
    target = result.inspection.target
    tree = Tree(f"{escape(target.spec or target.cgroup)} -> {escape(target.cgroup)}")
    for view in result.layers:
        if not view.programs and view.unit is None:
            continue
        node = tree.add(escape(view.cgroup))
        if view.unit is not None:
            props = _unit_properties(view.unit, with_bpf=True)
            node.add(f"[dim]{escape(view.unit.unit)}: {escape(props)}[/]")
        for p in view.programs:
            sub = node.add(
                f"#{p.record.id} {escape(p.record.name or 'unnamed')} ({p.generator}) tag {p.record.tag}"
            )
            if p.opaque:
                sub.add(f"[yellow]opaque: {escape(p.opaque)}[/]")
            elif p.lifted is not None:
                for rule in p.lifted.rules:
                    sub.add(escape(str(rule)))
    console.print(tree)
    data = result.to_json()
    console.print("[bold]effective allowlist[/] (every layer ANDed):")
    _print_rules(console, data["effective"])
    after = data["after_reload"]
    if after["changed"] is None:
        trigger = reload_trigger(result.inspection.systemd_version)
        console.print(f"after the next {trigger}: [yellow]unknown[/] (see the notes)")
    elif after["changed"]:
        console.print(f"[bold]after the next {reload_trigger(result.inspection.systemd_version)}:[/]")
        _print_rules(console, after["effective"])
        for label in ("lost", "gained"):
            if after[label]:
                shown = (f"{r['type']} {r['major']}:{r['minor']} {r['access']}" for r in after[label])
                console.print(f"  {label}: " + ", ".join(shown))
    else:
        console.print(f"after the next {reload_trigger(result.inspection.systemd_version)}: unchanged")
    for note in after["notes"]:
        console.print(f"[dim]note: {escape(note)}[/]")
    print_findings(console, result.findings)


def _print_rules(console: Any, rules: dict[str, Any] | None) -> None:
    from rich.markup import escape

    if rules is None:
        console.print("  [yellow]unknown (an opaque program, or systemd not asked: see the notes)[/]")
        return
    for rule in rules["rules"] or ["deny a *:* rwm (nothing allowed)"]:
        console.print(f"  {escape(rule)}")
    for warning in rules["warnings"]:
        console.print(f"  [dim]{escape(warning)}[/]")


def print_audit(result: AuditResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    count = len(result.rows)
    table = Table(title=f"{count} container{'' if count == 1 else 's'}, {result.seconds * 1000:.0f} ms")
    for column in ("container", "runtime", "cgroup", "programs", "findings"):
        table.add_column(column, overflow="fold")  # a cut cgroup path would make two rows look alike
    for row in result.rows:
        t = row.target
        table.add_row(
            escape(t.name or (t.container_id or "")[:12] or t.spec),  # ids cut as docker prints them
            t.runtime or "",
            escape(t.cgroup),
            str(row.programs),
            ", ".join(sorted({f.code for f in row.findings})) or "[green]-[/]",
        )
    console.print(table)
    for error in result.errors:
        console.print(f"[yellow]skipped: {escape(error)}[/]")


_WORD = {True: "allowed", False: "denied", None: "unknown"}


def print_lift(report: LiftReport, cgroup: str | None = None) -> None:
    """Each program's rules with their instruction ranges, its checks, then the overall verdicts
    (plain lines: a listing to compare and grep, no tree)."""
    programs = [p.to_json() for p in report.programs]
    if not programs and cgroup is not None:
        print(f"no device program is attached to {cgroup} (its parents' programs still apply)")
    for prog in programs:
        name = f" ({prog['name']})" if prog.get("name") else ""
        print(f"{prog['source']}{name}: {prog['generator']}, {prog['instructions']} instructions")
        if prog["opaque"]:
            print(f"  opaque: {prog['opaque']}")
        for rule in prog["rules"]:
            lo, hi = rule["insn_range"]
            print(f"  [{lo:>4}-{hi:<4}] {rule['text']}")
        for gap in prog.get("gaps", ()):  # instructions no rule above accounts for
            lo, hi = gap["insn_range"]
            print(f"  [{lo:>4}-{hi:<4}] ({gap['kind']}: {gap['why']})")
        if "policy_rules" in prog:
            print("  the same policy as rules (later rules override earlier ones):")
            for text in prog["policy_rules"] or ["deny a *:* rwm"]:
                print(f"    {text}")
        for check in prog["checks"]:
            where = f" by [{check['insn_range'][0]}-{check['insn_range'][1]}]" if check["insn_range"] else ""
            rule = f" {check['rule']}" if check["rule"] else ""
            print(f"  check {check['request']}: {_WORD[check['allowed']]}{where}{rule}")
    if len(programs) > 1 or not programs:
        for overall in report.overall:
            print(f"overall {overall.request}: {_WORD[overall.allowed]} (every program must allow)")
    for note in report.notes:
        print(f"note: {note}")
