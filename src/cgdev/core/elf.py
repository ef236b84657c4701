"""A minimal relocatable ELF object holding one cgroup device program, as libbpf expects it.

``bpftool prog load`` and every libbpf loader take ELF objects, not the raw instructions that
``compile -o`` writes, so a user who compiled a program could not attach it with standard tools.
This writes what clang would emit for one ``SEC("cgroup/dev")`` function and nothing more: the
program in a section named ``cgroup/dev`` (libbpf infers the program type from that name), a
``license`` section (the kernel refuses GPL-only helpers without it, and libbpf passes it on), a
symbol table naming the program as a global function of that section (libbpf finds programs
through ``STT_FUNC`` symbols, and uses the symbol's name as the kernel's ``prog_name``), and the
string tables.  No relocations, maps or BTF: a device program needs none.  Pure: bytes in, bytes
out.  Layout per the System V gABI (ELF64, little-endian, ``EM_BPF``).
"""

from __future__ import annotations

import struct
from typing import Final

from cgdev.core.progname import kernel_program_name
from cgdev.errors import InputError

EM_BPF: Final = 247
SECTION: Final = "cgroup/dev"

_ET_REL: Final = 1
_SHT_PROGBITS: Final = 1
_SHT_SYMTAB: Final = 2
_SHT_STRTAB: Final = 3
_SHF_WRITE: Final = 0x1
_SHF_ALLOC: Final = 0x2
_SHF_EXECINSTR: Final = 0x4
_STB_GLOBAL: Final = 1
_STT_FUNC: Final = 2

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr, 64 bytes
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym, 24 bytes
_IDENT: Final = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, ELFDATA2LSB, EV_CURRENT


class _Strings:
    """A string table: offset 0 is the empty name, every name NUL-terminated."""

    def __init__(self) -> None:
        self.data = bytearray(b"\0")

    def add(self, name: str) -> int:
        offset = len(self.data)
        self.data += name.encode() + b"\0"
        return offset


def _pad(buf: bytearray, align: int) -> int:
    buf += bytes(-len(buf) % align)
    return len(buf)


def device_program_elf(insns: bytes, *, name: str = "cgdev", license: str = "GPL") -> bytes:
    """The ELF object for ``insns`` (raw 8-byte slots), its function called ``name`` (made legal)."""
    if not insns or len(insns) % 8:
        raise InputError(f"program: {len(insns)} bytes is not a positive multiple of 8 (one instruction)")
    shstr, strtab = _Strings(), _Strings()
    symbol = kernel_program_name(name) or "cgdev"
    sym_name = strtab.add(symbol)
    symtab = _SYM.pack(0, 0, 0, 0, 0, 0) + _SYM.pack(
        sym_name, (_STB_GLOBAL << 4) | _STT_FUNC, 0, 1, 0, len(insns)
    )
    # (name, type, flags, data, link, info, align, entsize); section 1 must be the program's.
    sections = [
        (SECTION, _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, insns, 0, 0, 8, 0),
        ("license", _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE, license.encode() + b"\0", 0, 0, 1, 0),
        (".symtab", _SHT_SYMTAB, 0, symtab, 4, 1, 8, _SYM.size),  # link: .strtab; info: first global
        (".strtab", _SHT_STRTAB, 0, bytes(strtab.data), 0, 0, 1, 0),
    ]
    names = [shstr.add(s[0]) for s in sections]
    shstrndx_name = shstr.add(".shstrtab")
    sections.append((".shstrtab", _SHT_STRTAB, 0, bytes(shstr.data), 0, 0, 1, 0))
    names.append(shstrndx_name)

    body = bytearray(bytes(_EHDR.size))
    headers = [_SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for sh_name, (_, sh_type, flags, data, link, info, align, entsize) in zip(names, sections, strict=True):
        offset = _pad(body, align)
        body += data
        headers.append(_SHDR.pack(sh_name, sh_type, flags, 0, offset, len(data), link, info, align, entsize))
    shoff = _pad(body, 8)
    body += b"".join(headers)
    body[: _EHDR.size] = _EHDR.pack(
        _IDENT,
        _ET_REL,
        EM_BPF,
        1,
        0,
        0,
        shoff,
        0,
        _EHDR.size,
        0,
        0,
        _SHDR.size,
        len(headers),
        len(headers) - 1,
    )
    return bytes(body)
