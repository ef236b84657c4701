"""Names of the helpers a loaded program calls, from the kernel's symbols (``/proc/kallsyms``).

The kernel's dump of a program (``xlated``) no longer holds a helper call's id: the verifier
rewrote it into the helper's address minus ``__bpf_call_base``.  bpftool names such a call by
looking that address up in ``/proc/kallsyms`` (``call bpf_get_current_uid_gid#281664``); so does
this, so a program that calls a helper is reported by the helper's name.  Without the symbols
(kptr_restrict, no procfs) the call keeps its number, as bpftool prints it then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

KALLSYMS: Final = "/proc/kallsyms"
CALL_BASE: Final = "__bpf_call_base"


def helper_symbols(offsets: Iterable[int], path: str = KALLSYMS) -> dict[int, str]:
    """``{offset: symbol}`` for the translated call immediates ``offsets`` that name a symbol;
    offsets the symbols do not resolve (or an unreadable, zeroed kallsyms) are left out."""
    wanted = set(offsets)
    if not wanted:
        return {}
    by_address: dict[int, str] = {}
    base = None
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                address = int(parts[0], 16)
                if parts[2] == CALL_BASE:
                    base = address
                elif parts[1] in "Tt" and address:
                    by_address.setdefault(address, parts[2])
    except (OSError, ValueError):
        return {}
    if not base:  # kptr_restrict zeroes every address
        return {}
    return {off: by_address[base + off] for off in wanted if base + off in by_address}
