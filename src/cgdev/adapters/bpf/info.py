"""What the kernel says about a loaded program: opening it by id, its info and xlated instructions."""

from __future__ import annotations

import ctypes

import msgspec

from cgdev.adapters.bpf.abi import (
    BPF_OBJ_GET_INFO_BY_FD,
    BPF_PROG_GET_FD_BY_ID,
    INSN_SIZE,
    GetIdAttr,
    InfoAttr,
    ProgInfoAttr,
    checked_call,
)
from cgdev.adapters.bpf.fd import Fd, raw_fd
from cgdev.core.isa import BPF_REG_AX
from cgdev.errors import NeedsRoot


def prog_fd_by_id(prog_id: int) -> Fd:
    """Open a program by its id (NotFound once it has been freed)."""
    attr = GetIdAttr()
    attr.id = prog_id
    return Fd(checked_call(BPF_PROG_GET_FD_BY_ID, attr, f"bpf program id {prog_id}"))


class ProgInfo(msgspec.Struct, frozen=True):
    """What the kernel says about a loaded program.

    ``xlated`` is exactly what ``bpftool prog dump xlated id N file F`` writes (8 bytes per
    instruction); ``xlated_readable`` is False when the kernel withheld it (JIT constant blinding
    or kptr restrictions leave it empty or zeroed) — cgdev must then say so, never guess.
    ``blinded`` is True when the readable instructions are the JIT-hardened rewrite (constants
    split through the verifier's hidden AX register), not what the loader wrote.
    """

    id: int
    type: int
    name: str
    tag: str
    load_time: int
    created_by_uid: int
    xlated: bytes
    xlated_readable: bool
    blinded: bool
    xlated_len: int
    jited_len: int
    run_time_ns: int
    run_cnt: int
    nr_map_ids: int
    btf_id: int
    gpl_compatible: bool
    verified_insns: int

    @property
    def insn_count(self) -> int:
        return self.xlated_len // INSN_SIZE


def _uses_aux_register(xlated: bytes) -> bool:
    regs = xlated[1::INSN_SIZE]
    return any((r & 0x0F) == BPF_REG_AX or (r >> 4) == BPF_REG_AX for r in regs)


def _get_info(fd: int, info: ProgInfoAttr) -> None:
    attr = InfoAttr()
    attr.bpf_fd = fd
    attr.info_len = ctypes.sizeof(info)
    attr.info = ctypes.addressof(info)
    checked_call(BPF_OBJ_GET_INFO_BY_FD, attr, f"bpf object fd {fd}")


def prog_info(fd: Fd | int) -> ProgInfo:
    """Two passes: the first sizes the xlated buffer, the second fills it.

    A caller without CAP_BPF/CAP_SYS_ADMIN can hold a program fd (a pin it may open) and still
    get its info, but with every instruction length zeroed; a loaded program is never empty, so
    that is ``NeedsRoot``, as opening the program by id would have been -- not a withheld
    (blinded or kptr-restricted) program, which is a different, root-only condition.
    """
    number = raw_fd(fd)
    sizing = ProgInfoAttr()
    _get_info(number, sizing)
    xlated_len = sizing.xlated_prog_len
    if not xlated_len:
        raise NeedsRoot(
            f"reading the instructions of bpf program id {sizing.id} needs root (CAP_SYS_ADMIN/CAP_BPF): "
            "the kernel hides them from this process"
        )
    buf = ctypes.create_string_buffer(xlated_len)
    info = ProgInfoAttr()
    info.xlated_prog_len = xlated_len
    info.xlated_prog_insns = ctypes.addressof(buf)
    _get_info(number, info)
    # The kernel clears the pointer when it refuses the raw dump; the length may have grown.
    xlated = buf.raw[: min(xlated_len, info.xlated_prog_len)] if info.xlated_prog_insns else b""
    readable = bool(xlated) and any(xlated)
    return ProgInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(),
        load_time=info.load_time,
        created_by_uid=info.created_by_uid,
        xlated=xlated if readable else b"",
        xlated_readable=readable,
        blinded=readable and _uses_aux_register(xlated),
        xlated_len=sizing.xlated_prog_len,
        jited_len=info.jited_prog_len,
        run_time_ns=info.run_time_ns,
        run_cnt=info.run_cnt,
        nr_map_ids=info.nr_map_ids,
        btf_id=info.btf_id,
        gpl_compatible=bool(info.gpl_compatible & 1),
        verified_insns=info.verified_insns,
    )
