"""Read the device program out of an ELF object: the inverse of ``core.elf`` for ``cgdev attach``.

``attach`` takes what ``compile --format elf`` (or clang with ``SEC("cgroup/dev")``) writes.  Only
what a device program needs is read: an ELF64 little-endian ``EM_BPF`` object, the first section
named ``cgroup/dev`` (or ``cgroup/dev/...``, libbpf's spelling with a suffix), its bytes, and the
name of the function symbol in it (the kernel's ``prog_name``).  A program with relocations (maps,
calls to other functions) is refused: a device program has no use for them, and loading it
without applying them would run something else than what was compiled.  Pure: bytes in, bytes out;
every refusal is one line naming what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from cgdev.core.elf import EM_BPF, SECTION
from cgdev.errors import InputError

ELF_MAGIC: Final = b"\x7fELF"
_SHT_SYMTAB: Final = 2
_SHT_REL: Final = 9
_SHT_RELA: Final = 4
_STT_FUNC: Final = 2
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")


@dataclass(frozen=True, slots=True)
class ElfProgram:
    """The raw instructions of the object's device program and its function's name ("" if none)."""

    insns: bytes
    name: str
    section: str


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def _bad(why: str) -> InputError:
    return InputError(f"not a device program ELF object: {why}")


def _cstr(table: bytes, offset: int) -> str:
    if not 0 <= offset < len(table):
        raise _bad(f"name offset {offset} outside its string table")
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def read_device_program(data: bytes) -> ElfProgram:
    """The ``cgroup/dev`` program of an ELF object (InputError, one line, for anything else)."""
    if len(data) < _EHDR.size or not is_elf(data):
        raise _bad("no ELF header")
    ident, _type, machine, _v, _entry, _phoff, shoff, _flags, _eh, _phs, _phn, shentsize, shnum, shstrndx = (
        _EHDR.unpack_from(data)
    )
    if ident[4] != 2 or ident[5] != 1:
        raise _bad("not ELF64 little-endian")
    if machine != EM_BPF:
        raise _bad(f"machine {machine} is not BPF ({EM_BPF})")
    if shentsize != _SHDR.size or not 0 < shnum <= 4096 or shoff + shnum * _SHDR.size > len(data):
        raise _bad("section headers missing or cut")
    headers = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]

    def body(index: int) -> bytes:
        _n, sh_type, _f, _a, offset, size, *_ = headers[index]
        if sh_type == 8:  # SHT_NOBITS
            return b""
        if offset + size > len(data):
            raise _bad(f"section {index} runs past the end of the file")
        return data[offset : offset + size]

    if not 0 < shstrndx < shnum:
        raise _bad("no section name table")
    names = body(shstrndx)
    section_names = [_cstr(names, h[0]) for h in headers]
    wanted = [i for i, n in enumerate(section_names) if n == SECTION or n.startswith(SECTION + "/")]
    if not wanted:
        found = ", ".join(n for n in section_names if n and not n.startswith(".")) or "none"
        raise _bad(f'no "{SECTION}" section (sections: {found})')
    index = wanted[0]
    for i, h in enumerate(headers):
        if h[1] in (_SHT_REL, _SHT_RELA) and h[7] == index and h[5]:
            raise _bad(f"section {section_names[index]} has relocations ({section_names[i]}): maps or calls")
    insns = body(index)
    if not insns or len(insns) % 8:
        raise _bad(f"section {section_names[index]} is {len(insns)} bytes, not whole instructions")
    name = ""
    for h in headers:
        if h[1] != _SHT_SYMTAB or not 0 <= h[6] < shnum:
            continue
        symbols, strings = body(headers.index(h)), body(h[6])
        for offset in range(0, len(symbols) - _SYM.size + 1, _SYM.size):
            st_name, info, _other, st_shndx, value, _size = _SYM.unpack_from(symbols, offset)
            if info & 0xF == _STT_FUNC and st_shndx == index and value == 0:
                name = _cstr(strings, st_name)
                break
    return ElfProgram(insns, name, section_names[index])
