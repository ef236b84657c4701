"""Strict JSON decoding (RFC 8259: no NaN or Infinity, no trailing data) at almost no import cost,
and the matching encoder.

Why not ``json`` or msgspec: the wrapper runtime reads every container's config.json, and almost
none is entitled to anything, so the read must cost next to nothing.  ``json`` imports ``re``
(json.decoder), msgspec costs more still; ``_json`` is the C scanner ``json`` itself drives, and it
takes a duck-typed context.  Deeply nested input raises ``RecursionError`` inside the scanner; it
is reported like any other malformed document.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs the wrapper runtime more than the scan
if TYPE_CHECKING:
    from typing import Any


class JsonError(ValueError):
    """Not strict JSON; the message is one line."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)

    def __init__(self) -> None:
        self.memo: dict[str, str] = {}


def loads(data: bytes) -> Any:
    """The JSON value in ``data`` (UTF-8), or ``JsonError`` saying why not."""
    import _json

    try:
        text = data.decode("utf-8").strip(" \t\r\n")
    except UnicodeDecodeError as err:
        raise JsonError(f"not UTF-8 text (byte {err.start})") from None
    try:
        value, end = _json.make_scanner(_Context())(text, 0)  # type: ignore[arg-type]  # duck-typed context, as json.decoder passes one
    except RecursionError:
        raise JsonError("not JSON this reader takes: nested too deeply") from None
    except Exception:  # the scanner's errors are StopIteration, ValueError, even SystemError
        raise JsonError(_why(text)) from None
    if end != len(text):
        raise JsonError(f"not JSON: extra data after the value (character {end})")
    return value


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> bytes:
    """``value`` (dicts, lists, str, int, float, bool, None) as compact UTF-8 JSON, as an engine
    writes config.json; ``ValueError`` (``UnicodeError`` for a lone surrogate; NaN) or
    ``TypeError`` (anything but the JSON types) when it is not JSON.  The C encoder ``json``
    itself drives, without importing ``json`` (``re``) or msgspec: the wrapper runtime's claim
    path writes with it."""
    import _json

    encode = _json.make_encoder(
        {}, _unencodable, _json.encode_basestring, None, ":", ",", False, False, False
    )
    return "".join(encode(value, 0)).encode("utf-8")


def _why(text: str) -> str:
    """The error ``json`` gives, with line and column (only on this error path is ``json`` loaded)."""
    import json

    try:
        json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        return f"not JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except (ValueError, RecursionError) as err:
        return f"not JSON: {err}"
    return "not JSON"
