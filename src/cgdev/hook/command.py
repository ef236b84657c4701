"""``cgdev hook``: run the OCI hook (the same as ``cgdev-hook``), or ``cgdev hook install``.

Runtimes should call ``cgdev-hook`` (``cgdev.hook.entry``): this sub-command goes through the
CLI's parser and costs more; it exists so one binary does everything and for trying the hook by
hand (``cgdev hook < state.json``).
"""

from __future__ import annotations

import argparse

HELP = "OCI hook: grant a new container its entitled devices on every layer (`hook install`: hooks.d)"
DESCRIPTION = (
    "Run as an OCI hook (createRuntime and poststart): read the OCI state on stdin and the bundle's "
    "config.json, and grant on every layer, durably, exactly the devices the node's policy "
    "(/etc/cgdev/policy.yaml) entitles the container to: CDI names (cdi.k8s.io/* annotations) that "
    "resolve to specs installed on the node, the cgdev.io/devices annotation only where the policy "
    "enables it and only for the devices and access it lists, and the policy's image and namespace "
    "entries. Refused claims are one log line each. `cgdev hook install [--dir DIR]` writes the "
    "hooks.d file for podman and CRI-O. See docs/hook.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("run", "install"), default="run",
                        help="run the hook (default) or install its hooks.d file")  # fmt: skip
    parser.add_argument("--fail", choices=("closed", "open"), default="closed",
                        help="on an error: closed = exit non-zero, the container does not start (default); "
                        "open = warn and exit 0 (nothing is granted either way)")  # fmt: skip
    parser.add_argument("--policy", metavar="FILE", help="the node's policy (default /etc/cgdev/policy.yaml)")
    parser.add_argument("--cdi-dir", metavar="DIR", action="append", default=[],
                        help="CDI spec directory (repeatable; default /etc/cdi, /var/run/cdi)")  # fmt: skip
    parser.add_argument("--bundle-dir", metavar="DIR", action="append", default=[],
                        help="also accept bundles under DIR (repeatable)")  # fmt: skip
    parser.add_argument("--log", metavar="FILE", help="also append each log line to FILE")
    parser.add_argument("--stage", help="the hook stage (default: from the state's status)")
    parser.add_argument("--dir", metavar="DIR", help="install: the hooks.d directory "
                        "(default /etc/containers/oci/hooks.d)")  # fmt: skip
    parser.add_argument("--variant", choices=("annotations", "always"), default="annotations",
                        help="install: run for annotated containers only (default), or for every one "
                        "(needed for the policy's image and namespace entries)")  # fmt: skip
    parser.add_argument("--hook-path", metavar="PATH", help="install: the cgdev-hook executable")


def _hook_args(args: argparse.Namespace) -> list[str]:
    out = ["--fail", args.fail]
    if args.policy:
        out += ["--policy", args.policy]
    for d in args.cdi_dir:
        out += ["--cdi-dir", d]
    for d in args.bundle_dir:
        out += ["--bundle-dir", d]
    if args.log:
        out += ["--log", args.log]
    if args.stage:
        out += ["--stage", args.stage]
    return out


def run(args: argparse.Namespace) -> int:
    from cgdev.errors import InputError

    if args.action == "install":
        from cgdev.hook import install

        path = install.check_executable(args.hook_path or install.default_hook_path())
        if args.stage and args.stage not in install.STAGES:
            raise InputError(
                f"the hook works at {' and '.join(install.STAGES)}", field="stage", value=args.stage
            )
        stages = (args.stage,) if args.stage else install.STAGES
        document = install.hooks_d(args.variant, path, _hook_args(args), stages=stages)
        print(install.install(args.dir or install.HOOKS_DIRS[0], document))
        return 0
    from cgdev.hook.entry import main

    return main(_hook_args(args))
