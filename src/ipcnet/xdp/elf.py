"""Read the BPF object file clang writes: one program, its maps and their relocations.

Role: the smallest ELF64 reader that turns ``filter.bpf.o`` into what bpf(2) wants: the
program's instructions, its licence, each map's ``map_create`` arguments (from the
``maps`` section, as ``struct ipcnet_map`` in filter.bpf.c lays them out) and where the
instructions load a map's address (``R_BPF_64_64`` relocations), which the loader patches
with the map's descriptor. Rules: no I/O beyond reading the given bytes; anything this
reader does not understand is a ValueError naming it (the program is ours, so that means a
broken build, not a user error).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field

EM_BPF = 247
SHT_SYMTAB, SHT_REL = 2, 9
R_BPF_64_64 = 1  # ld_imm64 of a map (or data) address
STT_FUNC = 2

_EHDR = struct.Struct("=16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("=IIQQQQIIQQ")
_SYM = struct.Struct("=IBBHQQ")
_REL = struct.Struct("=QQ")
_MAPDEF = struct.Struct("=IIIII")


@dataclass(frozen=True)
class MapDef:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@dataclass
class BpfObject:
    program: str  # the function's name
    section: str  # its ELF section ("xdp")
    insns: bytes
    license: str
    maps: dict[str, MapDef] = field(default_factory=dict)
    map_relocs: list[tuple[int, str]] = field(default_factory=list)  # (insn index, map)


def read(data: bytes, section: str = "xdp") -> BpfObject:
    """Parse an ELF relocatable BPF object and return its program in ``section``."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    if data[5] != (1 if sys.byteorder == "little" else 2):
        raise ValueError("BPF object of the wrong byte order for this machine")
    ehdr = _EHDR.unpack_from(data, 0)
    machine, shoff, shnum, shstrndx = ehdr[2], ehdr[6], ehdr[12], ehdr[13]
    if machine != EM_BPF:
        raise ValueError(f"ELF machine {machine} is not BPF")
    shdrs = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    strtab_off = shdrs[shstrndx][4]

    def cstr(off: int) -> str:
        return data[off : data.index(b"\0", off)].decode()

    names = [cstr(strtab_off + s[0]) for s in shdrs]

    def body(i: int) -> bytes:
        return data[shdrs[i][4] : shdrs[i][4] + shdrs[i][5]]

    if section not in names:
        raise ValueError(f"no section {section!r} in the BPF object")
    prog_idx = names.index(section)
    symtab_idx = next(i for i, s in enumerate(shdrs) if s[1] == SHT_SYMTAB)
    sym_strtab = shdrs[shdrs[symtab_idx][6]][4]
    symbols = [
        _SYM.unpack_from(body(symtab_idx), off) for off in range(0, shdrs[symtab_idx][5], _SYM.size)
    ]

    maps_idx = names.index("maps") if "maps" in names else -1
    maps: dict[str, MapDef] = {}
    by_offset: dict[int, str] = {}
    program = ""
    for st_name, info, _other, shndx, value, _size in symbols:
        name = cstr(sym_strtab + st_name) if st_name else ""
        if shndx == maps_idx and name:
            fields = _MAPDEF.unpack_from(body(maps_idx), value)
            maps[name] = MapDef(name, *fields)
            by_offset[value] = name
        elif shndx == prog_idx and info & 0xF == STT_FUNC:
            program = name
    if not program:
        raise ValueError(f"no function in section {section!r}")

    relocs: list[tuple[int, str]] = []
    for i, s in enumerate(shdrs):
        if s[1] != SHT_REL or s[7] != prog_idx:
            continue
        rel = body(i)
        for off in range(0, len(rel), _REL.size):
            r_offset, r_info = _REL.unpack_from(rel, off)
            sym = symbols[r_info >> 32]
            rtype = r_info & 0xFFFFFFFF
            if rtype != R_BPF_64_64 or sym[3] != maps_idx:
                raise ValueError(f"unsupported relocation type {rtype} in {section!r}")
            relocs.append((r_offset // 8, by_offset[sym[4]]))

    license_ = body(names.index("license")).rstrip(b"\0").decode() if "license" in names else ""
    return BpfObject(program, section, body(prog_idx), license_, maps, relocs)
