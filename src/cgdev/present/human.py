"""Human views of explain, show and audit results (rich, imported only here, only when needed).

The JSON views are the contract; these are for people reading a terminal: a tree of layers with
each program's verdict and deciding rule, the final answer in one line, then the findings with
their fix options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

from cgdev.ops.explain import Explanation, LayerAnswer, PodExplanation
from cgdev.ops.findings import Finding, Fix
from cgdev.ops.reload import ProgramOrigin, reload_trigger

if TYPE_CHECKING:  # each command imports only the results it renders (explain must stay fast)
    from cgdev.ops.audit import AuditResult
    from cgdev.ops.lift_report import LiftReport
    from cgdev.ops.show import ShowResult
    from cgdev.ops.spec_devices import MissingLink


class ColorMode(StrEnum):
    """``--color``: styling (colour, bold, italic) on a terminal only (auto), always, or never."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


# A pipe gets whole lines, for grep (a unit's DeviceAllow list alone can pass 400 columns); an
# audit table, one line per container, is held to this many columns when piped (--wide: whole).
PIPE_WIDTH: Final = 100_000
AUDIT_PIPE_WIDTH: Final = 100


def make_console(color: str = ColorMode.AUTO, *, width: int | None = None, file: Any = None) -> Any:
    """A rich Console for ``file`` (stdout): styled as ``color`` and NO_COLOR say, ``width``
    columns wide (default: the terminal's; piped, ``COLUMNS`` if set, else whole lines).

    rich's own NO_COLOR support drops colour but keeps bold and italic; here NO_COLOR (set and
    not empty, per no-color.org) and ``--color=never`` drop every escape sequence, and ``always``
    styles a pipe too.
    """
    import os
    import sys

    from rich.console import Console

    stream = file if file is not None else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if color == ColorMode.ALWAYS:
        styled = True
    elif color == ColorMode.NEVER:
        styled = False
    else:
        styled = tty and not os.environ.get("NO_COLOR")
    if width is None and not tty:  # COLUMNS, when a user sets it, is a width asked for
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isascii() and columns.isdigit() and int(columns) >= 20 else PIPE_WIDTH
    return Console(
        file=stream,
        highlight=False,
        width=width,
        color_system=("standard" if not tty else "auto") if styled else None,
        force_terminal=styled,
        emoji=False,
    )


def _console() -> Any:
    return make_console()


