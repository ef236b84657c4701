"""The bpf(2) adapter and cgroup discovery against the real kernel (root), plus pure parsing tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cgdev.adapters import bpf, cgroupfs
from cgdev.adapters.scratch_cgroup import ScratchCgroup
from cgdev.errors import CgdevError, EnvError, InputError, NeedsRoot, NotFound, VerifierError
from fixtures_kernel import ALLOW_ALL, ALLOW_C_1_3_R, DENY_ALL, EXIT, in_child, insn, requires_root_bpf

NOBODY = 65534


def _gone(prog_id: int, timeout: float = 2.0) -> bool:
    """A program id disappears once its last reference is dropped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            bpf.prog_fd_by_id(prog_id).close()
        except NotFound:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _bpftool(*args: str) -> bytes:
    tool = shutil.which("bpftool")
    if tool is None:
        pytest.skip("bpftool is not installed (apt-get install bpftool)")
    return subprocess.run([tool, *args], check=True, capture_output=True).stdout


# --- loading and reading back ----------------------------------------------------------------


@requires_root_bpf
def test_prog_info_matches_what_was_loaded_and_bpftool() -> None:
    with bpf.prog_load(ALLOW_C_1_3_R, name="cgdev_t13") as fd:
        info = bpf.prog_info(fd)
        assert info.type == bpf.BPF_PROG_TYPE_CGROUP_DEVICE
        assert info.name == "cgdev_t13"
        assert info.xlated_readable and not info.blinded
        assert info.xlated == ALLOW_C_1_3_R
        assert info.insn_count == len(ALLOW_C_1_3_R) // 8
        assert info.created_by_uid == 0
        assert len(info.tag) == 16 and int(info.tag, 16) >= 0
        assert 0 < info.load_time <= time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        shown = json.loads(_bpftool("prog", "show", "id", str(info.id), "-j"))
        assert shown["tag"] == info.tag
        assert shown["name"] == info.name
        assert shown["bytes_xlated"] == len(info.xlated)
        with tempfile.NamedTemporaryFile() as dump:
            _bpftool("prog", "dump", "xlated", "id", str(info.id), "file", dump.name)
            assert Path(dump.name).read_bytes() == info.xlated
    assert _gone(info.id)


@contextlib.contextmanager
def _sysctls(values: dict[str, str]) -> Iterator[None]:
    previous = {path: Path(path).read_text() for path in values}
    try:
        for path, value in values.items():
            Path(path).write_text(value)
        yield
    finally:
        for path, value in previous.items():
            Path(path).write_text(value)


@requires_root_bpf
def test_blinded_program_is_marked_unreadable_not_guessed() -> None:
    """JIT constant blinding plus kptr_restrict=2 is what Bottlerocket-like hosts do: the kernel then
    withholds the xlated instructions.  (The sysctls are changed for the shortest possible window.)"""
    if Path("/proc/sys/net/core/bpf_jit_enable").read_text().strip() == "0":
        pytest.skip("the BPF JIT is disabled, so constants are never blinded")
    harden = {"/proc/sys/net/core/bpf_jit_harden": "2", "/proc/sys/kernel/kptr_restrict": "2"}
    with _sysctls(harden):
        fd = bpf.prog_load(ALLOW_C_1_3_R)
        info = bpf.prog_info(fd)
    with fd:
        assert not info.xlated_readable
        assert info.xlated == b""
        assert info.xlated_len > 0  # the kernel still says how long it is
        # Once kptr_restrict is back, the kernel shows the blinded rewrite: readable, marked blinded.
        again = bpf.prog_info(fd)
        assert again.xlated_readable and again.blinded and again.xlated != ALLOW_C_1_3_R


@requires_root_bpf
def test_long_names_are_truncated_not_refused() -> None:
    with bpf.prog_load(ALLOW_ALL, name="a_very_long_program_name") as fd:
        assert bpf.prog_info(fd).name == "a_very_long_pro"


@requires_root_bpf
def test_verifier_error_is_one_line_and_carries_the_log() -> None:
    with pytest.raises(VerifierError) as caught:
        bpf.prog_load(insn(EXIT))  # r0 never set
    message = str(caught.value)
    assert "\n" not in message
    assert "R0 !read_ok" in message
    assert "R0 !read_ok" in caught.value.log
    assert caught.value.exit_code == 3


def test_malformed_program_length_is_refused_before_the_kernel() -> None:
    with pytest.raises(VerifierError, match="multiple of 8"):
        bpf.prog_load(b"\x95\x00\x00")


@requires_root_bpf
def test_unknown_program_id_is_not_found() -> None:
    with pytest.raises(NotFound, match="bpf program id 4294967295"):
        bpf.prog_fd_by_id(0xFFFF_FFFF)


