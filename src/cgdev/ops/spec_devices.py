"""Why a device that is in the container's spec is missing from systemd's ``DeviceAllow`` (issue 8 item 4).

A runtime with the systemd driver turns the spec's ``linux.resources.devices`` into the scope's
``DeviceAllow``, and systemd rebuilds its program from that list on every reload (DESIGN.md §9).
When the runtime leaves an entry out, the device works until the next reload and is then denied —
with the spec still listing it, so "put the device in the spec" is exactly the wrong advice.  The
known causes, by runtime:

- runc 1.1.3–1.1.6 skips an entry whose ``/dev/char/M:m`` (from 1.1.5: and ``/sys/dev/char/M:m``)
  does not exist on the host when the container is created — NVIDIA's nodes have neither: the
  "NVML: Unknown Error after daemon-reload" case; runc >= 1.1.7 checks only under systemd < 240;
- crun converts rules into properties its own way (``N:0`` widened, wildcards; DESIGN.md §1).

The fix for a running container is a grant on every layer (``cgdev grant``, which puts the device
in ``DeviceAllow``), and for the next ones the ``/dev/char`` links (``cgdev links --create``).

This module reads the spec (from the bundle the runtime's state names) and rewrites explain's
findings for such a request; it adds logic beside ``ops.findings`` rather than inside it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from cgdev.core.model import Request, Rule, access_to_str
from cgdev.ops.findings import SPEC_OR_CDI, Finding, FindingCode, Fix
from cgdev.ops.layers import Inspection
from cgdev.ops.reload import PredictedLayer, sd_verdict
from cgdev.ops.targets import Target

if TYPE_CHECKING:
    from cgdev.core.policy import Policy


def spec_rules(target: Target) -> list[Rule] | None:
    """The spec's device rules (``core.model.Rule``), or None when there is no readable spec."""
    if not target.bundle:
        return None
    try:
        with open(os.path.join(target.bundle, "config.json"), "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    import json

    from cgdev.core.rules import read_oci_config
    from cgdev.errors import CgdevError

    try:
        return list(read_oci_config(json.loads(raw)).rules)
    except (ValueError, CgdevError):
        return None


def in_spec(rules: Sequence[Rule], request: Request) -> bool:
    """An allow rule of the spec names exactly this device with (at least) the access asked."""
    for rule in rules:
        if (
            rule.allow
            and str(rule.type) == request.type
            and rule.major == request.major
            and rule.minor == request.minor
            and request.access & ~rule.access == 0
        ):
            return True
    return False


def _link_paths(request: Request, fs_root: str) -> tuple[str, bool, bool]:
    kind = "char" if request.type == "c" else "block"
    name = f"{request.major}:{request.minor}"
    dev_link = os.path.lexists(os.path.join(fs_root, "dev", kind, name))
    sys_link = os.path.exists(os.path.join("/sys/dev", kind, name))
    return f"/dev/{kind}/{name}", dev_link, sys_link


def skip_cause(target: Target, request: Request, systemd_fs_root: str) -> str:
    """The runtime's reason for leaving the device out of DeviceAllow, as far as the host shows it."""
    link, dev_link, sys_link = _link_paths(request, systemd_fs_root)
    runtime = (target.runtime or "").lower()
    if runtime.startswith("runc"):
        there = link if dev_link else f"/sys{link}"
        now = "neither exists on this host" if not (dev_link or sys_link) else (
            f"{there} exists now, so it was missing when the container was created"
        )  # fmt: skip
        return (
            f"runc 1.1.3-1.1.6 leaves a DeviceAllow entry out when {link} (from 1.1.5: and "
            f"/sys{link}) does not exist on the host when the container is created ({now}; "
            'the NVIDIA "NVML: Unknown Error after daemon-reload" case); runc >= 1.1.7 checks the '
            "path only under systemd < 240"
        )
    if runtime.startswith("crun"):
        return (
            "crun converts the spec's rules into DeviceAllow its own way (a minor 0 widened, "
            "wildcards, paths systemd resolves at load): this entry did not come through"
        )
    return f"the runtime ({target.runtime or 'unknown'}) did not pass this entry to systemd"


def _unit_missing(predicted: Sequence[PredictedLayer], request: Request) -> str | None:
    for layer in predicted:
        for program in layer.programs:
            if program.sd is not None and sd_verdict(program.sd, request).allowed is False:
                return program.unit or (layer.unit.unit if layer.unit is not None else None) or layer.cgroup
    return None


def revise(
    findings: Sequence[Finding],
    request: Request,
    inspection: Inspection,
    predicted: Sequence[PredictedLayer],
    systemd_fs_root: str = "/",
) -> list[Finding]:
    """``findings`` for a request whose device the spec lists: never "put it in the spec"; a
    grant the next reload drops is named for what it is (the runtime skipped the entry)."""
    rules = spec_rules(inspection.target)
    if rules is None or not in_spec(rules, request):
        return list(findings)
    out: list[Finding] = []
    unit = _unit_missing(predicted, request)
    for finding in findings:
        fixes = tuple(f for f in finding.fix if f != SPEC_OR_CDI)
        if finding.code is FindingCode.RELOAD_DROPS_GRANT and unit is not None:
            out.append(_skipped(request, inspection, unit, systemd_fs_root, finding.layer))
            continue
        out.append(Finding(finding.code, finding.message, fixes, finding.layer))
    if unit is not None and not any(f.code is FindingCode.SPEC_DEVICE_SKIPPED for f in out):
        out.append(_skipped(request, inspection, unit, systemd_fs_root, None))
    return out


def revise_audit(
    target: Target,
    findings: Sequence[Finding],
    predicted: Sequence[PredictedLayer],
    effective: Policy | None,
    after: Policy | None,
    systemd_fs_root: str = "/",
) -> tuple[Finding, ...]:
    """audit's per-container check: every device the spec names exactly that is allowed now and
    denied after the next reload because a unit's DeviceAllow lacks it gets its finding; the
    shape's ``reload-drops-grant`` goes when the spec lists everything it drops."""
    rules = spec_rules(target) if effective is not None and after is not None else None
    if not rules or effective is None or after is None:
        return tuple(findings)
    skipped = []
    inspection = Inspection(target, ())
    for rule in rules:
        if not rule.allow or rule.major is None or rule.minor is None or str(rule.type) not in ("c", "b"):
            continue
        request = Request(str(rule.type), rule.major, rule.minor, rule.access & 7)
        if not request.access or not effective.allows(request) or after.allows(request):
            continue
        unit = _unit_missing(predicted, request)
        if unit is not None:
            skipped.append(_skipped(request, inspection, unit, systemd_fs_root, None))
    if not skipped:
        return tuple(findings)
    from cgdev.core.policy import Policy
    from cgdev.core.semantics import policy_of

    all_in_spec = effective.minus(after).minus(policy_of(rules)) == Policy.deny_all()
    kept = [f for f in findings if not (all_in_spec and f.code is FindingCode.RELOAD_DROPS_GRANT)]
    return (*kept, *skipped)


def _skipped(request: Request, inspection: Inspection, unit: str, fs_root: str, layer: str | None) -> Finding:
    target = inspection.target
    kind = "char" if request.type == "c" else "block"
    entry = f"/dev/{kind}/{request.major}:{request.minor} {access_to_str(request.access)}"
    who = target.container_id or target.spec
    return Finding(
        FindingCode.SPEC_DEVICE_SKIPPED,
        f"{request} is in the container's spec (linux.resources.devices) but {unit}'s DeviceAllow has no "
        f"entry for it ({entry}), so the next daemon-reload or set-property denies it: "
        f"{skip_cause(target, request, fs_root)}",
        (
            Fix(
                f"grant it now on every layer, DeviceAllow included: `cgdev grant {shlex.quote(who)} "
                f"'{request.type} {request.major}:{request.minor}' --access {access_to_str(request.access)}`",
                "works now and survives reloads (verified by the kernel); recorded in `cgdev grants`",
            ),
            Fix(
                "create the /dev/char links on the host (`cgdev links --create`, or nvidia-ctk system "
                "create-dev-char-symlinks / its udev rule) so containers created from now on keep the entry",
                "fixes new containers only: a running one keeps its DeviceAllow until the grant above",
            ),
        ),
        layer,
    )


class MissingLink(msgspec.Struct, frozen=True):
    """A ``/dev/char`` (or ``/dev/block``) link the node's runc needs for a device that running
    containers' specs list: without it, runc leaves the device out of ``DeviceAllow`` for the next
    container created with it, which then loses it at the first reload (issue 9 item 4).

    ``certain`` is False when runc's or systemd's version is unknown: then the link is missing and
    runc 1.1.3-1.1.6 would skip the device, but whether this node's runc is one is not known."""

    link: str
    device: str
    containers: tuple[str, ...]
    runc: str | None
    certain: bool


def missing_links(
    targets: Sequence[Target],
    systemd_fs_root: str,
    systemd_version: str | None,
    runc_version: Callable[[], str | None],
) -> tuple[MissingLink, ...]:
    """The links runc would need for the exact devices in runc containers' specs, where they are
    missing and this node's runc checks for them.  ``runc_version`` is asked only when a link is
    missing (it runs the binary)."""
    from cgdev.core.semantics.runc_dev_char import dev_char_check, runc_passes_device

    wanted: dict[Request, list[str]] = {}
    for target in targets:
        if not (target.runtime or "").lower().startswith("runc"):
            continue
        for rule in spec_rules(target) or ():
            if rule.allow and rule.major is not None and rule.minor is not None and str(rule.type) in "cb":
                node = Request(str(rule.type), rule.major, rule.minor, 0)  # the node, not an access
                wanted.setdefault(node, []).append(target.container_id or target.spec)
    absent = []
    for request, users in wanted.items():
        link, _, sys_link = _link_paths(request, systemd_fs_root)
        if not os.path.exists(os.path.join(systemd_fs_root, link.lstrip("/"))):  # runc stats it
            absent.append((request, link, sys_link, users))
    if not absent:
        return ()
    runc = runc_version()
    check = dev_char_check(runc, systemd_version)
    found = []
    for request, link, sys_link, users in absent:
        passes = runc_passes_device(check, False, sys_link)
        if passes is True:
            continue
        text = f"{request.type} {request.major}:{request.minor}"
        found.append(MissingLink(link, text, tuple(sorted(set(users))), runc, passes is False))
    return tuple(found)
