"""Sections and symbols of ELF files on disk, parsed once per build and cached.

Section headers and symbol tables are read with `struct` over an mmap. A name is looked up by
finding it in the string table first (a C-speed search) and then the one symbol entry that
points at it, so asking for a handful of symbols of a 15,000-symbol libpython costs
milliseconds; the full address-ordered table is built only when addresses must be symbolised.
Debug information (DWARF, CFI) is left to pyelftools.
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
ET_DYN = 3
PAGE = 4096


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


@dataclass(frozen=True, slots=True)
class _Table:
    """One symbol table (.dynsym or .symtab) and its string table, as raw bytes."""

    symbols: bytes
    strings: bytes


@dataclass
class ElfSymbols:
    """One ELF file's sections and symbols (values are link-time addresses)."""

    path: str
    type: int
    first_load_vaddr: int
    sections: dict[str, Section]
    tables: list[_Table] = field(default_factory=list, repr=False)
    _names: dict[str, int | None] = field(default_factory=dict, repr=False)
    _func_starts: list[int] | None = field(default=None, repr=False)
    _func_rows: list[tuple[int, int, str]] = field(default_factory=list, repr=False)

    def load_bias(self, mapped_at: int) -> int:
        """What to add to a link-time address of this file mapped from `mapped_at` (its lowest
        mapping): 0 for a fixed-address executable, the page-aligned offset otherwise."""
        if self.type != ET_DYN:
            return 0
        return mapped_at - (self.first_load_vaddr & ~(PAGE - 1))

    def address_of(self, name: str) -> int | None:
        """Link-time address of a defined symbol (global or local), or None."""
        if name not in self._names:
            self._names[name] = self._find(name)
        return self._names[name]

    def _find(self, name: str) -> int | None:
        needle = b"\0" + name.encode() + b"\0"
        for table in self.tables:
            strings, data = table.strings, table.symbols
            pos = strings.find(needle)
            while pos >= 0:
                key = struct.pack("<I", pos + 1)
                at = data.find(key)
                while at >= 0:
                    if at % _SYM.size == 0:
                        _n, info, _o, shndx, value, _s = _SYM.unpack_from(data, at)
                        if shndx != SHN_UNDEF and info & 0xF in (0, 1, 2, 10):
                            return value
                    at = data.find(key, at + 1)
                pos = strings.find(needle, pos + 1)
        return None

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """The function containing a link-time address, and the offset into it."""
        if self._func_starts is None:
            self._build_functions()
        assert self._func_starts is not None
        i = bisect.bisect_right(self._func_starts, address) - 1
        while i >= 0:
            start, size, name = self._func_rows[i]
            if address < start + max(size, 1):
                return name, address - start
            if size:  # a sized symbol that does not cover it: nothing earlier will
                return None
            i -= 1
        return None

    def _build_functions(self) -> None:
        funcs: dict[int, tuple[int, str]] = {}
        for table in self.tables:
            strings = table.strings
            for st_name, info, _o, shndx, value, size in _SYM.iter_unpack(table.symbols):
                if shndx == SHN_UNDEF or not st_name or not value:
                    continue
                if info & 0xF not in (STT_FUNC, STT_GNU_IFUNC):
                    continue
                prev = funcs.get(value)
                if prev is None or (size and not prev[0]):
                    end = strings.find(b"\0", st_name)
                    funcs[value] = (size, strings[st_name:end].decode("utf-8", "replace"))
        self._func_rows = sorted((v, s, n) for v, (s, n) in funcs.items())
        self._func_starts = [r[0] for r in self._func_rows]


_BY_BUILD_ID: dict[str, ElfSymbols] = {}


def load_symbols(path: str, build_id: str | None = None) -> ElfSymbols:
    """Parse (or fetch from the cache) the sections and symbol tables of the ELF at `path`.

    With the file's verified `build_id` the cache is keyed by it, so the same build found at
    another path (another fleet's root, a relocated copy) is parsed once per process.
    """
    if build_id is not None:
        cached = _BY_BUILD_ID.get(build_id)
        if cached is not None:
            return cached
    st = os.stat(path)
    parsed = _load(os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if build_id is not None:
        _BY_BUILD_ID[build_id] = parsed
    return parsed


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
    # .symtab first: it has the local symbols (interp_head, collecting) as well.
    for kind in (SHT_SYMTAB, SHT_DYNSYM):
        for table in (s for s in by_index if s.type == kind):
            if table.link >= len(by_index) or table.offset + table.size > len(m):
                continue
            strtab = by_index[table.link]
            size = table.size - table.size % _SYM.size
            out.tables.append(
                _Table(
                    m[table.offset : table.offset + size],
                    m[strtab.offset : strtab.offset + strtab.size],
                )
            )
    return out
