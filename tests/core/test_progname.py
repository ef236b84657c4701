"""Program names the kernel accepts (issue 12 item 5): ``[A-Za-z0-9_.]``, at most 15 bytes.

``compile --shape crun-1.8 --verify`` used to fail with EINVAL because the name ``cgdev_crun-1.8``
has a ``-``; the kernel test runs ``compile --verify`` for every shape against the real verifier.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgdev.cli.compile_cmd import SHAPES
from cgdev.core.progname import PROG_NAME_MAX, kernel_program_name
from fixtures_kernel import requires_root_bpf

LEGAL = re.compile(r"[A-Za-z0-9_.]{0,15}\Z")


def test_examples() -> None:
    assert kernel_program_name("cgdev_crun-1.8") == "cgdev_crun_1.8"
    assert kernel_program_name("sd_devices") == "sd_devices"
    assert kernel_program_name("a" * 40) == "a" * PROG_NAME_MAX
    assert kernel_program_name("gpu/0 é") == "gpu_0__"


@given(st.text())
def test_always_legal_and_idempotent(wanted: str) -> None:
    name = kernel_program_name(wanted)
    assert LEGAL.match(name), name
    assert kernel_program_name(name) == name
    assert len(name.encode()) <= PROG_NAME_MAX


@requires_root_bpf
def test_kernel_accepts_sanitized_names() -> None:
    from cgdev.adapters import bpf
    from fixtures_kernel import ALLOW_ALL

    for wanted in ("cgdev_crun-1.8", "x" * 30, "a b/c:d", ""):
        with bpf.prog_load(ALLOW_ALL, name=wanted) as fd:
            assert bpf.prog_info(fd).name == kernel_program_name(wanted)


@requires_root_bpf
@pytest.mark.parametrize("shape", SHAPES)
def test_compile_verify_every_shape(shape: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cgdev",
            "compile",
            "--shape",
            shape,
            "--verify",
            "--json",
            "deny a",
            "allow c 1:3 rwm",
            "allow c 136:* rw",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"verified": true' in done.stdout
