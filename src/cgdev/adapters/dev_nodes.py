"""Character device nodes and ``/dev/char`` links on disk: scanning, and creating links atomically.

A link is written as a symlink under a temporary name in the same directory and renamed over the
final name, so a reader (systemd resolving ``DeviceAllow=``) sees the old state or the new one,
never a half-made link; a file that is not a symlink is never replaced.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from cgdev.core.dev_char import CharNode, ExistingLink
from cgdev.errors import EnvError, NeedsRoot

# Never descended into: the links themselves, and the kernel's pseudo-terminal and IPC mounts
# (those are also on other filesystems, which the scan does not enter either).
_SKIP = frozenset({"char", "block", "pts", "shm", "mqueue", "hugepages"})


def char_node(path: str, sys_dir: str = "/sys") -> CharNode | None:
    """The char node at ``path`` (not following a final symlink), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    known = os.path.exists(os.path.join(sys_dir, "dev", "char", f"{major}:{minor}"))
    return CharNode(os.path.abspath(path), major, minor, known)


def scan_char_nodes(dev_dir: str, sys_dir: str = "/sys") -> Iterator[CharNode]:
    """Every char node under ``dev_dir`` on its own filesystem (symlinks are not nodes)."""
    dev_dir = os.path.abspath(dev_dir)
    root_dev = os.lstat(dev_dir).st_dev
    stack = [dev_dir]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev == root_dev and not (directory == dev_dir and entry.name in _SKIP):
                    stack.append(entry.path)
            elif stat.S_ISCHR(st.st_mode):
                major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
                known = os.path.exists(os.path.join(sys_dir, "dev", "char", f"{major}:{minor}"))
                yield CharNode(entry.path, major, minor, known)


def read_char_links(char_dir: str) -> dict[str, ExistingLink]:
    """What ``char_dir`` holds, by name."""
    found: dict[str, ExistingLink] = {}
    try:
        entries = list(os.scandir(char_dir))
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.is_symlink():
            found[entry.name] = ExistingLink(False)
            continue
        target = os.readlink(entry.path)
        try:
            st = os.stat(entry.path)
            resolves = (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) else None
        except OSError:
            resolves = None
        found[entry.name] = ExistingLink(True, target, resolves)
    return found


def install_link(char_dir: str, name: str, target: str) -> bool:
    """Point ``char_dir/name`` at ``target`` atomically; False (nothing done) when a file that is
    not a symlink is there.  ``NeedsRoot``/``EnvError`` when the directory cannot be written."""
    final = os.path.join(char_dir, name)
    temp = os.path.join(char_dir, f".{name}.cgdev-{os.getpid()}")
    try:
        os.makedirs(char_dir, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        os.symlink(target, temp)
        try:
            if not stat.S_ISLNK(os.lstat(final).st_mode):
                os.unlink(temp)
                return False
        except FileNotFoundError:
            pass
        os.rename(temp, final)
    except PermissionError as err:
        raise NeedsRoot(f"cannot write links: {err.strerror}", field="dev", value=char_dir) from None
    except OSError as err:
        raise EnvError(f"cannot write links: {err.strerror}", field="dev", value=char_dir) from None
    return True
