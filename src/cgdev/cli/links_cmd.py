"""``cgdev links``: the ``/dev/char/MAJ:MIN`` links runc's systemd driver needs, checked or created."""

from __future__ import annotations

import argparse
import sys

from cgdev.present.json_out import print_json

HELP = "check or create the /dev/char/MAJ:MIN links that keep spec devices across systemd reloads"
DESCRIPTION = """\
runc with the systemd cgroup driver writes every device of a container's spec as
DeviceAllow=/dev/char/MAJ:MIN, and systemd drops an entry whose path does not exist: the device is
lost at the next daemon-reload. udev makes those links only for devices announced in sysfs; nodes a
driver's helper makes with mknod (/dev/nvidiactl, /dev/nvidia-uvm...) never get one.

  cgdev links            list the missing or wrong links (same as --check)
  cgdev links --create   create them: relative symlinks ../name, as udev writes them, made under a
                         temporary name and renamed into place; a correct link or a file that is not
                         a symlink is never replaced

Covered: every character node under --dev that udev does not link (no /sys/dev/char/MAJ:MIN), and
the host node of every CDI device. --all adds the nodes udev would link itself, for hosts and
containers where udev does not run or the links were lost. deploy/udev and deploy/systemd hold a
rule and a oneshot unit that run `cgdev links --create` at boot and when a driver module loads.
Exit status: 0 all links correct (or created), 1 links missing/wrong/blocked, 2 bad input,
3 no permission to write the links.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report missing or wrong links (the default)")
    mode.add_argument("--create", action="store_true", help="create missing links, fix wrong ones")
    parser.add_argument("--all", action="store_true", help="also nodes udev links itself")
    parser.add_argument("--dev", default="/dev", metavar="DIR", help="the device directory (default /dev)")
    parser.add_argument(
        "--spec-dir", action="append", metavar="DIR", dest="spec_dirs",
        help="CDI spec directory whose nodes are linked too (default /etc/cdi and /var/run/cdi)",
    )  # fmt: skip
    parser.add_argument("--no-cdi", action="store_true", help="do not read CDI specs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from cgdev.adapters.cdi_dirs import DEFAULT_DIRS
    from cgdev.core.dev_char import LinkState
    from cgdev.ops.dev_links import check_links, create_links

    spec_dirs = () if args.no_cdi else tuple(args.spec_dirs or DEFAULT_DIRS)
    checks, errors = check_links(args.dev, include_udev=args.all, spec_dirs=spec_dirs)
    for err in errors:
        print(f"cgdev links: warning: {err}", file=sys.stderr)
    before = {c.link: c.state for c in checks}
    if args.create:
        checks = create_links(checks)
    bad = [c for c in checks if c.state is not LinkState.OK]
    if args.json:
        import msgspec

        rows = []
        for c in checks:
            row = msgspec.to_builtins(c)
            row["created"] = args.create and before[c.link] is not LinkState.OK and c.state is LinkState.OK
            rows.append(row)
        print_json({"dev": args.dev, "links": rows})
        return 1 if bad else 0
    for c in checks:
        if args.create and c.state is LinkState.OK and before[c.link] is not LinkState.OK:
            print(f"created  {c.link} -> {c.target}")
        elif c.state is LinkState.MISSING:
            print(f"missing  {c.link} -> {c.target}")
        elif c.state is LinkState.WRONG:
            print(f"wrong    {c.link} -> {c.have or '?'} (should be {c.target})")
        elif c.state is LinkState.BLOCKED:
            print(f"blocked  {c.link} is not a symlink (left alone; should point at {c.target})")
    ok = sum(1 for c in checks if c.state is LinkState.OK)
    print(f"{ok} of {len(checks)} links correct")
    return 1 if bad else 0