def short_middle(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, its middle replaced by ``…``: a cgroup path's
    start (the slice) and end (the container) are what tell two paths apart."""
    if len(text) <= limit or limit < 8:
        return text
    parts = text.split("/")
    if len(parts) > 3:  # keep the first component and the leaf whole where they fit
        head, tail = "/".join(parts[:2]), parts[-1]
        if len(head) + len(tail) + 3 <= limit:
            return f"{head}/…/{tail}"
    keep = limit - 1
    front = keep // 3
    return text[:front] + "…" + text[len(text) - (keep - front) :]


def _path_room(console: Any, indent: int) -> int:
    """How many columns a cgroup path may take on a tree line ``indent`` deep."""
    width = console.width if console.width < PIPE_WIDTH else PIPE_WIDTH
    return max(20, width - indent)


_PATH = re.compile(r"/[^\s,;()'\"]+")


def _short_paths(console: Any, text: str) -> str:
    """Long paths in a message shortened in the middle on a narrow console (piped: whole)."""
    if console.width >= PIPE_WIDTH:
        return text
    room = _path_room(console, 12)
    return _PATH.sub(lambda m: short_middle(m.group(0), room), text)


_COMMAND = re.compile(r"`([^`]+)`")
# cgdev's commands that take the host flags (--lab, --ns-pid, --host-root, --bus...)
_HOST_COMMANDS: Final = frozenset({"grant", "revoke", "explain", "show", "audit", "snapshot", "watch"})


@dataclass(frozen=True, slots=True)
class CommandHost:
    """How a printed fix command reaches the host the user looked at: the host flags the user
    gave, appended to each ``cgdev`` command that takes them, and the prefix that runs
    ``systemctl`` in that host (``cgdev lab exec --`` for the lab).  The findings say *what* to
    run; where to run it is the user's invocation, so it is applied here, once, for every fix."""

    cgdev_flags: tuple[str, ...] = ()
    systemctl_prefix: tuple[str, ...] = ()

    def command(self, text: str) -> str:
        import shlex

        words = text.split()
        if words[:1] == ["cgdev"] and words[1:2] and words[1] in _HOST_COMMANDS and self.cgdev_flags:
            return f"{text} {shlex.join(self.cgdev_flags)}"
        if words[:1] == ["systemctl"] and self.systemctl_prefix:
            return f"{shlex.join(self.systemctl_prefix)} {text}"
        return text


def _fix_lines(action: str) -> tuple[str, list[str]]:
    """A fix's prose (each quoted command shortened to its first words) and the commands whole,
    to print one per line: a command is never wrapped, so it copies as it was meant."""
    commands = [c for c in _COMMAND.findall(action) if " " in c]

    def shorten(match: re.Match[str]) -> str:
        words = match.group(1).split()
        return f"`{' '.join(words[:2])} …`" if len(words) > 3 else match.group(0)

    prose = _COMMAND.sub(shorten, action) if commands else action
    return prose, commands


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


def _layers_tree(title: str, layers: tuple[LayerAnswer, ...], console: Any) -> Any:
    from rich.markup import escape
    from rich.tree import Tree

    tree = Tree(escape(title))
    room = _path_room(console, 4)
    for layer in layers:
        if not layer.programs and layer.unit is None:
            continue
        node = tree.add(escape(short_middle(layer.cgroup, room)))
        if layer.unit is not None:  # its own line, wrapped: the DeviceAllow list can be long
            props = _unit_properties(layer.unit, with_bpf=bool(layer.unit.bpf_program))
            node.add(f"[dim]{escape(layer.unit.unit)}: {escape(props)}[/]")
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
            line = node.add(f"{_mark(p.verdict.allowed)} {label}: {rule}{where}")
            if p.pin is not None:
                line.add(f"[dim]{escape(pinned_text(p.owner, p.pin))}[/]")
    return tree


def pinned_text(owner: str | None, pin: str) -> str:
    """How a pinned program is described: the runtime made it, systemd attaches it (crun >= 1.23
    hands its program over as ``BPFProgram=device:PIN``), so systemd re-attaches it on reload."""
    return f"{owner or 'a runtime'}'s program, pinned at {pin}; attached by systemd (BPFProgram=)"


def print_findings(console: Any, findings: tuple[Finding, ...], host: CommandHost | None = None) -> None:
    from rich.markup import escape
    from rich.padding import Padding

    shown: set[Fix] = set()
    for finding in findings:
        console.print(f"[bold yellow]{finding.code}[/]: {escape(_short_paths(console, finding.message))}")
        for fix in finding.fix:  # padded, so a narrow console keeps the indentation when it wraps
            if fix in shown:  # two findings often share a fix: its text once is enough
                short = re.split(r":| \(", fix.action, maxsplit=1)[0]
                console.print(Padding(f"- {escape(short)} (as above)", (0, 0, 0, 2), expand=False))
                continue
            shown.add(fix)
            prose, commands = _fix_lines(fix.action)
            console.print(Padding(f"- {escape(prose)}", (0, 0, 0, 2), expand=False))
            for command in commands:  # whole, never wrapped or cropped: it is there to be copied
                runnable = command if host is None else host.command(command)
                console.print(f"      $ {escape(runnable)}", soft_wrap=True)
            console.print(Padding(f"[italic dim]{escape(fix.tradeoff)}[/]", (0, 0, 0, 4), expand=False))


def verdict_line(result: Explanation) -> str:
    """The one line ``explain -q`` prints (markup): the verdict now, and after a reload if it differs."""
    line = f"verdict now: {_mark(result.allowed)}"
    if result.after_allowed != result.allowed:
        line += f" (after reload: {_mark(result.after_allowed)})"
    return line


def print_explanation(
    result: Explanation | PodExplanation, console: Any = None, *, quiet: bool = False,
    host: CommandHost | None = None,
) -> None:  # fmt: skip
    """``console``: a rich Console to print on (the lab demo's); default: stdout.  A pod: each
    container's explanation, then the pod's verdict naming the containers that decide it (``-q``:
    that last line only).  ``host``: how the fixes' commands reach the host looked at."""
    console = console if console is not None else _console()
    if isinstance(result, PodExplanation):
        from rich.markup import escape
        from rich.rule import Rule

        from cgdev.ops.targets import container_label

        if not quiet:
            for one in result.containers:
                console.print(Rule(escape(container_label(one.inspection.target)), align="left"))
                _print_one(one, console, host)
            console.print(Rule())
        count = len(result.containers)
        deciding = [container_label(c.inspection.target) for c in result.containers if c.allowed is not True]
        which = (
            f" ({', '.join(escape(d) for d in deciding)})" if deciding and result.allowed is not True else ""
        )
        console.print(  # one line, never wrapped: scripts and -q read it
            f"pod {escape(result.spec)}, {count} containers: verdict now: {_mark(result.allowed)}{which}",
            soft_wrap=True,
        )
        return
    if quiet:
        console.print(verdict_line(result))
        return
    _print_one(result, console, host)


def _print_one(result: Explanation, console: Any, host: CommandHost | None = None) -> None:
    from rich.markup import escape

    req = result.request
    asked = result.device if result.device == str(req) else f"{result.device} ({req})"
    target = result.inspection.target
    head = f"{target.spec or short_middle(target.cgroup, _path_room(console, 20))}: {asked}"
    if target.pod_uid and target.pod_uid not in target.spec:  # from the kubelet's cgroup names
        head += f" (pod {target.pod_uid})"
    console.print(_layers_tree(head, result.layers, console))
    if result.v1_allowed is not None:
        console.print(f"v1 devices.list: {_mark(result.v1_allowed)}")
    console.print(f"verdict now: {_mark(result.allowed)}")
    if result.after_allowed != result.allowed or _changes(result):
        trigger = reload_trigger(result.inspection.systemd_version)
        console.print(_layers_tree(f"after the next {trigger}", result.after_layers, console))
    console.print(f"verdict after reload: {_mark(result.after_allowed)}")
    for note in result.after_notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    print_findings(console, result.findings, host)


def explanation_text(result: Explanation, width: int) -> str:
    """``print_explanation``'s text for a console ``width`` columns wide (the lab demo's), trailing
    spaces removed: for a front end that prints through its own channel."""
    from rich.console import Console

    console = Console(highlight=False, width=width, color_system=None)
    with console.capture() as captured:
        print_explanation(result, console)
    return "\n".join(line.rstrip() for line in captured.get().rstrip("\n").splitlines())


def _changes(result: Explanation) -> bool:
    """Whether a reload changes any layer's programs (by identity and verdict)."""

    def shape(layers: tuple[LayerAnswer, ...]) -> list[list[tuple[int | None, bool | None]]]:
        return [[(p.id, p.verdict.allowed) for p in layer.programs] for layer in layers]

    return shape(result.after_layers) != shape(result.layers)


def show_summary(result: ShowResult) -> str:
    """The one line ``show -q`` prints: the effective allowlist's size, whether a reload changes
    it, and the findings' codes."""
    data = result.to_json()
    effective = data["effective"]
    rules = "unknown" if effective is None else f"{len(effective['rules'])} rules"
    changed = {True: "changes it", False: "keeps it", None: "unknown"}[data["after_reload"]["changed"]]
    codes = ", ".join(sorted({str(f.code) for f in result.findings})) or "none"
    target = result.inspection.target
    name = target.spec or target.cgroup
    return f"{name}: effective allowlist {rules}; next reload {changed}; findings: {codes}"


def print_show(
    result: ShowResult, console: Any = None, *, quiet: bool = False, host: CommandHost | None = None
) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    console = console if console is not None else _console()
    if quiet:
        console.print(escape(show_summary(result)))
        return
    target = result.inspection.target
    room = _path_room(console, 4)
    leaf = short_middle(target.cgroup, room)
    tree = Tree(f"{escape(target.spec or leaf)} -> {escape(leaf)}")
    for view in result.layers:
        if not view.programs and view.unit is None:
            continue
        node = tree.add(escape(short_middle(view.cgroup, room)))
        if view.unit is not None:
            props = _unit_properties(view.unit, with_bpf=True)
            node.add(f"[dim]{escape(view.unit.unit)}: {escape(props)}[/]")
        for p in view.programs:
            sub = node.add(
                f"#{p.record.id} {escape(p.record.name or 'unnamed')} ({p.generator}) tag {p.record.tag}"
            )
            if p.pin is not None:
                sub.add(f"[dim]{escape(pinned_text(p.owner, p.pin))}[/]")
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
    trigger = reload_trigger(result.inspection.systemd_version)
    if after["changed"]:
        console.print(f"[bold]after the next {trigger}:[/]")
        _print_rules(console, after["effective"])
        for label in ("lost", "gained"):
            if after[label]:
                shown = (f"{r['type']} {r['major']}:{r['minor']} {r['access']}" for r in after[label])
                console.print(f"  {label}: " + ", ".join(shown))
    elif after["changed"] is None:  # unknown reads as unknown, never as unchanged
        console.print(f"after the next {trigger}: [yellow]unknown[/] (see the notes)")
    else:
        console.print(f"after the next {trigger}: unchanged")
    for note in after["notes"]:
        console.print(f"[dim]note: {escape(note)}[/]")
    print_findings(console, result.findings, host)


def _print_rules(console: Any, rules: dict[str, Any] | None) -> None:
    from rich.markup import escape

    if rules is None:
        console.print("  [yellow]unknown (an opaque program, or systemd not asked: see the notes)[/]")
        return
    for rule in rules["rules"] or ["deny a *:* rwm (nothing allowed)"]:
        console.print(f"  {escape(rule)}")
    for warning in rules["warnings"]:
        console.print(f"  [dim]{escape(warning)}[/]")


def audit_summary(result: AuditResult) -> str:
    """The one line ``audit -q`` prints: containers, how many have findings, which codes."""
    count = len(result.rows)
    flagged = [row for row in result.rows if row.findings]
    codes = ", ".join(sorted({str(f.code) for row in flagged for f in row.findings}))
    line = f"{count} container{'' if count == 1 else 's'}, {len(flagged)} with findings"
    line += f" ({codes})" if codes else ""
    line += f", {len(result.missing_links)} missing /dev/char links" if result.missing_links else ""
    return line + (f", {len(result.errors)} skipped" if result.errors else "")


def print_audit(result: AuditResult, console: Any = None, *, wide: bool = False, quiet: bool = False) -> None:
    """One line per container.  Piped, the table holds to 100 columns (cgroup paths shortened in
    the middle); ``wide``: every column whole, folded rather than cut (``--json`` has it all)."""
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        import sys

        piped = not sys.stdout.isatty()
        console = make_console(width=None if wide or not piped else AUDIT_PIPE_WIDTH)
    if quiet:  # one line whatever its length: scripts read it (a long lab wrapped it at 100 columns)
        console.print(escape(audit_summary(result)), soft_wrap=True)
        return
    count = len(result.rows)
    title = f"{count} container{'' if count == 1 else 's'}, {result.seconds * 1000:.0f} ms"
    # narrow: no box (its rules cost a column per cell); wide: rich's default box, as before
    table = Table(title=title) if wide else Table(title=title, box=None, pad_edge=False)
    width = min(console.width, PIPE_WIDTH)
    names = [row.target.name or _short_id(row.target.container_id or "", wide) or row.target.spec
             for row in result.rows]  # fmt: skip
    findings = [", ".join(sorted({str(f.code) for f in row.findings})) or "-" for row in result.rows]
    # the pod from the kubelet's cgroup names, cut as kubectl users read UIDs; no column off Kubernetes
    pods = [(row.target.pod_uid or "-")[: None if wide else 8] for row in result.rows]
    with_pods = any(row.target.pod_uid for row in result.rows)
    fixed = max((len(n) for n in names), default=9) + 8 + 8 + max((len(f) for f in findings), default=8) + 8
    room = max(16, width - fixed - (10 if with_pods else 0))
    overflow: Literal["fold", "ellipsis"] = "fold" if wide else "ellipsis"
    # every header whole (min_width): a cut header ("runti…") names no column
    table.add_column("container", overflow=overflow, no_wrap=not wide, min_width=len("container"))
    if with_pods:
        table.add_column("pod", no_wrap=True, min_width=len("pod"))
    table.add_column("runtime", no_wrap=True, min_width=len("runtime"))
    table.add_column("cgroup", overflow=overflow, no_wrap=not wide,  # shortened in the middle below
                     min_width=len("cgroup"))  # fmt: skip
    table.add_column("programs", justify="right", no_wrap=True, min_width=len("programs"))
    table.add_column("findings", overflow=overflow, no_wrap=not wide, min_width=len("findings"))
    for row, name, found, pod in zip(result.rows, names, findings, pods, strict=True):
        t = row.target
        cgroup = t.cgroup if wide else short_middle(t.cgroup, room)
        table.add_row(
            escape(name),  # ids cut as docker prints them
            *([escape(pod)] if with_pods else []),
            t.runtime or "",
            escape(cgroup),
            str(row.programs),
            escape(found) if row.findings else "[green]-[/]",
        )
    console.print(table)
    for missing in result.missing_links:
        console.print(escape(missing_link_line(missing)), soft_wrap=True)
    for error in result.errors:
        console.print(f"[yellow]skipped: {escape(error)}[/]", soft_wrap=True)


_HEX_ID = re.compile(r"[0-9a-f]{32,}")


def _short_id(container_id: str, wide: bool) -> str:
    """A 64-hex engine id cut to 12 as docker and podman print it (``--wide``: whole); any other
    id (a name-like id) whole: cut, it would name nothing."""
    return container_id[:12] if not wide and _HEX_ID.fullmatch(container_id) else container_id


def missing_link_line(missing: MissingLink) -> str:
    """One line per missing link: which device, whose specs, why it matters, the fix."""
    users = ", ".join(c[:12] for c in missing.containers[:3]) + (
        " ..." if len(missing.containers) > 3 else ""
    )
    who = f"runc ({missing.runc})" if missing.certain else "runc 1.1.3-1.1.6 (this node's version is unknown)"
    return (
        f"missing link {missing.link} for {missing.device} (in the spec of {users}): {who} leaves the "
        "device out of DeviceAllow for containers created from now on, and they lose it at the next "
        "daemon-reload; fix: `cgdev links --create`"
    )


_WORD = {True: "allowed", False: "denied", None: "unknown"}


def print_lift(report: LiftReport, cgroup: str | None = None) -> None:
    """Each program's rules with their instruction ranges, its checks, then the overall verdicts
    (plain lines: a listing to compare and grep, no tree)."""
    programs = [p.to_json() for p in report.programs]
    if not programs and cgroup is not None:
        print(f"no device program is attached to {cgroup} (its parents' programs still apply)")
    for prog in programs:
        name = f" ({prog['name']})" if prog.get("name") else ""
        made_by = f"{prog['generator']} [{prog['releases']}]" if prog.get("releases") else prog["generator"]
        print(f"{prog['source']}{name}: {made_by}, {prog['instructions']} instructions")
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
