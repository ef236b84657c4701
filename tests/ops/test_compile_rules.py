"""compile's warnings say what the chosen reading does beyond the rules (review: --shape crun and
runc added their default devices without a word)."""

from __future__ import annotations

import pytest

from cgdev.core.rules import format_v1, read_rule_text
from cgdev.ops.compile_rules import compile_rules

RULES = "deny a\nallow c 1:3 rwm\n"


@pytest.mark.parametrize("shape", ["crun", "runc", "crun-1.8"])
def test_a_runtime_shape_says_it_adds_its_default_devices(shape: str) -> None:
    compiled = compile_rules(read_rule_text(RULES, "rules"), shape)
    added = [w for w in compiled.warnings if "adds its built-in default devices" in w]
    assert len(added) == 1 and added[0].startswith(shape.split("-")[0])
    # and the policy really allows what the warning names (an mknod of any char device)
    from cgdev.core.model import Request

    assert compiled.policy.allows(Request("c", 0, 0, 1))


def test_cgdevs_own_reading_adds_nothing_and_says_nothing() -> None:
    compiled = compile_rules(read_rule_text(RULES, "rules"), "cgdev")
    assert not [w for w in compiled.warnings if "default devices" in w]
    # and a rule list that already allows the defaults gets no warning under crun either
    from cgdev.core.semantics.defaults import forced_defaults

    said = "\n".join(["deny a", *(format_v1(r) for r in forced_defaults("crun"))])
    assert not [
        w for w in compile_rules(read_rule_text(said, "rules"), "crun").warnings if "default devices" in w
    ]
