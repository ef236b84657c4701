"""Names of the helpers a loaded program calls, from the kernel's symbols (``/proc/kallsyms``).

The kernel's dump of a program (``xlated``) no longer holds a helper call's id: the verifier
rewrote it into the helper's address minus ``__bpf_call_base``.  bpftool names such a call by
looking that address up in ``/proc/kallsyms`` (``call bpf_get_current_uid_gid#281664``); so does
this, so a program that calls a helper is reported by the helper's name.  Without the symbols
(kptr_restrict, no procfs) the call keeps its number, as bpftool prints it then.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

KALLSYMS: Final = "/proc/kallsyms"
CALL_BASE: Final = "__bpf_call_base"


@functools.lru_cache(maxsize=1)
def _kallsyms(path: str) -> str:
    """The symbol table, read once per process: the kernel takes about a quarter of a second to
    generate it, and an audit may meet many programs that call helpers."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def helper_symbols(offsets: Iterable[int], path: str = KALLSYMS) -> dict[int, str]:
    """``{offset: symbol}`` for the translated call immediates ``offsets`` that name a symbol;
    offsets the symbols do not resolve (or an unreadable, zeroed kallsyms) are left out.

    kallsyms has some 200,000 lines: the addresses are searched for as text (each line starts
    with its address in 16 lowercase hex digits) rather than parsed line by line.
    """
    wanted = set(offsets)
    if not wanted:
        return {}
    text = _kallsyms(path)
    at = text.find(f" {CALL_BASE}\n")
    if at < 0:
        return {}
    line_start = text.rfind("\n", 0, at) + 1
    try:
        base = int(text[line_start:at].split()[0], 16)
    except (IndexError, ValueError):
        return {}
    if not base:  # kptr_restrict zeroes every address
        return {}
    out: dict[int, str] = {}
    for offset in wanted:
        address = f"{(base + offset) & 0xFFFF_FFFF_FFFF_FFFF:016x} "
        found = text.find(address) if text.startswith(address) else text.find("\n" + address)
        if found < 0:
            continue
        fields = text[found : text.find("\n", found + 1)].split()
        if len(fields) >= 3 and fields[1] in ("T", "t") and fields[2] != CALL_BASE:
            out[offset] = fields[2]
    return out
