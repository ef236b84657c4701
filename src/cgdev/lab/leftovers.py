"""What ``down`` checks is gone: anything of the lab still on the machine after it stopped.

``down`` reports these instead of assuming a clean stop, and the test fixture asserts the list
is empty, so a process, cgroup, mount, state dir or hook program the lab leaves behind is seen.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cgdev.lab.paths import STATE_DIR, current_stack, lab_cgroup
from cgdev.lab.processes import alive, wait_until


def leftovers(timeout: float = 5.0) -> list[str]:
    """Anything of the lab still on the machine: processes, cgroups, mounts, state, hook programs."""
    stack = current_stack()
    root = lab_cgroup()
    found: list[str] = []
    if root.exists():
        found.append(f"cgroup {root}")
    if stack.state_dir.exists():
        found.append(f"state dir {stack.state_dir}")
    found += [f"process {pid} ({name})" for pid, name in _lab_processes()]
    mountinfo = Path("/proc/self/mountinfo").read_text()
    mounts = [line.split()[4] for line in mountinfo.splitlines()]
    found += [f"mount {m}" for m in mounts if f"/{stack.cgroup_name}" in m or str(stack.state_dir) in m]
    if stack.is_host:
        # hook-sim programs carry one name whatever lab made them: while the host lab is down no
        # other lab's can be told apart from a leftover, so only the host stack counts them.
        found += _hook_programs_left(timeout)
    return found


def _lab_processes() -> list[tuple[int, str]]:
    """Host processes in the lab's cgroup, or started by it (launcher, nsinit, unshare).

    The launcher and nsinit carry the stack's state dir on their command line, so another
    stack's lab running beside this one is never counted.
    """
    stack = current_stack()
    name = stack.cgroup_name
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cgroup = (proc / "cgroup").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ours = f" {stack.state_dir} " in f"{cmdline} " or (
                stack.is_host and f"{STATE_DIR}-" not in cmdline
            )
            started_by_us = ("cgdev.lab.launcher" in cmdline or "cgdev.lab.nsinit" in cmdline) and ours
            in_lab = f"::/{name}/" in cgroup or f"::/{name}\n" in cgroup
            if (in_lab or started_by_us) and alive(int(proc.name)):
                out.append((int(proc.name), cmdline.strip()[:60]))
    return out


def _hook_programs_left(timeout: float) -> list[str]:
    """hook-sim programs live only as long as their cgroup; the kernel frees them soon after rmdir.

    Reads the program table with bpftool when it is installed (the check is then real, not assumed).
    """
    import json
    import shutil
    import subprocess

    if shutil.which("bpftool") is None:
        return []
    from cgdev.lab.hooksim import PROGRAM_NAME

    names: list[str] = []

    def gone() -> bool:
        done = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=10)
        progs = json.loads(done.stdout or "[]") if done.returncode == 0 else []
        names[:] = [f"bpf program {p['id']} ({PROGRAM_NAME})" for p in progs if p.get("name") == PROGRAM_NAME]
        return not names

    wait_until(gone, timeout, 0.1)
    return names