def test_fd_wrapper_closes_once_and_is_int_like() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    fd = bpf.Fd(read_end)
    assert int(fd) == read_end and os.read(fd, 1) == b""
    with fd:
        pass
    assert fd.closed
    fd.close()  # idempotent
    with pytest.raises(ValueError):
        int(fd)
    with pytest.raises(OSError):
        os.fstat(read_end)


# --- attach, query, replace, detach ----------------------------------------------------------


@requires_root_bpf
def test_attach_query_replace_detach(scratch_cgroup: ScratchCgroup) -> None:
    first = bpf.prog_load(ALLOW_ALL)
    second = bpf.prog_load(DENY_ALL)
    first_id, second_id = bpf.prog_info(first).id, bpf.prog_info(second).id
    try:
        bpf.prog_attach(scratch_cgroup.fd, first)
        query = bpf.prog_query(scratch_cgroup.fd)
        assert query.ids == [first_id]
        assert query.attach_flags == bpf.BPF_F_ALLOW_MULTI
        if query.prog_flags is not None:
            assert query.prog_flags == [bpf.BPF_F_ALLOW_MULTI]
        bpf.prog_attach(scratch_cgroup.fd, second, replace=first)
        assert bpf.prog_query(scratch_cgroup.fd).ids == [second_id]
        with pytest.raises(NotFound):  # the old one is no longer attached
            bpf.prog_detach(scratch_cgroup.fd, first)
        with bpf.prog_load(ALLOW_ALL) as third, pytest.raises(NotFound, match="replace"):
            bpf.prog_attach(scratch_cgroup.fd, third, replace=first)  # nor replaced a second time
        bpf.prog_detach(scratch_cgroup.fd, second)
        assert bpf.prog_query(scratch_cgroup.fd).ids == []
    finally:
        first.close()
        second.close()
    assert _gone(first_id) and _gone(second_id)


@requires_root_bpf
def test_query_grows_past_its_first_buffer(scratch_cgroup: ScratchCgroup) -> None:
    fds = [scratch_cgroup.attach(ALLOW_ALL) for _ in range(bpf.QUERY_START * 2 + 3)]
    ids = [bpf.prog_info(fd).id for fd in fds]
    assert bpf.prog_query(scratch_cgroup.fd).ids == ids  # attach order is run order
    assert bpf.prog_query(scratch_cgroup.fd, effective=True).ids == ids


@requires_root_bpf
def test_effective_query_from_a_child_sees_the_parents_programs(scratch_cgroup: ScratchCgroup) -> None:
    parent_id = bpf.prog_info(scratch_cgroup.attach(DENY_ALL)).id
    child = scratch_cgroup.child("leaf")
    with bpf.open_cgroup(child) as child_fd:
        assert bpf.prog_query(child_fd).ids == []
        effective = bpf.prog_query(child_fd, effective=True)
        assert effective.ids == [parent_id]
        assert effective.prog_flags is None
        with bpf.prog_load(ALLOW_ALL) as own:
            bpf.prog_attach(child_fd, own)
            own_id = bpf.prog_info(own).id
        assert bpf.prog_query(child_fd, effective=True).ids == [own_id, parent_id]


@requires_root_bpf
def test_replace_has_no_window(scratch_cgroup: ScratchCgroup) -> None:
    """Swap between two different deny-all programs while a process in the cgroup opens a node
    as fast as it can: a single window without a filter would let one open through."""
    deny_a = scratch_cgroup.attach(DENY_ALL)
    deny_b = bpf.prog_load(insn(0xB4, 0, imm=0) + insn(EXIT))  # mov32 r0 = 0: a distinct program
    try:
        _assert_no_window(scratch_cgroup, deny_a, deny_b)
    finally:
        deny_b.close()


