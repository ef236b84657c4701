"""The ELF reader ``attach`` uses: what ``core.elf`` writes reads back exactly; anything else is
one line (InputError), never an exception of another kind."""

from __future__ import annotations

import random
import struct

import pytest

from cgdev.core.compile import compile_policy
from cgdev.core.elf import device_program_elf
from cgdev.core.elf_read import read_device_program
from cgdev.core.isa import encode
from cgdev.core.policy import Policy
from cgdev.errors import InputError


def _program() -> bytes:
    return encode(compile_policy(Policy.deny_all()))


def test_round_trip() -> None:
    raw = _program()
    found = read_device_program(device_program_elf(raw, name="cgdev_crun-1.8"))
    assert found.insns == raw
    assert found.name == "cgdev_crun_1.8"
    assert found.section == "cgroup/dev"


def test_relocations_and_other_objects_are_refused() -> None:
    elf = bytearray(device_program_elf(_program()))
    # section header 3 is .symtab: make it a SHT_REL section that applies to section 1
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    at = shoff + 3 * 64
    struct.pack_into("<I", elf, at + 4, 9)  # sh_type = SHT_REL
    struct.pack_into("<I", elf, at + 44, 1)  # sh_info = the program's section
    with pytest.raises(InputError, match="relocations"):
        read_device_program(bytes(elf))
    with pytest.raises(InputError, match="machine 62 is not BPF"):
        read_device_program(b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", 62) + bytes(46))
    with pytest.raises(InputError, match="no ELF header"):
        read_device_program(b"\x7fEL")


def test_mutations_only_raise_input_error() -> None:
    elf = device_program_elf(_program())
    rng = random.Random(7)
    for _ in range(3000):
        data = bytearray(elf)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))] if rng.random() < 0.2 else data
        try:
            found = read_device_program(bytes(data))
        except InputError as err:
            assert "\n" not in str(err)
        else:
            assert len(found.insns) % 8 == 0 and found.insns
