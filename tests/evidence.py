"""Where the captured real programs live: ``shared/reference/realstack/evidence`` beside the
checkout (CI lays shared/ there), or ``$CGDEV_EVIDENCE``.  One definition for every test module."""

from __future__ import annotations

import os
from pathlib import Path

EVIDENCE = Path(
    os.environ.get("CGDEV_EVIDENCE")
    or Path(__file__).resolve().parents[2] / "shared" / "reference" / "realstack" / "evidence"
)
PROGRAMS = EVIDENCE / "programs"
MISSING_REASON = f"the captured programs are not on this machine ({EVIDENCE})"
