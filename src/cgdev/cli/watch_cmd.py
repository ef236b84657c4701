"""``cgdev watch``: the long-running watcher (and repairer) of entitled devices.

Parses arguments and hands over to the daemon front end (``cgdev.daemon.watch_loop``); asyncio,
jeepney's asyncio side and prometheus-client are imported only once the command runs.
"""

from __future__ import annotations

import argparse

from cgdev.adapters.cdi_dirs import DEFAULT_DIRS as DEFAULT_CDI_DIRS
from cgdev.cli.inspect_args import add_system_arguments
from cgdev.core.node_policy import DEFAULT_POLICY_PATH

HELP = "watch containers' device filters; report (and with --repair restore) lost entitled devices"
DESCRIPTION = """\
Watch every container on this host (the runtimes' state, and every cgroup cgdev's entitlements
file names) and report each device it is entitled to (cgdev's entitlements file, written by
`cgdev grant`; the exact device rules of its OCI spec) that becomes denied, with the layer, the
program and the cause; report devices that become allowed without any entitlement.  With --repair,
restore a lost device through the same transaction as `cgdev grant` (every layer, durably: the
unit's DeviceAllow too), at most --repair-limit times per container, then report the container as
flapping.  Only entitled devices are ever repaired.

It follows systemd's signals (daemon-reload, unit property changes, jobs, units appearing), polls
the program ids on each container's path every --interval seconds (BPF_PROG_QUERY only; programs
are lifted only when their ids change), reconnects to systemd with backoff and rescans everything
after a reconnect.  SIGHUP: look at every container now.  SIGTERM or SIGINT: finish the
container in hand, exit 0.

One line per event (`TIME EVENT key=value...`), or one JSON object per line with --json
(docs/watch.md lists the events).  --metrics-port serves /metrics (Prometheus) and /healthz on
--metrics-address (default 127.0.0.1); neither shows container names, paths or annotations.

  cgdev watch --repair --metrics-port 9402
  cgdev watch --lab --json
"""


def _limit(text: str) -> tuple[int, float]:
    count, _, window = text.partition("/")
    try:
        n, seconds = int(count), float(window or "60")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COUNT/SECONDS, e.g. 10/60, got {text!r}") from None
    if n < 1 or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected COUNT >= 1 and SECONDS > 0, got {text!r}")
    return n, seconds


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--repair", action="store_true", help="restore lost entitled devices (durably)")
    parser.add_argument("--metrics-port", type=_port, metavar="N",
                        help="serve /metrics and /healthz on this port (0: any free port)")  # fmt: skip
    parser.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                        help="address to bind the metrics port to (default 127.0.0.1)")  # fmt: skip
    parser.add_argument("--interval", type=_positive, default=2.0, metavar="SECONDS",
                        help="program-id poll and container discovery period (default 2)")  # fmt: skip
    parser.add_argument("--full-scan-interval", type=_positive, default=300.0, metavar="SECONDS",
                        help="look at every container again this often (default 300)")  # fmt: skip
    parser.add_argument("--repair-limit", type=_limit, default=(10, 60.0), metavar="COUNT/SECONDS",
                        help="at most COUNT repairs per container per SECONDS (default 10/60)")  # fmt: skip
    parser.add_argument(
        "--policy",
        default=DEFAULT_POLICY_PATH,
        metavar="FILE",
        help=f"the node's entitlement policy, as the hook reads it (default {DEFAULT_POLICY_PATH})",
    )
    parser.add_argument(
        "--cdi-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a CDI spec directory the policy's CDI names resolve in (default /etc/cdi, /var/run/cdi)",
    )
    parser.add_argument(
        "--no-policy", action="store_true", help="watch only the entitlements file and the containers' specs"
    )
    parser.add_argument("--only", action="append", default=[], metavar="CONTAINER",
                        help="watch only this container (id, id prefix or cgroup; repeatable)")  # fmt: skip
    add_system_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from cgdev.cli.inspect_args import host_from_args
    from cgdev.daemon.watch_loop import WatchOptions, run
    from cgdev.ops.reconcile import RepairLimit

    options = WatchOptions(
        repair=args.repair,
        as_json=args.json,
        interval=args.interval,
        full_scan_interval=args.full_scan_interval,
        limit=RepairLimit(*args.repair_limit),
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        only=tuple(args.only),
    )
    from cgdev.ops.watch import node_policy_trust

    trusted = None if args.no_policy else node_policy_trust(args.policy, args.cdi_dir or DEFAULT_CDI_DIRS)
    return run(host_from_args(args), options, trusted=trusted)
