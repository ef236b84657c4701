"""Kernel object names: what ``BPF_PROG_LOAD`` accepts as ``prog_name``.

The kernel refuses (EINVAL) a name with any character outside ``[A-Za-z0-9_.]`` or of 16 bytes or
more (``bpf_obj_name_cpy``), so a name built from user-facing words such as the shape ``crun-1.8``
must be made legal before a load, or ``compile --verify`` fails for a reason that has nothing to do
with the program.  One function, used wherever cgdev names a program it loads or writes into an
ELF object (libbpf passes the symbol name on as ``prog_name``).
"""

from __future__ import annotations

import re
from typing import Final

PROG_NAME_MAX: Final = 15  # BPF_OBJ_NAME_LEN (16) minus the terminating NUL
_ILLEGAL: Final = re.compile(r"[^A-Za-z0-9_.]")


def kernel_program_name(wanted: str) -> str:
    """``wanted`` made legal for the kernel: every other character becomes ``_``, cut to 15.

    Deterministic and idempotent, so the name a user sees in ``bpftool prog show`` is predictable
    from the one cgdev wanted (``cgdev_crun-1.8`` -> ``cgdev_crun_1.8``).
    """
    return _ILLEGAL.sub("_", wanted)[:PROG_NAME_MAX]
