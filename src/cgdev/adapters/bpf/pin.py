"""Pins: programs kept in a bpf filesystem by path (systemd's BPFProgram= and crun read them)."""

from __future__ import annotations

import ctypes
import errno
import os

from cgdev.adapters.bpf.abi import BPF_OBJ_GET, BPF_OBJ_PIN, ObjAttr, bpf_error, errno_text, raw_bpf
from cgdev.adapters.bpf.fd import Fd, raw_fd
from cgdev.errors import EnvError, InputError, NeedsRoot


def obj_pin(fd: Fd | int, path: str) -> None:
    """Pin a program in a bpffs (systemd's BPFProgram= and crun read pins)."""
    encoded = ctypes.create_string_buffer(os.fsencode(path))
    attr = ObjAttr()
    attr.pathname = ctypes.addressof(encoded)
    attr.bpf_fd = raw_fd(fd)
    ret, err = raw_bpf(BPF_OBJ_PIN, attr)
    if ret < 0:
        if err == errno.EEXIST:
            raise EnvError(f"bpf(BPF_OBJ_PIN): pin {path} already exists")
        if err == errno.EPERM and os.geteuid() == 0:
            raise NeedsRoot(
                f"bpf(BPF_OBJ_PIN) refused {path}: {errno_text(err)} (is it on a bpf filesystem?)"
            )
        raise bpf_error(BPF_OBJ_PIN, err, f"pin directory of {path}")


def obj_get(path: str) -> Fd:
    """Open a pinned object."""
    encoded = ctypes.create_string_buffer(os.fsencode(path))
    attr = ObjAttr()
    attr.pathname = ctypes.addressof(encoded)
    ret, err = raw_bpf(BPF_OBJ_GET, attr)
    if ret < 0 and err in (errno.EACCES, errno.EPERM) and os.geteuid() == 0 and os.path.exists(path):
        # root is refused only for a file that is not a pin (or not on a bpf filesystem)
        raise InputError(f"pin {path}: not a pinned BPF object ({errno_text(err)})")
    if ret < 0:
        raise bpf_error(BPF_OBJ_GET, err, f"pin {path}")
    return Fd(ret)
