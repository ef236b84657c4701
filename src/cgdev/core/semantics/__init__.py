"""Rule list -> Policy under a named semantics (DESIGN.md §4).

A rule list means different things to different runtimes, so every conversion names its
semantics: ``ordered`` (cgdev's own, the default), ``runc`` (1.1.5), ``crun`` (1.21), ``crun-1.8``
(1.8.1, Debian 12's), ``systemd`` (252) and ``v1`` (the kernel's devices.allow/deny).  Each
module's docstring says how its semantics differs from the others, including the runtime's forced
default devices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from cgdev.core.model import Rule
from cgdev.core.policy import Policy
from cgdev.core.semantics.crun import crun_1_8_policy, crun_emits_terminal, crun_policy, crun_program_rules
from cgdev.core.semantics.defaults import CRUN_DEFAULTS, CRUN_SENTINEL, RUNC_DEFAULTS
from cgdev.core.semantics.firstmatch import first_match_policy, is_unconditional
from cgdev.core.semantics.ordered import ordered_policy
from cgdev.core.semantics.runc import RuncEmulator, exceptions_policy, runc_policy, runc_program_rules
from cgdev.core.semantics.systemd import (
    SdEntry,
    SdProgram,
    SystemdProperties,
    device_allow_path,
    proc_device_names,
    systemd_entries,
    systemd_policy,
    systemd_program,
    systemd_properties_of,
    systemd_rules_policy,
)
from cgdev.core.semantics.v1 import v1_policy, v1_state
from cgdev.errors import InputError

SEMANTICS: Final[dict[str, Callable[[Sequence[Rule]], Policy]]] = {
    "ordered": ordered_policy,
    "runc": runc_policy,
    "crun": crun_policy,
    "crun-1.8": crun_1_8_policy,
    "systemd": systemd_rules_policy,
    "v1": v1_policy,
}


def policy_of(rules: Sequence[Rule], semantics: str = "ordered") -> Policy:
    """The exact policy of ``rules`` read the way ``semantics`` reads them."""
    try:
        build = SEMANTICS[semantics]
    except KeyError:
        raise InputError(f'semantics "{semantics}": not one of {", ".join(SEMANTICS)}') from None
    return build(list(rules))


__all__ = [
    "CRUN_DEFAULTS",
    "CRUN_SENTINEL",
    "RUNC_DEFAULTS",
    "SEMANTICS",
    "RuncEmulator",
    "SdEntry",
    "SdProgram",
    "SystemdProperties",
    "crun_emits_terminal",
    "crun_policy",
    "crun_program_rules",
    "device_allow_path",
    "exceptions_policy",
    "first_match_policy",
    "is_unconditional",
    "ordered_policy",
    "policy_of",
    "proc_device_names",
    "runc_policy",
    "runc_program_rules",
    "systemd_entries",
    "systemd_policy",
    "systemd_program",
    "systemd_properties_of",
    "systemd_rules_policy",
    "v1_policy",
    "v1_state",
]
