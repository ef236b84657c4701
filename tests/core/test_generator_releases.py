"""lift names the releases known to write a program's shape (issue 11 item 3): only the ones
compared byte for byte with the real runtimes' programs, and crun's two shapes told apart."""

from __future__ import annotations

import pytest

from cgdev.core.lift import lift
from cgdev.core.lift.generators import MEASURED_RELEASES, releases
from cgdev.core.model import Rule
from cgdev.core.shapes import shape_program
from cgdev.lab.hooksim import allow_prefix

RULES = [Rule(False, "a", None, None, 7), Rule(True, "c", 1, 3, 7), Rule(True, "c", 195, 255, 6)]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [("crun", "crun 1.21-1.28"), ("crun-1.8", "crun 1.8.1"), ("runc", "runc 1.1.5-1.3.6"),
     ("systemd", "systemd 252-262")],
)  # fmt: skip
def test_each_shape_names_its_measured_releases(shape: str, expected: str) -> None:
    program = shape_program(RULES, shape)
    result = lift(program)
    assert releases(result.insns, result.generator).startswith(expected)


def test_a_hook_prefix_names_the_program_behind_it() -> None:
    for shape, key in (("crun", "crun"), ("crun-1.8", "crun-old"), ("runc", "runc")):
        hooked = (*allow_prefix(195, 254), *shape_program(RULES, shape))
        result = lift(hooked)
        assert result.generator.startswith("libnvidia-container + ")
        assert releases(result.insns, result.generator) == MEASURED_RELEASES[key]


def test_unknown_and_cgdev_programs_claim_no_release() -> None:
    assert releases((), "unknown") == ""
    assert releases((), "libnvidia-container") == ""
    assert releases((), "cgdev") == ""
