"""Sections and symbols of ELF files on disk, parsed once per build and cached.

Only section headers and the symbol tables are read here, with `struct` over an mmap: that takes
milliseconds where walking the same tables through pyelftools' generic parser takes a tenth of
a second per library. Debug information (DWARF, CFI) is left to pyelftools.
"""

from __future__ import annotations

import bisect
import functools
import mmap
import os
import struct
from dataclasses import dataclass, field

from triage.coredump import elf

_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
SHT_SYMTAB, SHT_DYNSYM, SHT_NOBITS = 2, 11, 8
STT_OBJECT, STT_FUNC, STT_TLS, STT_GNU_IFUNC = 1, 2, 6, 10
SHN_UNDEF = 0


@dataclass(frozen=True, slots=True)
class Section:
    """A section header: name, type, address, file offset and size."""

    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass
class ElfSymbols:
    """One ELF file's sections and defined symbols (values are link-time addresses)."""

    path: str
    type: int
    first_load_vaddr: int
    sections: dict[str, Section]
    symbols: dict[str, int] = field(default_factory=dict)
    _func_starts: list[int] = field(default_factory=list, repr=False)
    _func_rows: list[tuple[int, int, str]] = field(default_factory=list, repr=False)

    def address_of(self, name: str) -> int | None:
        """Link-time address of a defined symbol, or None."""
        return self.symbols.get(name)

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """The function containing a link-time address, and the offset into it."""
        i = bisect.bisect_right(self._func_starts, address) - 1
        while i >= 0:
            start, size, name = self._func_rows[i]
            if address < start + max(size, 1):
                return name, address - start
            if size:  # sized symbol that does not cover: nothing earlier will
                return None
            i -= 1
        return None


def load_symbols(path: str) -> ElfSymbols:
    """Parse (or fetch from the cache) the sections and symbols of the ELF file at `path`."""
    st = os.stat(path)
    return _load(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _load(path: str, _size: int, _mtime: int) -> ElfSymbols:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return _parse(path, m)


def _parse(path: str, m: mmap.mmap) -> ElfSymbols:
    def read(offset: int, size: int) -> bytes:
        return m[offset : offset + size]

    header = elf.read_header(read)
    phdrs = elf.read_program_headers(read, header)
    loads = [p.vaddr for p in phdrs if p.type == elf.PT_LOAD]
    shoff, shentsize, shnum, shstrndx = struct.unpack_from("<Q10xHHH", m, 0x28)
    raw = []
    if shoff and shentsize >= _SHDR.size and shoff + shnum * shentsize <= len(m):
        raw = [_SHDR.unpack_from(m, shoff + i * shentsize) for i in range(shnum)]
    names = b""
    if raw and shstrndx < len(raw):
        names = m[raw[shstrndx][4] : raw[shstrndx][4] + raw[shstrndx][5]]
    sections: dict[str, Section] = {}
    by_index: list[Section] = []
    for name_off, stype, _flags, addr, offset, size, link, _info, _align, entsize in raw:
        end = names.find(b"\0", name_off)
        name = names[name_off:end].decode("ascii", "replace") if name_off < len(names) else ""
        sec = Section(name, stype, addr, offset, size, link, entsize)
        by_index.append(sec)
        sections.setdefault(name, sec)
    out = ElfSymbols(path, header.type, min(loads) if loads else 0, sections)
    funcs: dict[int, tuple[int, str]] = {}
    for table in (s for s in by_index if s.type in (SHT_DYNSYM, SHT_SYMTAB)):
        if table.link >= len(by_index) or table.offset + table.size > len(m):
            continue
        strtab = by_index[table.link]
        strings = m[strtab.offset : strtab.offset + strtab.size]
        data = m[table.offset : table.offset + table.size - table.size % _SYM.size]
        for st_name, st_info, _other, shndx, value, size in _SYM.iter_unpack(data):
            if shndx == SHN_UNDEF or not st_name:
                continue
            kind = st_info & 0xF
            if kind not in (STT_OBJECT, STT_FUNC, STT_GNU_IFUNC, 0):
                continue
            end = strings.find(b"\0", st_name)
            name = strings[st_name:end].decode("utf-8", "replace")
            out.symbols.setdefault(name, value)
            if kind in (STT_FUNC, STT_GNU_IFUNC) and value:
                prev = funcs.get(value)
                if prev is None or (size and not prev[0]):
                    funcs[value] = (size, name)
    rows = sorted((v, s, n) for v, (s, n) in funcs.items())
    out._func_rows = rows
    out._func_starts = [r[0] for r in rows]
    return out
