"""Sections and symbols of ELF files on disk, parsed once per build and cached.

Section headers and symbol tables are read with `struct` over an mmap (or pread, see
`filebytes`). A name is looked up by finding it in the string table first (a C-speed search)
and then the one symbol entry that points at it, so asking for a handful of symbols of a
15,000-symbol libpython costs milliseconds; the full address-ordered table is built only when
addresses must be symbolised. Headers come from triage.coredump.elf (the one ELF reader);
debug information (DWARF, CFI) is read by triage.native.dwarf and triage.native.cfi.
"""

from __future__ import annotations

import bisect
import functools
import mmap
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from triage.coredump import elf
from triage.coredump.filebytes import FileBytes, map_file

_SYM = struct.Struct("<IBBHQQ")
SHT_SYMTAB, SHT_DYNSYM, SHT_NOBITS = 2, 11, 8
STT_OBJECT, STT_FUNC, STT_TLS, STT_GNU_IFUNC = 1, 2, 6, 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
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
    flags: int = 0


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
    _func_rows: list[tuple[int, int, int, int, int, int]] = field(default_factory=list, repr=False)
    section_ranges: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)
    """Each allocated section's [start, end) link-time addresses, by section index."""
    _func_reach: list[int] = field(default_factory=list, repr=False)

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
                            address: int = value
                            return address
                    at = data.find(key, at + 1)
                pos = strings.find(needle, pos + 1)
        return None

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """The function containing a link-time address, and the offset into it, chosen as
        elfutils chooses (so names match gdb's and PyStack's): a global symbol before a local
        one, then the one starting closest below, then GLOBAL before WEAK, then the smaller
        size, then the first in the table; versioned names as the table has them
        (`__libc_start_main@@GLIBC_2.34`). An unsized symbol counts only where no sized one
        contains the address."""
        if self._func_starts is None:
            self._build_functions()
        assert self._func_starts is not None
        rows, reach = self._func_rows, self._func_reach
        i = bisect.bisect_right(self._func_starts, address) - 1
        best: tuple[bool, int, bool, int, int] | None = None  # (global, start, GLOBAL, ...)
        best_row = -1
        while i >= 0 and reach[i] > address:
            start, order, size, bind, _name, _section = rows[i]
            if size and address < start + size:
                key = (bind != STB_LOCAL, start, bind == STB_GLOBAL, -size, -order)
                if best is None or key > best:
                    best, best_row = key, i
            i -= 1
        if best is None:
            # An unsized symbol (hand-written assembly, _start) counts up to the next symbol
            # and within its own section only (`_init` does not name the PLT after it).
            i = bisect.bisect_right(self._func_starts, address) - 1
            if i < 0 or rows[i][2]:
                return None
            section = self.section_ranges.get(rows[i][5])
            if section is None or not section[0] <= address < section[1]:
                return None
            best_row = i
        start = rows[best_row][0]
        return self._func_name(rows[best_row][4]), address - start

    def _func_name(self, ref: int) -> str:
        """A function symbol's name (decoded only for the symbols asked about)."""
        table, offset = ref >> 32, ref & 0xFFFFFFFF
        strings = self.tables[table].strings
        return strings[offset : strings.find(b"\0", offset)].decode("utf-8", "replace")

    def _build_functions(self) -> None:
        # start, order, size, binding, name (table << 32 | offset), section index
        rows: list[tuple[int, int, int, int, int, int]] = []
        order = 0
        for number, table in enumerate(self.tables):
            for st_name, info, _o, shndx, value, size in _SYM.iter_unpack(table.symbols):
                order += 1
                if shndx == SHN_UNDEF or not st_name or not value:
                    continue
                if info & 0xF not in (STT_FUNC, STT_GNU_IFUNC):
                    continue
                rows.append((value, order, size, info >> 4, number << 32 | st_name, shndx))
        rows.sort()
        # reach[i]: the furthest end of rows[0..i] (unsized rows reach one past their start),
        # so a lookup walks back only while an earlier symbol may still contain the address.
        reach, furthest = [], 0
        for start, _order, size, _bind, _name, _section in rows:
            furthest = max(furthest, start + max(size, 1))
            reach.append(furthest)
        self._func_rows = rows
        self._func_reach = reach
        self._func_starts = [r[0] for r in rows]


#: Parsed files by build-id (a sweep worker's cores share their builds); bounded, so a fleet
#: of many builds does not grow a worker (least recently used first out).
_BY_BUILD_ID: OrderedDict[str, ElfSymbols] = OrderedDict()
_BY_BUILD_ID_LIMIT = 64


def load_symbols(path: str, build_id: str | None = None) -> ElfSymbols:
    """Parse (or fetch from the cache) the sections and symbol tables of the ELF at `path`.

    With the file's verified `build_id` the cache is keyed by it, so the same build found at
    another path (another fleet's root, a relocated copy) is parsed once per process.
    """
    if build_id is not None:
        cached = _BY_BUILD_ID.get(build_id)
        if cached is not None:
            _BY_BUILD_ID.move_to_end(build_id)
            return cached
    st = os.stat(path)
    parsed = _load(os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if build_id is not None:
        _BY_BUILD_ID[build_id] = parsed
        if len(_BY_BUILD_ID) > _BY_BUILD_ID_LIMIT:
            _BY_BUILD_ID.popitem(last=False)
    return parsed


@functools.lru_cache(maxsize=64)
def _load(path: str, _size: int, _mtime: int) -> ElfSymbols:
    with open(path, "rb") as f:
        m = map_file(f.fileno())
        try:
            return _parse(path, m)
        finally:
            m.close()


def _parse(path: str, m: mmap.mmap | FileBytes) -> ElfSymbols:
    def read(offset: int, size: int) -> bytes:
        return m[offset : offset + size]

    header = elf.read_header(read)
    phdrs = elf.read_program_headers(read, header)
    loads = [p.vaddr for p in phdrs if p.type == elf.PT_LOAD]
    table_end = header.shoff + header.shentsize * header.shnum
    if header.shnum and table_end > len(m):
        raise elf.ElfFormatError(
            f"its section headers end at byte {table_end}, past its {len(m)} bytes: it was cut"
        )
    raw = elf.read_section_headers(read, header)
    cut = [h for h in raw if h.type != SHT_NOBITS and h.offset + h.size > len(m)]
    if cut:
        raise elf.ElfFormatError(
            f"{len(cut)} of its sections end past its {len(m)} bytes: it was cut or damaged"
        )
    names = b""
    if raw and header.shstrndx < len(raw):
        shstrtab = raw[header.shstrndx]
        names = m[shstrtab.offset : shstrtab.offset + shstrtab.size]
    sections: dict[str, Section] = {}
    by_index: list[Section] = []
    for h in raw:
        end = names.find(b"\0", h.name_offset)
        name = (
            names[h.name_offset : end].decode("ascii", "replace")
            if h.name_offset < len(names)
            else ""
        )
        sec = Section(name, h.type, h.addr, h.offset, h.size, h.link, h.entsize, h.flags)
        by_index.append(sec)
        sections.setdefault(name, sec)
    out = ElfSymbols(path, header.type, min(loads) if loads else 0, sections)
    out.section_ranges = {
        i: (sec.addr, sec.addr + sec.size) for i, sec in enumerate(by_index) if sec.addr
    }
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
