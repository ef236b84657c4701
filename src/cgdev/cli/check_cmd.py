"""``cgdev check DEVICE...``: may this process open these device nodes?  For inside a container.

Entrypoint scripts and liveness probes run it in minimal images: no D-Bus, no root, no cgdev state.
So it imports only the stdlib and ``cgdev.adapters.node_access`` (``python -X importtime -m cgdev
check /dev/null`` shows no rich, jeepney, msgspec, yaml, lifter or compiler), and prints JSON with
the json module.
"""

from __future__ import annotations

import argparse
import sys

HELP = "check from inside a container whether this process may open device nodes (the kernel's answer)"
DESCRIPTION = """\
Ask the kernel whether this process may open (or mknod) each DEVICE node: each node is opened with
the access asked (O_NONBLOCK, closed at once; m: a mknod into a private temporary directory,
removed at once) and the errno says who answered:

  allowed   opened, or the driver answered (ENXIO, ENODEV, EBUSY): past the device cgroup
  denied    EPERM: refused by the device cgroup
  missing   ENOENT: no such node in this container
  unknown   anything else, named (EACCES: file permissions or a nodev mount refused it first;
            m without CAP_MKNOD in the initial user namespace cannot reach the device cgroup)

Exit status: 0 every node allowed, 1 some denied, missing or unknown, 2 bad input.  Needs no root,
D-Bus or cgdev state.  The open reaches the driver when allowed: for nodes whose open or close has
effects (a tape that rewinds on close) prefer a node without them.

  cgdev check /dev/nvidiactl /dev/nvidia0 || exit 1
  cgdev check --access r --json /dev/fuse
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("devices", nargs="+", metavar="DEVICE", help="device node paths, e.g. /dev/null")
    parser.add_argument("--access", default="rw", help="letters of r, w, m to ask (default rw)")
    parser.add_argument("--json", action="store_true", help="one JSON object (docs/json-schema.md)")


def run(args: argparse.Namespace) -> int:
    from cgdev.adapters.node_access import NodeVerdict, check_node, parse_access

    access = parse_access(args.access)
    results = [check_node(path, access) for path in args.devices]  # bad input raises before output
    all_allowed = all(r.verdict is NodeVerdict.ALLOWED for r in results)
    if args.json:
        import json

        document = {
            "allowed": all_allowed,
            "devices": [
                {
                    "path": r.path,
                    "device": None
                    if r.device is None
                    else dict(zip(("type", "major", "minor"), r.device, strict=True)),
                    "access": r.access,
                    "verdict": r.verdict.value,
                    "errno": r.errno_name,
                    "detail": r.detail,
                }
                for r in results
            ],
        }
        print(json.dumps(document, indent=2))
    else:
        for r in results:
            device = "" if r.device is None else "{} {}:{}, ".format(*r.device)
            verdict = "denied by the device cgroup" if r.verdict is NodeVerdict.DENIED else r.verdict.value
            print(f"{r.path}: {verdict} ({device}{r.detail})")
    sys.stdout.flush()
    return 0 if all_allowed else 1
