"""May *this* process open (or mknod) a device node?  Asked of the kernel, from inside a container.

For entrypoint scripts and liveness probes (``cgdev check``): the only authority a process inside a
container can ask without root, D-Bus or cgdev's state is the kernel itself, by trying.  An open
with the access asked (``O_PATH`` is not checked by the device cgroup) and ``O_NONBLOCK |
O_NOCTTY`` (no waiting for a carrier, no controlling terminal), closed at once; ``m`` by a mknod
into a private temporary directory, removed at once.  The errno says who answered:

- EPERM: the device cgroup refused (the kernel asks it after file permissions, before the driver);
- a successful open, or ENXIO / ENODEV / EBUSY: the request got past the device cgroup to the
  driver, so the cgroup allows it;
- ENOENT: the node is missing from this mount namespace;
- anything else (EACCES from file permissions or a ``nodev`` mount, ...): unknown, named.

mknod is refused with EPERM *before* the device cgroup is asked when the process lacks CAP_MKNOD
in the initial user namespace, so that case is unknown, never "denied".  Imports only the stdlib
and cgdev.errors: ``cgdev check`` must start fast in a minimal image.
"""

from __future__ import annotations

import enum
import errno
import os
import stat

from cgdev.errors import InputError

_CAP_MKNOD = 27
_OPEN_FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}
_DRIVER_ANSWERED = frozenset({errno.ENXIO, errno.ENODEV, errno.EBUSY})


class NodeVerdict(enum.Enum):
    """What the kernel answered for one node; ``unknown`` never reads as allowed."""

    ALLOWED = "allowed"
    DENIED = "denied"
    MISSING = "missing"
    UNKNOWN = "unknown"


class NodeCheck:
    """One node's answer: the device it is (None when missing), the errno that decided, why.

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, a measurable part of
    ``cgdev check``'s start-up.
    """

    __slots__ = ("access", "detail", "device", "errno_name", "path", "verdict")

    def __init__(
        self,
        path: str,
        access: str,
        verdict: NodeVerdict,
        device: tuple[str, int, int] | None,
        errno_name: str | None,
        detail: str,
    ) -> None:
        self.path = path
        self.access = access
        self.verdict = verdict
        self.device = device
        self.errno_name = errno_name
        self.detail = detail


def parse_access(text: str) -> str:
    """``--access``: a non-empty set of ``r``, ``w``, ``m``, returned in ``rwm`` order."""
    if not text or set(text) - set("rwm") or len(set(text)) != len(text):
        raise InputError("letters must be a non-empty set of r, w and m", field="--access", value=text)
    return "".join(c for c in "rwm" if c in text)


def _errno_name(err: int) -> str:
    return errno.errorcode.get(err, f"errno {err}")


def _may_mknod() -> str | None:
    """Why a mknod here cannot reach the device cgroup, or None when it can."""
    try:
        with open("/proc/self/status") as fh:
            cap_eff = next((line.split()[1] for line in fh if line.startswith("CapEff:")), "0")
        with open("/proc/self/uid_map") as fh:
            uid_map = fh.read().split()
    except OSError as exc:
        return f"cannot read /proc/self ({_errno_name(exc.errno or 0)})"
    if not int(cap_eff, 16) >> _CAP_MKNOD & 1:
        return "mknod needs CAP_MKNOD, which this process lacks: the kernel refuses before the device cgroup"
    if uid_map != ["0", "0", "4294967295"]:
        return "mknod of devices is refused in a user namespace before the device cgroup is asked"
    return None


def _try_open(path: str, access: str) -> int:
    """0 when the open succeeded (closed at once), else its errno."""
    try:
        fd = os.open(path, _OPEN_FLAGS[access] | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno or 0
    os.close(fd)
    return 0


def _try_mknod(kind: int, rdev: int) -> int:
    """0 when a mknod of the node in a private temporary directory succeeded, else its errno."""
    import tempfile

    try:
        scratch = tempfile.mkdtemp(prefix="cgdev-check-")
    except OSError as exc:
        return exc.errno or 0
    node = os.path.join(scratch, "node")
    try:
        os.mknod(node, kind | 0o600, rdev)
    except OSError as exc:
        return exc.errno or 0
    else:
        os.unlink(node)
        return 0
    finally:
        os.rmdir(scratch)


def _verdict(err: int, what: str) -> tuple[NodeVerdict, str]:
    if err == 0:
        return NodeVerdict.ALLOWED, f"{what}: done"
    name = _errno_name(err)
    if err == errno.EPERM:
        return NodeVerdict.DENIED, f"{what}: EPERM from the device cgroup"
    if err in _DRIVER_ANSWERED:
        return NodeVerdict.ALLOWED, f"{what}: {name} from the driver, past the device cgroup"
    if err == errno.EACCES:
        return NodeVerdict.UNKNOWN, f"{what}: EACCES (file permissions or a nodev mount refused it first)"
    return NodeVerdict.UNKNOWN, f"{what}: {name}"


def check_node(path: str, access: str) -> NodeCheck:
    """Ask the kernel whether this process may ``access`` (``parse_access``) the node at ``path``.

    A path that exists but is not a device node is bad input (InputError): opening it says
    nothing about the device cgroup.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        err = exc.errno or 0
        if err == errno.ENOENT:
            return NodeCheck(path, access, NodeVerdict.MISSING, None, "ENOENT", "ENOENT: no such node here")
        return NodeCheck(path, access, NodeVerdict.UNKNOWN, None, _errno_name(err), "cannot stat the node")
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InputError("not a character or block device node", field="DEVICE", value=path)
    kind = stat.S_IFMT(st.st_mode)
    device = ("c" if kind == stat.S_IFCHR else "b", os.major(st.st_rdev), os.minor(st.st_rdev))
    answers: list[tuple[NodeVerdict, str, str | None]] = []
    open_access = access.replace("m", "")
    if open_access:
        err = _try_open(path, open_access)
        answers.append((*_verdict(err, f"open {open_access}"), _errno_name(err) if err else None))
    if "m" in access:
        why_not = _may_mknod()
        if why_not is not None:
            answers.append((NodeVerdict.UNKNOWN, why_not, None))
        else:
            err = _try_mknod(kind, st.st_rdev)
            answers.append((*_verdict(err, "mknod"), _errno_name(err) if err else None))
    # The worst answer decides: denied over unknown over allowed.
    for wanted in (NodeVerdict.DENIED, NodeVerdict.UNKNOWN, NodeVerdict.ALLOWED):
        deciding = [a for a in answers if a[0] is wanted]
        if deciding:
            verdict, _, errno_name = deciding[0]
            break
    detail = "; ".join(a[1] for a in answers)
    return NodeCheck(path, access, verdict, device, errno_name, detail)
