"""How every command prints its ``--json`` document: one object, indented, newline-terminated."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
