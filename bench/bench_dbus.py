"""Benchmark: reading a unit's device properties with jeepney versus ``busctl``, in the same run.

The question it answers: is an in-process D-Bus client worth it for the OCI hook and the CLI, or
would shelling out to ``busctl`` do?  Both do the same two round trips (GetUnit, then
Properties.GetAll) against the same bus, and the medians of N runs are printed as a table and as a
Markdown snippet.

    python bench/bench_dbus.py [--address ADDR] [--unit init.scope] [-n 200] [--busctl-n 50]

Without ``--address`` it uses the running cgdev lab, else the system
bus.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from cgdev.adapters.systemd_client import (
    MANAGER_INTERFACE,
    MANAGER_PATH,
    SYSTEMD_BUS_NAME,
    SystemdClient,
    bus_socket_path,
)
from cgdev.adapters.systemd_properties import cgroup_interface
from timing import median_ms


def default_address() -> str | None:
    """The lab's bus if one runs here (the thing cgdev talks to), else None (the system bus)."""
    try:
        from cgdev.lab.instance import find_lab

        lab = find_lab()
        if lab is not None:
            return lab.bus_address
    except Exception:  # the lab module is optional for a benchmark: fall back quietly
        pass
    return None


def busctl(address: str, *args: str) -> str:
    return subprocess.run(
        ["busctl", f"--address={address}", *args], capture_output=True, text=True, check=True
    ).stdout


def busctl_get_unit(address: str, unit: str) -> str:
    out = busctl(address, "call", SYSTEMD_BUS_NAME, MANAGER_PATH, MANAGER_INTERFACE, "GetUnit", "s", unit)
    return out.split()[1].strip('"')  # o "/org/freedesktop/systemd1/unit/..."


def busctl_get_all(address: str, unit: str) -> dict[str, object]:
    path = busctl_get_unit(address, unit)
    out = busctl(
        address,
        "--json=short",
        "call",
        SYSTEMD_BUS_NAME,
        path,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        "",
    )
    return {name: v["data"] for name, v in json.loads(out)["data"][0].items()}


def busctl_get_property(address: str, unit: str, interface: str) -> str:
    path = busctl_get_unit(address, unit)
    props = ("ControlGroup", "Delegate", "DevicePolicy", "DeviceAllow", "BPFProgram")
    return busctl(address, "get-property", SYSTEMD_BUS_NAME, path, interface, *props)


def fresh_process(address: str, unit: str) -> None:
    code = (
        "import sys\nfrom cgdev.adapters.systemd_client import SystemdClient\n"
        "with SystemdClient(sys.argv[1]) as c: c.unit_properties(sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, address, unit], check=True)


def empty_process() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default=None, help="D-Bus address or socket path (default: see above)")
    parser.add_argument("--unit", default="init.scope")
    parser.add_argument("-n", type=int, default=200, help="runs of each in-process case")
    parser.add_argument("--busctl-n", type=int, default=50, help="runs of each process-spawning case")
    args = parser.parse_args(argv)
    address = args.address or default_address()
    socket_path = bus_socket_path(address)
    bus = f"unix:path={socket_path}"
    unit = args.unit

    with SystemdClient(bus) as client:
        ours = client.unit_properties(unit)
        interface = cgroup_interface(unit)
        theirs = busctl_get_all(bus, unit)
        if theirs.get("ControlGroup") != ours.control_group:
            print(f"mismatch: busctl says {theirs.get('ControlGroup')!r}, jeepney {ours.control_group!r}")
            return 1
        rows = [
            (
                "jeepney, open connection: GetUnit + GetAll",
                median_ms(lambda: client.unit_properties(unit), args.n, 3),
            ),
        ]

    def cold() -> None:
        with SystemdClient(bus) as c:
            c.unit_properties(unit)

    rows += [
        ("jeepney, new connection + GetUnit + GetAll", median_ms(cold, args.n, 3)),
        (
            "python process: import + connect + GetUnit + GetAll",
            median_ms(lambda: fresh_process(bus, unit), 20, 1),
        ),
        ("python process doing nothing (baseline of the row above)", median_ms(empty_process, 20, 1)),
        (
            "busctl call GetUnit + busctl call GetAll (2 processes)",
            median_ms(lambda: busctl_get_all(bus, unit), args.busctl_n, 3),
        ),
        (
            "busctl call GetUnit + busctl get-property x5 (2 processes)",
            median_ms(lambda: busctl_get_property(bus, unit, interface), args.busctl_n, 3),
        ),
    ]

    print(f"bus {socket_path}, unit {unit}, medians (jeepney n={args.n}, busctl n={args.busctl_n})")
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"  {name:<{width}}  {ms:8.3f} ms")
    base = rows[0][1]
    print("\n| case | median | vs. open jeepney connection |\n|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.3f} ms | {ms / base:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
