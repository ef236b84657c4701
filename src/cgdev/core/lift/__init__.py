"""Lifting: a device program -> the exact policy it enforces, its rules, and who generated it.

The package face: ``lift`` (``lifter``) and the values it answers with (``result``, ``coverage``).
"""

from __future__ import annotations

from cgdev.core.lift.coverage import Gap, GapKind
from cgdev.core.lift.lifter import lift
from cgdev.core.lift.result import Decision, LiftedRule, LiftResult

__all__ = ["Decision", "Gap", "GapKind", "LiftResult", "LiftedRule", "lift"]
