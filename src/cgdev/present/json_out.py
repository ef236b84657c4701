"""How every front end prints a ``--json`` document: one encoder (msgspec), one object per line set.

msgspec rather than the json module: audit's document for a thousand containers encodes ~10x
faster, and every command then prints the same way.  Documents are indented (2), except audit's,
which stays one line (``compact``): it is the one meant for a thousand rows and a pipe.
"""

from __future__ import annotations

import sys
from typing import Any


def encode_json(document: Any, *, compact: bool = False) -> bytes:
    """``document`` (plain data, msgspec structs, str enums) as the bytes ``--json`` prints."""
    import msgspec

    raw = msgspec.json.encode(document)
    return (raw if compact else msgspec.json.format(raw, indent=2)) + b"\n"


def print_json(document: Any, *, compact: bool = False) -> None:
    sys.stdout.buffer.write(encode_json(document, compact=compact))
    sys.stdout.flush()
