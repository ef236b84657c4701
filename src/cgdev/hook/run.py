"""The hook's work once the container may be entitled to something (``entry`` decided that).

Read the bundle's config.json (checked: under the engines' state dirs, no symlink on the way,
bounded), ask ``ops.entitled`` what the node's policy grants, log one line per refused claim,
and grant the rest on every layer through ``ops.prevent`` (issue 8's repair: programs, the unit's
``DeviceAllow``, verified by the kernel, recorded).  Both stages do the same: at
``createRuntime`` it grants, at ``poststart`` the same call is a re-check that repairs only what
a later hook (libnvidia-container's rewrites the leaf program) undid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cgdev.adapters.cdi_dirs import DEFAULT_DIRS
from cgdev.adapters.oci_bundle import DEFAULT_BUNDLE_DIRS, read_bundle_config
from cgdev.errors import EnvError
from cgdev.hook.entry import HookInputError, log_line
from cgdev.ops.entitled import entitled_devices, read_node_policy

if TYPE_CHECKING:
    from cgdev.hook.entry import Options, State


def run(state: State, opts: Options) -> int:
    # The state's status does not tell the stage (runc says "creating" at createRuntime and
    # "created" at poststart, crun "created" and "running"): only --stage does.
    stage = opts.stage or f"status {state.status}"
    if state.pid <= 0:
        raise HookInputError(f"state: field 'pid' {state.pid}: no process to grant to at {stage}")
    policy = read_node_policy(opts.policy)
    config = read_bundle_config(state.bundle, (*DEFAULT_BUNDLE_DIRS, *policy.bundle_dirs, *opts.bundle_dirs))
    cdi_dirs = tuple(opts.cdi_dirs) or DEFAULT_DIRS
    decision = entitled_devices(state.annotations, config, policy_path=opts.policy, cdi_dirs=cdi_dirs)
    who = f"cgdev-hook: {state.id}: "
    for line in decision.log_lines():
        log_line(opts, who + line)
    if decision.resolution is None or not decision.resolution.device_rules:
        return 0  # the hook grants cgroup rules only: nodes, env and mounts are the wrapper's
    from cgdev.ops.inspect import HostView
    from cgdev.ops.prevent import grant_entitled

    names = ", ".join(decision.resolution.names) or "policy"
    results = grant_entitled(str(state.pid), decision.resolution.device_rules, HostView.local(),
                             why=f"hook {stage} {state.id}: {names}")  # fmt: skip
    for result in results:
        log_line(opts, f"{who}{stage}: {result.line()}")
        if result.exit_code != 0:
            outcome = result.change.outcome
            raise EnvError(outcome.message if outcome else "the grant was not applied")
    return 0
