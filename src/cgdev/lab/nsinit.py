"""PID 1 of the lab's fresh namespaces, for the few milliseconds before it becomes systemd.

``unshare`` starts this module inside new PID, mount, cgroup, UTS, IPC and network namespaces,
after the launcher moved itself into the lab's cgroup (so that cgroup is the namespace's root).
It builds the private view systemd needs and then execs systemd in its own place, so systemd is
PID 1 of the namespace.  Everything mounted here lives in the private mount namespace: the host
never sees it, and it disappears with the last process of the lab.

For a non-host stack it first pivots into that stack's root (``ROOT``): fresh proc, sysfs,
cgroup2 and bpffs inside it, the host's /dev, and the stack's var dir (bundles, unit files) bound
at the same path, so the paths the host writes are the paths the lab reads.  After the pivot
the namespace's root is the stack's root, so ``nsenter -m`` lands there too.

Usage (only by the launcher): ``python -m cgdev.lab.nsinit UNIT_DIR STATE_DIR [ROOT VAR_DIR]``
(STATE_DIR only marks the process as this stack's, for ``leftovers``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
import sys
from typing import Final

from cgdev.lab.paths import PROBE_DIR_IN_LAB

MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MNT_DETACH: Final = 0x2

# name -> (major, minor): the nodes a probe opens from the lab's own view (outside containers).
PROBE_NODE_NUMBERS: Final[dict[str, tuple[int, int]]] = {
    "null": (1, 3),
    "zero": (1, 5),
    "nvidiactl": (195, 255),
}

_EMPTY_DIR: Final = "/run/cgdev-empty"
# glibc has no pivot_root wrapper: the syscall's number per architecture.
_SYS_PIVOT_ROOT: Final = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _LIBC.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _pure_cgroup2_view() -> None:
    """A hybrid host has a tmpfs of v1 hierarchies at /sys/fs/cgroup; systemd must see pure v2.

    Mounting cgroup2 afresh inside the new cgroup namespace roots it at the lab's cgroup, so
    systemd reports ``default-hierarchy=unified`` and manages only that subtree.
    """
    _check(_LIBC.umount2(b"/sys/fs/cgroup", MNT_DETACH), "umount /sys/fs/cgroup")
    _mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _private_bpffs() -> None:
    """crun >= 1.23 pins programs under /sys/fs/bpf: a private bpffs makes them die with the lab."""
    if os.path.isdir("/sys/fs/bpf"):
        _mount("bpf", "/sys/fs/bpf", "bpf")


def _enter_root(root: str, var_dir: str) -> None:
    """Make ``root`` the namespace's root, with the kernel filesystems systemd and crun need.

    pivot_root (not chroot) so the mount namespace's root *is* the stack's root: ``nsenter -m``
    (every ``lab exec``) then lands in it, and the host's tree is unmounted from the lab's view.
    """
    _mount(root, root, None, MS_BIND | MS_REC)
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("sysfs", f"{root}/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("cgroup2", f"{root}/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("bpf", f"{root}/sys/fs/bpf", "bpf")  # crun >= 1.23 pins its program here
    _mount("/dev", f"{root}/dev", None, MS_BIND | MS_REC)
    os.makedirs(f"{root}{var_dir}", exist_ok=True)
    _mount(var_dir, f"{root}{var_dir}", None, MS_BIND)
    os.chdir(root)
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_LIBC.syscall(number, b".", b"."), f"pivot_root {root}")
    _check(_LIBC.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")


def _console_on_pty() -> None:
    """systemd as PID 1 logs to /dev/console and it must be a tty: our stdin is the launcher's pty."""
    _mount(os.ttyname(0), "/dev/console", None, MS_BIND)


def _private_run() -> None:
    """The bus socket, /run/systemd, /run/crun and /run/runc must not be the host's."""
    _mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for path in ("/run/lock", _EMPTY_DIR):
        os.makedirs(path, exist_ok=True)


def _probe_nodes() -> None:
    """Device nodes need a filesystem without nodev; a small tmpfs keeps them out of /dev."""
    os.makedirs(PROBE_DIR_IN_LAB, exist_ok=True)
    _mount("tmpfs", PROBE_DIR_IN_LAB, "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name, (major, minor) in PROBE_NODE_NUMBERS.items():
        os.mknod(f"{PROBE_DIR_IN_LAB}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))


def systemd_environment(unit_dir: str) -> dict[str, str]:
    """The environment systemd starts with.

    The unit path must list /run/systemd/system.control and /run/systemd/transient before our
    unit dir: systemd keeps properties set on a transient scope after its creation (runc's
    DevicePolicy/DeviceAllow) as drop-ins there, and without them ``daemon-reload`` forgets them.
    No trailing ':' either, which would pull in Debian's own units (journald, udev, ...).
    """
    return {
        "container": "cgdev-lab",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "SYSTEMD_UNIT_PATH": f"/run/systemd/system.control:/run/systemd/transient:{unit_dir}",
        "SYSTEMD_GENERATOR_PATH": _EMPTY_DIR,
        "SYSTEMD_ENVIRONMENT_GENERATOR_PATH": _EMPTY_DIR,
    }


SYSTEMD_ARGV: Final = (
    "/usr/lib/systemd/systemd",
    "--log-target=console",
    "--log-level=info",
    "--show-status=no",
    "--default-standard-output=tty",
    "--default-standard-error=tty",
    "--unit=cgdev-lab.target",
)


def main(argv: list[str]) -> None:
    unit_dir = argv[1]
    if len(argv) > 4:
        _enter_root(argv[3], argv[4])
    else:
        _pure_cgroup2_view()
        _private_bpffs()
    _console_on_pty()
    _private_run()
    _probe_nodes()
    os.execve(SYSTEMD_ARGV[0], list(SYSTEMD_ARGV), systemd_environment(unit_dir))


if __name__ == "__main__":
    main(sys.argv)
