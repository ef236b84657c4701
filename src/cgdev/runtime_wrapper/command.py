"""``cgdev runtime``: the wrapper runtime (the same as ``cgdev-runtime``) under the one CLI.

Engines should call ``cgdev-runtime`` (``cgdev.runtime_wrapper.entry``), which skips the CLI's
parser; this sub-command exists so one binary does everything.  Its arguments are the OCI
runtime's, which argparse cannot read (``--root DIR create --bundle B ID``): the dispatcher hands
them to ``entry.main`` untouched, and the parser here only serves ``--help``, completion and the
man page.
"""

from __future__ import annotations

import argparse

HELP = "wrapper OCI runtime: add the entitled devices to a bundle's spec on create, then exec crun/runc"
DESCRIPTION = (
    "Use as the runtime binary of an engine (podman --runtime, containerd's BinaryName, CRI-O's "
    "runtime_path, Docker's runtimes). On create/run it adds to the bundle's config.json exactly the "
    "devices the node's policy (/etc/cgdev/policy.yaml) entitles the container to (CDI names from "
    "cdi.k8s.io/* annotations that resolve to installed specs; policy-listed devices): linux.devices, "
    "linux.resources.devices and the CDI edits, written atomically; then it execs the real runtime "
    "with the same arguments. Every other subcommand is a plain exec. Leading wrapper options "
    "(--runtime-path, --policy, --cdi-dir, --bundle-dir, --fail closed|open) or the environment "
    "(CGDEV_RUNTIME_PATH, CGDEV_POLICY, CGDEV_CDI_DIRS, CGDEV_BUNDLE_DIRS, CGDEV_FAIL) configure it. "
    "See docs/runtime.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARG",
                        help="[wrapper options] then the OCI runtime's arguments, e.g. "
                        "--root /run/runc create --bundle B ID")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from cgdev.runtime_wrapper.entry import main

    return main(list(args.args))
