"""How ``cgdev watch`` prints: one structured line per event (``key=value``), or with ``--json``
one compact JSON object per line, so a log shipper can take either without a parser of ours."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from cgdev.present.json_out import print_json

if TYPE_CHECKING:
    from cgdev.ops.reconcile import Report


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def _value(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def print_line(event: str, fields: dict[str, Any], *, as_json: bool, at: float | None = None) -> None:
    """One event: ``time event key=value ...`` or ``{"time": ..., "event": ..., ...}``."""
    when = _stamp(time.time() if at is None else at)
    if as_json:
        print_json({"time": when, "event": event, **fields}, compact=True)
        return
    shown = " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)
    sys.stdout.write(f"{when} {event} {shown}\n")
    sys.stdout.flush()


def print_report(report: Report, *, as_json: bool, at: float | None = None) -> None:
    fields = report.to_json()
    event = fields.pop("event")
    if "reaction_s" in fields:
        fields["reaction_s"] = round(fields["reaction_s"], 6)
    print_line(event, fields, as_json=as_json, at=at)
