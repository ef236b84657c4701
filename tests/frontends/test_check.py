"""``cgdev check DEVICE...`` (issue 10 item 2): the kernel's answer, asked from inside a cgroup.

The kernel tests attach a program compiled by cgdev from rules to a real scratch cgroup, start
``python -m cgdev check`` as a process that moves itself into that cgroup before exec, and compare
its lines and exit status with what the program must do.  Nothing is faked: EPERM comes from the
kernel's device cgroup, EACCES from real file permissions as an unprivileged user.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from fixtures_kernel import in_child, requires_root_bpf

MISSING = "/dev/cgdev-test-no-such-node"


def _cgdev(*args: str, cgroup: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cgdev", *args]
    if cgroup is not None:  # join the cgroup first, then become cgdev: every open is checked there
        command = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, *command]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _program(*rules: str) -> bytes:
    from cgdev.core.compile import compile_policy
    from cgdev.core.isa import encode
    from cgdev.core.rules import parse_rule_line
    from cgdev.core.semantics import policy_of

    parsed = [r for i, text in enumerate(rules) for r in parse_rule_line(text, f"rule {i + 1}")]
    return encode(compile_policy(policy_of(parsed, "ordered")))


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--access", "rx", "/dev/null"], "--access"),
        (["--access", "", "/dev/null"], "--access"),
        (["--access", "rr", "/dev/null"], "--access"),
        (["/etc/hostname"], "DEVICE"),
        ([], "DEVICE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], field: str) -> None:
    done = _cgdev("check", *args)
    assert done.returncode == 2, done
    assert done.stdout == "" and field in done.stderr and len(done.stderr.splitlines()) == 1


def test_missing_node_is_reported_as_missing() -> None:
    done = _cgdev("check", "/dev/null", MISSING)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("/dev/null: allowed (c 1:3")  # no program on the test's own cgroup
    assert lines[1].startswith(f"{MISSING}: missing") and "ENOENT" in lines[1]
    document = json.loads(_cgdev("check", "--json", MISSING).stdout)
    assert document["allowed"] is False
    assert document["devices"] == [
        {
            "path": MISSING,
            "device": None,
            "access": "rw",
            "verdict": "missing",
            "errno": "ENOENT",
            "detail": "ENOENT: no such node here",
        }
    ]


def test_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cgdev", "check", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "cgdev.adapters.node_access" in modules  # the measurement saw check's own import
    heavy = ("rich", "jeepney", "msgspec", "yaml", "cgdev.core", "cgdev.ops", "cgdev.present")
    assert not [m for m in modules if m.split(".")[0] in heavy or m.startswith(heavy)]


@requires_root_bpf
def test_the_device_cgroup_denies_and_allows(scratch_cgroup: object) -> None:
    path = scratch_cgroup.path  # type: ignore[attr-defined]
    scratch_cgroup.attach(_program("allow a *:* rwm", "deny c 1:3 rwm"))  # type: ignore[attr-defined]
    done = _cgdev("check", "/dev/null", "/dev/zero", MISSING, cgroup=path)
    assert done.returncode == 1, done.stderr
    null, zero, missing = done.stdout.splitlines()
    assert null.startswith("/dev/null: denied by the device cgroup (c 1:3, open rw: EPERM")
    assert zero.startswith("/dev/zero: allowed (c 1:5")
    assert missing.startswith(f"{MISSING}: missing")
    mknod = json.loads(_cgdev("check", "--access", "m", "--json", "/dev/null", cgroup=path).stdout)
    assert (mknod["devices"][0]["verdict"], mknod["devices"][0]["errno"]) == ("denied", "EPERM")
    assert _cgdev("check", "--access", "rwm", "/dev/zero", cgroup=path).returncode == 0


@requires_root_bpf
def test_allowed_when_the_program_allows_it(scratch_cgroup: object) -> None:
    path = scratch_cgroup.path  # type: ignore[attr-defined]
    scratch_cgroup.attach(_program("deny a", "allow c 1:3 rwm"))  # type: ignore[attr-defined]
    done = _cgdev("check", "--access", "rwm", "/dev/null", cgroup=path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("/dev/null: allowed (c 1:3, open rw: done; mknod: done)")
    only_read = _cgdev("check", "--access", "r", "/dev/zero", cgroup=path)
    assert only_read.returncode == 1 and "denied" in only_read.stdout


@contextlib.contextmanager
def _root_only_node() -> Iterator[str]:
    """A c 1:3 node that only root may open, in a directory anyone may enter."""
    directory = tempfile.mkdtemp(prefix="cgdev-check-test-")
    os.chmod(directory, 0o755)
    node = os.path.join(directory, "null")
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    try:
        yield node
    finally:
        os.unlink(node)
        os.rmdir(directory)


@requires_root_bpf
def test_unprivileged_refusals_before_the_cgroup_are_unknown() -> None:
    """EACCES (file permissions) and mknod without CAP_MKNOD never read as denied or allowed."""
    import cgdev.adapters.node_access
    import cgdev.cli.check_cmd  # noqa: F401  (imported before dropping privileges)
    from cgdev.cli.main import main

    with _root_only_node() as node:

        def as_nobody() -> str:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main(["check", "--json", "--access", "rwm", node, "/dev/null"])
            return f"{status}\n{out.getvalue()}"

        status, _, text = in_child(as_nobody).partition("\n")
    assert status == "1", text
    private, null = json.loads(text)["devices"]
    assert (private["verdict"], private["errno"]) == ("unknown", "EACCES")
    assert (
        null["verdict"] == "unknown" and "CAP_MKNOD" in null["detail"] and "open rw: done" in null["detail"]
    )