def _assert_no_window(scratch: ScratchCgroup, deny_a: bpf.Fd | int, deny_b: bpf.Fd) -> None:
    """The parent keeps swapping until the child has tried at least MIN_OPENS opens *while*
    swaps were happening (counted in shared memory), so a slow-to-schedule child on a busy CI
    machine cannot make the test pass vacuously or fail spuriously."""
    import mmap
    import struct
    import time

    from cgdev.adapters import probe_nodes
    from cgdev.adapters.device_safety import driverless_majors

    min_opens, min_swaps, deadline = 2000, 300, time.monotonic() + 30
    major = driverless_majors("c")[10]
    probe_nodes.node_dir.ensure()
    node = probe_nodes.node_dir.node("c", major, 0)
    counters = mmap.mmap(-1, 16)  # [attempts, leaks], shared with the forked child
    ready_read, ready_write = os.pipe()
    stop_read, stop_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            os.close(ready_read)
            os.close(stop_write)
            with open(os.path.join(scratch.path, "cgroup.procs"), "w") as procs:
                procs.write("0")
            os.write(ready_write, b"r")
            os.set_blocking(stop_read, False)
            leaks = attempts = 0
            while True:
                try:
                    os.close(os.open(node, os.O_RDONLY | os.O_NONBLOCK))
                    leaks += 1
                except OSError as exc:
                    leaks += exc.errno != 1
                attempts += 1
                counters[:16] = struct.pack("qq", attempts, leaks)
                try:
                    if os.read(stop_read, 1) == b"":
                        break
                except BlockingIOError:
                    pass
            code = 0
        finally:
            os._exit(code)
    os.close(ready_write)
    os.close(stop_read)
    assert os.read(ready_read, 1) == b"r"
    os.close(ready_read)
    current, other = deny_a, deny_b
    swaps = 0
    opens_before = struct.unpack("qq", counters[:16])[0]
    try:
        while swaps < min_swaps or struct.unpack("qq", counters[:16])[0] - opens_before < min_opens:
            assert time.monotonic() < deadline, "the child made too few opens in 30 s"
            bpf.prog_attach(scratch.fd, other, replace=current)
            current, other = other, current
            swaps += 1
    finally:
        os.close(stop_write)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    attempts, leaks = struct.unpack("qq", counters[:16])
    assert attempts - opens_before >= min_opens
    assert leaks == 0, f"{leaks} of {attempts} opens got through while the filter was swapped"


# --- pins ------------------------------------------------------------------------------------


@requires_root_bpf
def test_pin_and_get(bpffs_dir: str) -> None:
    pin = os.path.join(bpffs_dir, "cgdev_pin")
    with bpf.prog_load(ALLOW_C_1_3_R) as fd:
        prog_id = bpf.prog_info(fd).id
        bpf.obj_pin(fd, pin)
        with pytest.raises(EnvError, match="already exists"):
            bpf.obj_pin(fd, pin)
    with bpf.obj_get(pin) as again:  # the pin alone kept it alive
        info = bpf.prog_info(again)
        assert info.id == prog_id and info.xlated == ALLOW_C_1_3_R
    os.unlink(pin)
    assert _gone(prog_id)
    with pytest.raises(NotFound, match="pin"):
        bpf.obj_get(pin)


@requires_root_bpf
def test_pin_outside_a_bpffs_is_one_clear_line() -> None:
    with bpf.prog_load(ALLOW_ALL) as fd, tempfile.TemporaryDirectory() as plain:
        with pytest.raises(CgdevError) as caught:
            bpf.obj_pin(fd, os.path.join(plain, "p"))
        assert "bpf filesystem" in str(caught.value) and "\n" not in str(caught.value)


@requires_root_bpf
def test_opening_a_file_that_is_not_a_pin_is_bad_input_for_root() -> None:
    """root gets EACCES from BPF_OBJ_GET on an ordinary file: that is not 'needs root'."""
    with tempfile.NamedTemporaryFile() as plain, pytest.raises(InputError, match="not a pinned BPF object"):
        bpf.obj_get(plain.name)


# --- privileges: a real unprivileged process --------------------------------------------------


def _as_nobody(action: Callable[[], object]) -> tuple[str, str]:
    """Run ``action`` in a forked child after setuid(nobody); (exception class, message)."""

    def unprivileged() -> str:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        try:
            action()
        except CgdevError as exc:
            return f"{type(exc).__name__}\t{exc}"
        return "none\t"

    name, _, message = in_child(unprivileged).partition("\t")
    return name, message


@requires_root_bpf
@pytest.mark.parametrize("what", ["load", "query", "by_id", "stats"])
def test_unprivileged_gets_needs_root(what: str, scratch_cgroup: ScratchCgroup) -> None:
    prog_id = bpf.prog_info(scratch_cgroup.attach(ALLOW_ALL)).id
    cg_fd = int(scratch_cgroup.fd)
    actions: dict[str, Callable[[], object]] = {
        "load": lambda: bpf.prog_load(ALLOW_ALL),
        "query": lambda: bpf.prog_query(cg_fd),
        "by_id": lambda: bpf.prog_fd_by_id(prog_id),
        "stats": lambda: bpf.bpf_stats().__enter__(),
    }
    name, message = _as_nobody(actions[what])
    assert name == "NeedsRoot", message
    assert "needs root" in message and "\n" not in message
    assert NeedsRoot.exit_code == 3


# --- statistics ------------------------------------------------------------------------------


@requires_root_bpf
def test_bpf_stats_counts_runs_only_while_enabled(scratch_cgroup: ScratchCgroup) -> None:
    from cgdev.core.model import ACC_M, Request

    fd = scratch_cgroup.attach(ALLOW_ALL)
    requests = [Request("c", 1, 3, ACC_M)] * 50
    before = bpf.prog_info(fd).run_cnt
    with bpf.bpf_stats():
        scratch_cgroup.kernel_verdicts(requests)
        during = bpf.prog_info(fd)
    assert during.run_cnt - before >= 50
    assert during.run_time_ns > 0
    scratch_cgroup.kernel_verdicts(requests)
    assert bpf.prog_info(fd).run_cnt == during.run_cnt


