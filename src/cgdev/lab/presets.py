"""The lab's scenarios as data: one preset per case of the reference table (DESIGN.md §1).

A preset says how to start a container (runtime, cgroup driver, annotations, devices granted
statically) and what a process inside it must observe when it opens /dev/nvidiactl at each step
of the timeline.  /dev/null must stay openable at every step of every case.  The expectations are
the measurements of the bash prototype on systemd 252, and hold for the runtime versions given;
``expectation`` adapts them to a systemd whose daemon-reload re-applies nothing (257).  The
``crun-pin-*`` cases are crun >= 1.23 under systemd (BPFProgram mode), measured on Debian
unstable's crun 1.28 + systemd 262 (``cgdev lab scenario --stack sid``, docs/stacks.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final

from cgdev.errors import InputError
from cgdev.lab.runtime import Driver

# The timeline every scenario runs, in this order.
STEPS: Final = ("start", "hook", "daemon-reload", "set-property")
ALLOWED: Final = "ENXIO"  # the cgroup let the open through; there is no NVIDIA driver behind it
DENIED: Final = "EPERM"
NOT_RUN: Final = None  # set-property needs a systemd scope; cgroupfs containers have none

Expectation = tuple[str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    runtime: str
    driver: Driver
    summary: str
    nvidiactl: Expectation  # the verdict at each of STEPS
    filtered_levels: int  # how many cgroups on the container's path carry a device program at start
    annotations: dict[str, str] = field(default_factory=dict)
    static_devices: tuple[tuple[int, int], ...] = ()
    versions: tuple[tuple[int, ...], tuple[int, ...]] = ((0,), (999,))  # [min, max) of the runtime
    # The hook has no program on the container's cgroup to prepend to and fails (nothing changes).
    hook_fails: bool = False
    # runc + systemd: the spec's device reaches DeviceAllow only if runc's /dev/char check passes
    # (``core.semantics.runc_dev_char``); where it does not, a reload drops it (``expectation``).
    dev_char_checked: bool = False

    @property
    def container_id(self) -> str:
        return f"lab-{self.name}"


_CRUN_SYSTEMD_PROPERTIES: Final = ((1, 18), (1, 23))  # DevicePolicy/DeviceAllow + own leaf program
_CRUN_181: Final = ((1, 8), (1, 9))
# crun pins its program and systemd attaches it (BPFProgram mode): no DeviceAllow, no leaf program.
_CRUN_BPFPROGRAM: Final = ((1, 23), (999,))
# The same timeline in both modes (measured on 1.21 and 1.28).
_CRUN_NEW: Final = ((1, 18), (999,))
_E, _A, _X = DENIED, ALLOWED, NOT_RUN

PRESETS: Final[dict[str, Preset]] = {
    p.name: p
    for p in (
        Preset("crun181-fs", "crun-1.8.1", "cgroupfs", "Debian 12 crun 1.8.1, cgroupfs: the hook works",
               (_E, _A, _A, _X), 1, versions=_CRUN_181),
        Preset("crun181-sd", "crun-1.8.1", "systemd",
               "crun 1.8.1 + systemd: no device properties on the scope, the hook works and survives reloads",
               (_E, _A, _A, _A), 1, versions=_CRUN_181),
        Preset("crun-fs", "crun", "cgroupfs", "crun >= 1.18, cgroupfs: one filter, the hook works",
               (_E, _A, _A, _X), 1, versions=_CRUN_NEW),
        Preset("crun-sd", "crun", "systemd",
               "crun 1.21 + systemd: the double filter; the scope's sd_devices still denies after the hook",
               (_E, _E, _E, _E), 2, versions=_CRUN_SYSTEMD_PROPERTIES),
        Preset("crun-sd-nosub", "crun", "systemd",
               "crun >= 1.18 + systemd, no sub-cgroup: the hook works until systemd re-applies the scope's "
               "program (sd_devices; crun's pinned BPFProgram from 1.23)",
               (_E, _A, _E, _E), 1, annotations={"run.oci.systemd.subgroup": ""}, versions=_CRUN_NEW),
        Preset("crun-sd-allow", "crun", "systemd",
               "crun 1.21 + systemd with 195:255 in resources.devices (CDI-like): allowed throughout",
               (_A, _A, _A, _A), 2, static_devices=((195, 255),), versions=_CRUN_SYSTEMD_PROPERTIES),
        Preset("crun-pin-sd", "crun", "systemd",
               "crun >= 1.23 + systemd: crun's pinned program on the scope is the only filter; "
               "the hook has no program to prepend to and fails",
               (_E, _E, _E, _E), 1, versions=_CRUN_BPFPROGRAM, hook_fails=True),
        Preset("crun-pin-sd-allow", "crun", "systemd",
               "crun >= 1.23 + systemd with 195:255 in resources.devices: allowed throughout, the hook fails",
               (_A, _A, _A, _A), 1, static_devices=((195, 255),), versions=_CRUN_BPFPROGRAM, hook_fails=True),
        Preset("runc-fs", "runc", "cgroupfs", "runc 1.1, cgroupfs: one filter, the hook works",
               (_E, _A, _A, _X), 1),
        Preset("runc-sd", "runc", "systemd",
               "runc 1.1 + systemd: the hook works until a reload re-adds sd_devices (NVML: Unknown Error)",
               (_E, _A, _E, _E), 1),
        Preset("runc-sd-allow", "runc", "systemd",
               "runc + systemd with 195:255 in resources.devices and no /dev/char link: runc >= 1.1.7 on "
               "systemd >= 240 keeps it through reloads; 1.1.3-1.1.6 skip it and the reload denies it",
               (_A, _A, _A, _A), 1, static_devices=((195, 255),), dev_char_checked=True),
    )
}  # fmt: skip


def expectation(preset: Preset, systemd_version: str | None, spec_device_kept: bool = True) -> Expectation:
    """The preset's timeline on this systemd: where a daemon-reload rebuilds no device program
    (systemd 257), the container sees after it exactly what it saw after the hook.
    ``spec_device_kept`` False: runc left the spec's device out of DeviceAllow (``runc_dev_char``),
    so systemd's program from the next reload or set-property on denies it."""
    from cgdev.core.semantics.systemd import reload_reapplies_devices

    start, hook, reload, set_property = preset.nvidiactl
    if not spec_device_kept:
        reload, set_property = DENIED, DENIED
    if reload_reapplies_devices(systemd_version):
        return (start, hook, reload, set_property)
    return (start, hook, hook, set_property)


def spec_device_kept(preset: Preset, runc_version: str, systemd_version: str | None) -> bool | None:
    """Whether runc passes the preset's spec devices to systemd on this host (True for presets
    without the check); None when the versions leave it unknown."""
    if not preset.dev_char_checked:
        return True
    from cgdev.core.semantics.runc_dev_char import dev_char_check, runc_passes_device

    check = dev_char_check(runc_version, systemd_version)
    kept = [
        runc_passes_device(
            check,
            os.path.exists(f"/dev/char/{major}:{minor}"),
            os.path.exists(f"/sys/dev/char/{major}:{minor}"),
        )
        for major, minor in preset.static_devices
    ]
    if any(k is None for k in kept):
        return None
    return all(kept)


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"preset: {name!r} is unknown (known: {', '.join(PRESETS)})") from None


def select(names: list[str]) -> list[Preset]:
    """``all`` or preset names, in the order given."""
    if not names or names == ["all"]:
        return list(PRESETS.values())
    return [get(n) for n in names]