# --- cgroup discovery ------------------------------------------------------------------------

PURE_V2 = """\
25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
30 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
"""

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
77 41 0:38 /lab /srv/lab\\040dir/cg rw,relatime - cgroup2 cgroup2 rw
"""


def test_mountinfo_pure_v2_and_hybrid() -> None:
    (v2,) = [m for m in cgroupfs.parse_mountinfo(PURE_V2) if m.fstype == "cgroup2"]
    assert v2.mountpoint == "/sys/fs/cgroup" and "nsdelegate" in v2.super_options
    hybrid = cgroupfs.parse_mountinfo(HYBRID)
    assert [m.mountpoint for m in hybrid if m.fstype == "cgroup2"] == [
        "/sys/fs/cgroup/unified",
        "/srv/lab dir/cg",
    ]
    assert [m.mountpoint for m in hybrid if "devices" in m.super_options] == ["/sys/fs/cgroup/devices"]
    assert [m.mountpoint for m in hybrid if "name=systemd" in m.super_options] == ["/sys/fs/cgroup/systemd"]


def test_cgroup2_mount_is_discovered_not_assumed() -> None:
    mount = cgroupfs.cgroup2_mount()
    assert os.path.exists(os.path.join(mount, "cgroup.procs"))
    assert os.statvfs(mount)  # a real, reachable mount


def test_process_cgroup_and_paths() -> None:
    rel = cgroupfs.process_cgroup(os.getpid())
    assert rel.startswith("/")
    absolute = cgroupfs.cgroup_path(rel)
    assert str(os.getpid()) in Path(absolute, "cgroup.procs").read_text().split()
    chain = cgroupfs.ancestors(absolute)
    assert chain[0] == cgroupfs.cgroup2_mount() and chain[-1] == os.path.normpath(absolute)
    assert cgroupfs.ancestors(rel) == chain


def test_process_cgroup_of_a_missing_pid_is_not_found() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    with pytest.raises(NotFound, match=f"process {pid_max} not found"):
        cgroupfs.process_cgroup(pid_max)
    with pytest.raises(InputError, match="pid"):
        cgroupfs.process_cgroup(-1)


def test_path_helpers_refuse_escapes() -> None:
    with pytest.raises(InputError, match=r"\.\."):
        cgroupfs.cgroup_path("/a/../../etc", mount="/sys/fs/cgroup")
    assert cgroupfs.cgroup_path("/a/b/", mount="/m") == "/m/a/b"
    assert cgroupfs.cgroup_path("/", mount="/m") == "/m"
    assert cgroupfs.ancestors("/m/a/b", mount="/m") == ["/m", "/m/a", "/m/a/b"]
    assert cgroupfs.ancestors("/m", mount="/m") == ["/m"]


def test_v1_devices_list_when_the_controller_is_mounted() -> None:
    lines = cgroupfs.v1_devices_list(os.getpid())
    if cgroupfs.v1_mount("devices") is None:
        assert lines is None
    else:
        assert lines and all(line[0] in "abc" for line in lines)


@requires_root_bpf
def test_walk_lists_a_subtree_parents_first(scratch_cgroup: ScratchCgroup) -> None:
    a = scratch_cgroup.child("a")
    os.mkdir(os.path.join(a, "deep"))
    scratch_cgroup.child("b")
    assert list(cgroupfs.walk(scratch_cgroup.path)) == [
        scratch_cgroup.path,
        a,
        os.path.join(a, "deep"),
        os.path.join(scratch_cgroup.path, "b"),
    ]


def test_open_cgroup_of_a_missing_path_is_not_found() -> None:
    with pytest.raises(NotFound, match="cgroup /nonexistent/cg not found"):
        bpf.open_cgroup("/nonexistent/cg")


@requires_root_bpf
def test_attaching_to_something_that_is_not_a_cgroup_is_one_line() -> None:
    with (
        bpf.prog_load(ALLOW_ALL) as prog,
        tempfile.TemporaryDirectory() as plain,
        bpf.open_cgroup(plain) as not_a_cgroup,
        pytest.raises(EnvError) as caught,
    ):
        bpf.prog_attach(not_a_cgroup, prog)
    assert "BPF_PROG_ATTACH" in str(caught.value) and "\n" not in str(caught.value)


@requires_root_bpf
def test_bpf_stats_off_uses_the_sysctl_and_restores_it() -> None:
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = sysctl.read_text()
    with _sysctls({str(sysctl): "1"}):
        with bpf.bpf_stats(enabled=False):
            assert sysctl.read_text().strip() == "0"
        assert sysctl.read_text().strip() == "1"
    assert sysctl.read_text() == before
