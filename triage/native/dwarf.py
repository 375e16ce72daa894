"""Source locations of machine code from DWARF (versions 2 to 5): the file and line of an
address, and the calls inlined there.

    info = DebugInfo.open(path)          # None when the file has no .debug_info
    info.locate(address)                 # [Location(...), ...], innermost first

An address is found in its compile unit through `.debug_aranges` (or, without it, each unit's
own ranges), and only that unit's line program and DIEs are read: a unit's line table is
decoded once into sorted rows, its DIEs are walked from the top, skipping every subtree that
does not contain the address (`DW_AT_sibling`). The locations are the inlined calls containing
the address, innermost first, each at the line where it is (the innermost at the address's own
line, the others at the call site of the one inside them), then the physical function at the
call site of its outermost inlined call. Names come from `DW_AT_name`, through
`DW_AT_abstract_origin`/`DW_AT_specification` where the DIE has none. File names are as the
line table records them (a directory other than the unit's own joined in front), which is how
gdb and elfutils show them (`./Modules/timemodule.c`, `Python/thread_pthread.h`).

Compressed sections (`SHF_COMPRESSED`, zlib or zstd) are decompressed when first read. Damaged
DWARF gives no location, never an exception to the caller (`locate` catches its own errors).
"""

from __future__ import annotations

import bisect
import mmap
import struct
import zlib
from dataclasses import dataclass

from triage.coredump import symbols as elf_symbols
from triage.native.leb128 import sleb as _sleb
from triage.native.leb128 import uleb as _uleb

SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB, ELFCOMPRESS_ZSTD = 1, 2

# Tags and attributes read here.
TAG_COMPILE_UNIT, TAG_PARTIAL_UNIT = 0x11, 0x3C
TAG_SUBPROGRAM, TAG_INLINED_SUBROUTINE, TAG_LEXICAL_BLOCK = 0x2E, 0x1D, 0x0B
TAG_NAMESPACE = 0x39
_SCOPES = (TAG_SUBPROGRAM, TAG_INLINED_SUBROUTINE, TAG_LEXICAL_BLOCK)
AT_SIBLING, AT_NAME, AT_STMT_LIST, AT_LOW_PC, AT_HIGH_PC = 0x01, 0x03, 0x10, 0x11, 0x12
AT_COMP_DIR, AT_ABSTRACT_ORIGIN, AT_SPECIFICATION, AT_RANGES = 0x1B, 0x31, 0x47, 0x55
AT_CALL_FILE, AT_CALL_LINE = 0x58, 0x59
AT_STR_OFFSETS_BASE, AT_ADDR_BASE, AT_RNGLISTS_BASE = 0x72, 0x73, 0x74
AT_GNU_ADDR_BASE, AT_GNU_RANGES_BASE = 0x2133, 0x2132

# Forms whose size is fixed (for 8-byte addresses and the unit's offset size, filled in later).
_FIXED = {
    0x0B: 1,
    0x11: 1,
    0x0C: 1,
    0x25: 1,
    0x29: 1,  # data1 ref1 flag strx1 addrx1
    0x05: 2,
    0x12: 2,
    0x26: 2,
    0x2A: 2,  # data2 ref2 strx2 addrx2
    0x27: 3,
    0x2B: 3,  # strx3 addrx3
    0x06: 4,
    0x13: 4,
    0x1C: 4,
    0x28: 4,
    0x2C: 4,  # data4 ref4 ref_sup4 strx4 addrx4
    0x07: 8,
    0x14: 8,
    0x20: 8,
    0x24: 8,
    0x01: 8,  # data8 ref8 ref_sig8 ref_sup8 addr
    0x1E: 16,
    0x19: 0,
    0x21: 0,  # data16 flag_present implicit_const
}
_OFFSET_FORMS = {0x0E, 0x17, 0x1D, 0x1F, 0x1F20, 0x1F21}  # strp sec_offset ... line_strp
_ULEB_FORMS = {0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02}
_BLOCK_FORMS = {0x0A: 1, 0x03: 2, 0x04: 4}  # block1 block2 block4 (+ block, exprloc: uleb)
_REF_FORMS = {0x11, 0x12, 0x13, 0x14, 0x15}  # unit-relative references
_CONSTANT_FORMS = {0x0B, 0x05, 0x06, 0x07, 0x0F, 0x0D, 0x21}

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")

#: A section's bytes: a view of the mapped file, or the inflated copy of a compressed one.
Data = bytes | memoryview
#: An attribute's raw value as `DebugInfo._die` reads it: a number (constant, offset,
#: absolute reference), a string, (kind, number) for what is looked up elsewhere ("addr",
#: "strp", "line_strp", "strx", "addrx", "rnglistx"), None for blocks.
Value = int | bytes | tuple[str, int] | None


def _initial_length(data: Data, pos: int) -> tuple[int, int, int]:
    """A unit's initial length at `pos`: (length, offset size 4 or 8, position after it)."""
    length: int = _U32.unpack_from(data, pos)[0]
    if length == 0xFFFFFFFF:
        long: int = _U64.unpack_from(data, pos + 4)[0]
        return long, 8, pos + 12
    return length, 4, pos + 4


_CHDR = struct.Struct("<IIQQ")

MAX_DEPTH = 64


class DwarfError(ValueError):
    """The DWARF does not read as the format says."""


def _number(value: Value) -> int:
    """An attribute value that must be a number: else the DWARF is damaged (DwarfError, which
    the readers catch, where int() raised a TypeError they did not)."""
    if not isinstance(value, int):
        raise DwarfError(f"a number was expected, not {type(value).__name__}")
    return value


# What damaged or unexpected DWARF makes the readers raise (caught: no location, no crash).
_READ_ERRORS = (DwarfError, IndexError, KeyError, ValueError, struct.error, zlib.error)


@dataclass(frozen=True, slots=True)
class Location:
    """One function at an address: its name (None for the physical function, whose name the
    symbol table gives), its source file and line, and whether it was inlined there."""

    function: str | None
    file: str | None
    line: int | None
    inlined: bool


def decompress(raw: bytes) -> bytes:
    """The contents of an `SHF_COMPRESSED` section (zlib or zstd, after its header)."""
    kind, _reserved, full, _align = _CHDR.unpack_from(raw, 0)
    if kind == ELFCOMPRESS_ZLIB:
        return zlib.decompress(raw[_CHDR.size :])
    if kind == ELFCOMPRESS_ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(raw[_CHDR.size :], full)
    raise DwarfError(f"unknown section compression {kind}")


def _cstr(data: Data, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated string at `pos` (without its NUL) and the position after it."""
    if isinstance(data, bytes):
        end = data.index(b"\0", pos)
        return data[pos:end], end + 1
    step = 64  # a view of a mapped section: look for the NUL a chunk at a time
    while True:
        chunk = bytes(data[pos : pos + step])
        end = chunk.find(b"\0")
        if end >= 0:
            return chunk[:end], pos + end + 1
        if pos + step >= len(data):
            raise ValueError("unterminated string")
        step *= 4


@dataclass(slots=True)
class _Abbrev:
    tag: int
    children: bool
    specs: list[tuple[int, int, int]]  # (attribute, form, implicit constant)
    # How to step over a DIE of this abbreviation without decoding it, by offset size:
    # (size of all its attributes or None, (offset, size) of DW_AT_sibling or None).
    plans: dict[int, tuple[int | None, tuple[int, int] | None]] | None = None

    def plan(self, offset_size: int) -> tuple[int | None, tuple[int, int] | None]:
        if self.plans is None:
            self.plans = {}
        found = self.plans.get(offset_size)
        if found is None:
            found = self.plans[offset_size] = self._plan(offset_size)
        return found

    def _plan(self, offset_size: int) -> tuple[int | None, tuple[int, int] | None]:
        size = 0
        sibling = None
        for attr, form, _const in self.specs:
            width = _FIXED.get(form)
            if width is None and form in _OFFSET_FORMS:
                width = offset_size
            if width is None:
                return None, sibling
            if attr == AT_SIBLING and form in _REF_FORMS and sibling is None:
                sibling = (size, width)
            size += width
        return size, sibling


@dataclass(slots=True)
class _Unit:
    """One compile unit: its header, abbreviations and the attributes of its top DIE."""

    offset: int
    end: int
    version: int
    offset_size: int
    address_size: int
    die_start: int
    abbrevs: dict[int, _Abbrev]
    attrs: dict[int, Value]
    str_offsets_base: int = 8
    addr_base: int = 8
    rnglists_base: int = 12
    # The unit's functions with code: sorted range starts, ends and DIE offsets (built once).
    functions: tuple[list[int], list[int], list[int]] | None = None


@dataclass(slots=True)
class _Lines:
    """A unit's line program: its header's parameters and file names, where the program is,
    and the rows found so far for the addresses asked about."""

    files: list[str | None]
    program: tuple[int, int]  # where the opcodes start and end in .debug_line
    min_inst: int
    line_base: int
    line_range: int
    opcode_base: int
    lengths: list[int]
    found: dict[int, tuple[int, int] | None]  # address -> (file index, line) or None


class DebugInfo:
    """The DWARF of one ELF file (link-time addresses)."""

    def __init__(self, path: str, data: mmap.mmap, sections: dict[str, tuple[int, int, int]]):
        self.path = path
        self._data = data
        self._sections = sections  # name -> (file offset, size, flags)
        self._loaded: dict[str, Data] = {}
        self._ranges: tuple[list[int], list[int], list[int]] | None = None
        self._units: dict[int, _Unit] = {}
        self._unit_starts: list[int] | None = None
        self._lines: dict[int, _Lines | None] = {}
        self._abbrevs: dict[int, dict[int, _Abbrev]] = {}
        self._names: dict[int, str | None] = {}

    @classmethod
    def open(cls, path: str) -> DebugInfo | None:
        """The file's DWARF, or None when it has no `.debug_info`."""
        parsed = elf_symbols.load_symbols(path)
        if ".debug_info" not in parsed.sections:
            return None
        with open(path, "rb") as stream:
            data = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        sections = {
            name: (s.offset, s.size, s.flags)
            for name, s in parsed.sections.items()
            if name.startswith(".debug_") and s.type != elf_symbols.SHT_NOBITS
        }
        return cls(path, data, sections)

    def resident_bytes(self) -> int:
        """What the sections read so far hold in memory (copied or decompressed)."""
        return sum(len(data) for data in self._loaded.values() if isinstance(data, bytes))

    # -- sections ---------------------------------------------------------------------

    def _section(self, name: str) -> Data:
        found = self._loaded.get(name)
        if found is not None:
            return found
        where = self._sections.get(name)
        if where is None:
            self._loaded[name] = b""
            return b""
        offset, size, flags = where
        # Sections stored as they are stay in the mapping (a view: no copy, no memory of
        # ours); compressed ones are inflated into memory.
        raw: Data = memoryview(self._data)[offset : offset + size]
        if flags & SHF_COMPRESSED:
            raw = decompress(bytes(raw))
        self._loaded[name] = raw
        return raw

    # -- public -----------------------------------------------------------------------

    def locate(self, address: int) -> list[Location] | None:
        """Where `address` is in the source, innermost inlined call first; None when the
        DWARF does not cover it (or cannot be read)."""
        return self.locate_many([address]).get(address)

    def locate_many(self, addresses: list[int]) -> dict[int, list[Location] | None]:
        """`locate` of several addresses at once: each unit's line program is run once for
        all of its addresses (and no further than the last of them)."""
        out: dict[int, list[Location] | None] = {}
        by_unit: dict[int, list[int]] = {}
        for address in addresses:
            try:
                unit_offset = self._unit_for(address)
            except _READ_ERRORS:
                unit_offset = None
            if unit_offset is None:
                out[address] = None
            else:
                by_unit.setdefault(unit_offset, []).append(address)
        for unit_offset, wanted in by_unit.items():
            try:
                unit = self._unit(unit_offset)
                lines = self._line_table(unit)
                if lines is not None:
                    self._find_rows(lines, wanted)
            except _READ_ERRORS:
                lines = None
            for address in wanted:
                try:
                    out[address] = self._locate(unit, address, lines)
                except _READ_ERRORS:
                    out[address] = None
        return out

    def _locate(self, unit: _Unit, address: int, lines: _Lines | None) -> list[Location] | None:
        chain = self._scopes(unit, address)  # [(die offset, abbrev, attrs)], outermost first
        if not chain:
            return None
        row = lines.found.get(address) if lines is not None else None
        here = (self._file_name(lines, row[0]), row[1]) if row is not None else (None, None)
        inlined = [c for c in chain if c[1].tag == TAG_INLINED_SUBROUTINE]
        out: list[Location] = []
        file, line = here
        for die_offset, _abbrev, attrs in reversed(inlined):
            out.append(Location(self._name(unit, die_offset, attrs), file, line, True))
            file = self._file_name(lines, attrs.get(AT_CALL_FILE))
            call_line = attrs.get(AT_CALL_LINE)
            line = call_line if isinstance(call_line, int) else None
        out.append(Location(None, file, line, False))
        return out

    # -- units --------------------------------------------------------------------------

    def _unit_for(self, address: int) -> int | None:
        if self._ranges is None:
            self._ranges = self._read_aranges() or self._unit_ranges()
        starts, ends, units = self._ranges
        i = bisect.bisect_right(starts, address) - 1
        while i >= 0 and starts[i] <= address:
            if address < ends[i]:
                return units[i]
            i -= 1
            if i >= 0 and ends[i] <= starts[i + 1] and ends[i] <= address:
                break
        return None

    def _read_aranges(self) -> tuple[list[int], list[int], list[int]] | None:
        data = self._section(".debug_aranges")
        if not data:
            return None
        rows = []
        pos = 0
        while pos + 12 <= len(data):
            length, offset_size, p = _initial_length(data, pos)
            end = p + length
            p += 2  # version
            unit = _U64 if offset_size == 8 else _U32
            cu = unit.unpack_from(data, p)[0]
            p += offset_size
            address_size, _segment = data[p], data[p + 1]
            p += 2
            if address_size != 8:
                pos = end
                continue
            p += (-(p - pos)) % 16  # tuples are aligned to twice the address size
            while p + 16 <= end:
                start, size = struct.unpack_from("<QQ", data, p)
                p += 16
                if start == 0 and size == 0:
                    break
                if size:
                    rows.append((start, start + size, cu))
            pos = end
        if not rows:
            return None
        rows.sort()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def _unit_ranges(self) -> tuple[list[int], list[int], list[int]]:
        rows = []
        for offset in self._all_units():
            unit = self._unit(offset)
            for lo, hi in self._die_ranges(unit, unit.attrs):
                rows.append((lo, hi, offset))
        rows.sort()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def _all_units(self) -> list[int]:
        if self._unit_starts is None:
            info = self._section(".debug_info")
            starts, pos = [], 0
            while pos + 11 <= len(info):
                starts.append(pos)
                length, _, pos = _initial_length(info, pos)
                pos += length
            self._unit_starts = starts
        return self._unit_starts

    def _unit(self, offset: int) -> _Unit:
        unit = self._units.get(offset)
        if unit is not None:
            return unit
        info = self._section(".debug_info")
        length, offset_size, pos = _initial_length(info, offset)
        end = pos + length
        version = _U16.unpack_from(info, pos)[0]
        pos += 2
        word = _U64 if offset_size == 8 else _U32
        if version >= 5:
            unit_type, address_size = info[pos], info[pos + 1]
            abbrev_offset = word.unpack_from(info, pos + 2)[0]
            pos += 2 + offset_size
            if unit_type in (4, 5):  # skeleton, split_compile: a dwo id
                pos += 8
            elif unit_type in (2, 6):  # type units
                pos += 8 + offset_size
        elif version >= 2:
            abbrev_offset = word.unpack_from(info, pos)[0]
            address_size = info[pos + offset_size]
            pos += offset_size + 1
        else:
            raise DwarfError(f"DWARF version {version}")
        if address_size != 8:
            raise DwarfError(f"address size {address_size}")
        unit = _Unit(
            offset, end, version, offset_size, 8, pos, self._abbrev_table(abbrev_offset), {}
        )
        _tag, attrs, _next, _abbrev = self._die(unit, pos)
        unit.attrs = attrs
        unit.str_offsets_base = _number(attrs.get(AT_STR_OFFSETS_BASE, 8))
        unit.addr_base = _number(attrs.get(AT_ADDR_BASE, attrs.get(AT_GNU_ADDR_BASE, 8)))
        unit.rnglists_base = _number(attrs.get(AT_RNGLISTS_BASE, 12))
        self._units[offset] = unit
        return unit

    def _unit_containing(self, offset: int) -> _Unit:
        starts = self._all_units()
        i = bisect.bisect_right(starts, offset) - 1
        if i < 0:
            raise DwarfError(f"no unit at 0x{offset:x}")
        return self._unit(starts[i])

    def _abbrev_table(self, offset: int) -> dict[int, _Abbrev]:
        table = self._abbrevs.get(offset)
        if table is not None:
            return table
        data = self._section(".debug_abbrev")
        table = {}
        pos = offset
        while True:
            code, pos = _uleb(data, pos)
            if code == 0:
                break
            tag, pos = _uleb(data, pos)
            children = data[pos] == 1
            pos += 1
            specs = []
            while True:
                attr, pos = _uleb(data, pos)
                form, pos = _uleb(data, pos)
                if attr == 0 and form == 0:
                    break
                const = 0
                if form == 0x21:
                    const, pos = _sleb(data, pos)
                specs.append((attr, form, const))
            table[code] = _Abbrev(tag, children, specs)
        self._abbrevs[offset] = table
        return table

    # -- DIEs -------------------------------------------------------------------------

    def _die(self, unit: _Unit, pos: int) -> tuple[int, dict[int, Value], int, _Abbrev | None]:
        """(tag, {attribute: raw value}, position after the DIE, abbrev) of the DIE at `pos`;
        tag 0 for a null entry. References are made absolute (section offsets)."""
        info = self._section(".debug_info")
        code, pos = _uleb(info, pos)
        if code == 0:
            return 0, {}, pos, None
        abbrev = unit.abbrevs[code]
        attrs: dict[int, Value] = {}
        osize = unit.offset_size
        for attr, form, const in abbrev.specs:
            if form == 0x16:  # indirect
                form, pos = _uleb(info, pos)
            size = _FIXED.get(form)
            if size is not None:
                if form == 0x21:
                    value: Value = const
                elif size == 0:
                    value = 1
                else:
                    number = int.from_bytes(info[pos : pos + size], "little")
                    if form in _REF_FORMS:
                        value = unit.offset + number
                    elif form == 0x01:
                        value = ("addr", number)  # an address, not a constant (high_pc)
                    elif form in (0x25, 0x26, 0x27, 0x28):
                        value = ("strx", number)
                    elif form in (0x29, 0x2A, 0x2B, 0x2C):
                        value = ("addrx", number)
                    else:
                        value = number
                pos += size
            elif form in _OFFSET_FORMS or (form == 0x10 and unit.version >= 3):
                value = int.from_bytes(info[pos : pos + osize], "little")
                pos += osize
                if form == 0x0E:
                    value = ("strp", value)
                elif form == 0x1F:
                    value = ("line_strp", value)
            elif form == 0x10:  # ref_addr, DWARF 2: address-sized
                value = int.from_bytes(info[pos : pos + 8], "little")
                pos += 8
            elif form in _ULEB_FORMS:
                value, pos = _uleb(info, pos)
                if form == 0x15:
                    value = unit.offset + value
                elif form in (0x1A, 0x1F02):
                    value = ("strx", value)
                elif form in (0x1B, 0x1F01):
                    value = ("addrx", value)
                elif form == 0x23:
                    value = ("rnglistx", value)
            elif form == 0x0D:
                value, pos = _sleb(info, pos)
            elif form == 0x08:
                value, pos = _cstr(info, pos)
            elif form in _BLOCK_FORMS:
                n = int.from_bytes(info[pos : pos + _BLOCK_FORMS[form]], "little")
                pos += _BLOCK_FORMS[form] + n
                value = None
            elif form in (0x09, 0x18):
                n, pos = _uleb(info, pos)
                pos += n
                value = None
            else:
                raise DwarfError(f"unknown form 0x{form:x}")
            attrs[attr] = value
        return abbrev.tag, attrs, pos, abbrev

    def _skip_children(self, unit: _Unit, pos: int) -> int:
        """The position after the children that start at `pos` (a null entry ends them)."""
        depth = 1
        while depth:
            _tag, attrs, nxt, abbrev = self._die(unit, pos)
            if abbrev is None:
                depth -= 1
                pos = nxt
                continue
            if abbrev.children:
                sibling = attrs.get(AT_SIBLING)
                if isinstance(sibling, int) and sibling > pos:
                    pos = sibling
                    continue
                depth += 1
            pos = nxt
        return pos

    def _scopes(self, unit: _Unit, address: int) -> list[tuple[int, _Abbrev, dict[int, Value]]]:
        """The subprogram containing `address` and the inlined calls and blocks inside it that
        contain it, outermost first."""
        if unit.functions is None:
            unit.functions = self._function_index(unit)
        starts, ends, offsets = unit.functions
        i = bisect.bisect_right(starts, address) - 1
        while i >= 0 and not starts[i] <= address < ends[i]:
            i -= 1
            if i >= 0 and ends[i] <= address and starts[i] + (1 << 24) < address:
                return []  # functions are far shorter than that: nothing earlier covers it
        if i < 0:
            return []
        start = offsets[i]
        tag, attrs, pos, abbrev = self._die(unit, start)
        assert abbrev is not None
        chain = [(start, abbrev, attrs)]
        if not abbrev.children:
            return chain
        while pos < unit.end and len(chain) < MAX_DEPTH:
            start = pos
            tag, attrs, nxt, abbrev = self._die(unit, pos)
            if abbrev is None:  # the end of the innermost scope's children
                return chain
            if tag in _SCOPES and self._contains(unit, attrs, address):
                chain.append((start, abbrev, attrs))
                if not abbrev.children:
                    return chain
                pos = nxt
                continue
            pos = self._after(unit, start, nxt, attrs, abbrev)
        return chain

    def _function_index(self, unit: _Unit) -> tuple[list[int], list[int], list[int]]:
        """Every subprogram with code among the unit's top-level DIEs (and namespaces'), by
        address range. Other DIEs are stepped over without decoding (`_Abbrev.plan`)."""
        info = self._section(".debug_info")
        rows: list[tuple[int, int, int]] = []
        _tag, _attrs, pos, abbrev = self._die(unit, unit.die_start)
        if abbrev is None or not abbrev.children:
            return [], [], []
        depth = 1
        osize = unit.offset_size
        abbrevs = unit.abbrevs
        while pos < unit.end and depth:
            start = pos
            code, after = _uleb(info, pos)
            if code == 0:
                depth -= 1
                pos = after
                continue
            abbrev = abbrevs[code]
            tag = abbrev.tag
            if tag in (TAG_SUBPROGRAM, TAG_NAMESPACE):
                _tag, attrs, nxt, _abbrev = self._die(unit, start)
                if tag == TAG_NAMESPACE:
                    if abbrev.children:
                        depth += 1
                    pos = nxt
                    continue
                for lo, hi in self._die_ranges(unit, attrs):
                    rows.append((lo, hi, start))
                pos = self._after(unit, start, nxt, attrs, abbrev)
                continue
            size, sibling = abbrev.plan(osize)
            if abbrev.children and sibling is not None:
                at = after + sibling[0]
                target = unit.offset + int.from_bytes(info[at : at + sibling[1]], "little")
                if target > start:
                    pos = target
                    continue
            if not abbrev.children and size is not None:
                pos = after + size
                continue
            _tag, attrs, nxt, _abbrev = self._die(unit, start)
            pos = self._after(unit, start, nxt, attrs, abbrev)
        rows.sort()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def _after(
        self, unit: _Unit, start: int, nxt: int, attrs: dict[int, Value], abbrev: _Abbrev
    ) -> int:
        """The position of the DIE after the one at `start` and its subtree."""
        if not abbrev.children:
            return nxt
        sibling = attrs.get(AT_SIBLING)
        if isinstance(sibling, int) and sibling > start:
            return sibling
        return self._skip_children(unit, nxt)

    def _contains(self, unit: _Unit, attrs: dict[int, Value], address: int) -> bool:
        return any(lo <= address < hi for lo, hi in self._die_ranges(unit, attrs))

    def _address(self, unit: _Unit, value: Value) -> int:
        if isinstance(value, tuple):
            if value[0] == "addr":
                return value[1]
            data = self._section(".debug_addr")  # addrx
            address: int = _U64.unpack_from(data, unit.addr_base + 8 * value[1])[0]
            return address
        return _number(value)

    def _die_ranges(self, unit: _Unit, attrs: dict[int, Value]) -> list[tuple[int, int]]:
        if AT_LOW_PC in attrs and AT_HIGH_PC in attrs:
            lo = self._address(unit, attrs[AT_LOW_PC])
            high = attrs[AT_HIGH_PC]
            if isinstance(high, tuple):  # an address (addr, addrx)
                return [(lo, self._address(unit, high))]
            return [(lo, lo + _number(high))]  # a length
        ranges = attrs.get(AT_RANGES)
        if ranges is None:
            return []
        low_pc = unit.attrs.get(AT_LOW_PC, 0)
        base = self._address(unit, low_pc) if low_pc else 0
        if unit.version >= 5:
            return self._rnglist(unit, ranges, base)
        return self._ranges_v4(_number(ranges), base)

    def _ranges_v4(self, offset: int, base: int) -> list[tuple[int, int]]:
        data = self._section(".debug_ranges")
        out = []
        pos = offset
        while pos + 16 <= len(data):
            start, end = struct.unpack_from("<QQ", data, pos)
            pos += 16
            if start == 0 and end == 0:
                break
            if start == 0xFFFFFFFFFFFFFFFF:
                base = end
                continue
            out.append((base + start, base + end))
        return out

    def _rnglist(self, unit: _Unit, value: Value, base: int) -> list[tuple[int, int]]:
        data = self._section(".debug_rnglists")
        if isinstance(value, tuple):  # rnglistx: an offset from the unit's rnglists_base
            offsets_at = unit.rnglists_base + unit.offset_size * value[1]
            pos = unit.rnglists_base + int.from_bytes(
                data[offsets_at : offsets_at + unit.offset_size], "little"
            )
        else:
            pos = _number(value)
        out: list[tuple[int, int]] = []
        while True:
            kind = data[pos]
            pos += 1
            if kind == 0:  # end_of_list
                return out
            if kind == 1:  # base_addressx
                index, pos = _uleb(data, pos)
                base = self._address(unit, ("addrx", index))
            elif kind == 2:  # startx_endx
                a, pos = _uleb(data, pos)
                b, pos = _uleb(data, pos)
                out.append((self._address(unit, ("addrx", a)), self._address(unit, ("addrx", b))))
            elif kind == 3:  # startx_length
                a, pos = _uleb(data, pos)
                n, pos = _uleb(data, pos)
                start = self._address(unit, ("addrx", a))
                out.append((start, start + n))
            elif kind == 4:  # offset_pair
                a, pos = _uleb(data, pos)
                b, pos = _uleb(data, pos)
                out.append((base + a, base + b))
            elif kind == 5:  # base_address
                base = _U64.unpack_from(data, pos)[0]
                pos += 8
            elif kind == 6:  # start_end
                a, b = struct.unpack_from("<QQ", data, pos)
                pos += 16
                out.append((a, b))
            elif kind == 7:  # start_length
                a = _U64.unpack_from(data, pos)[0]
                n, pos = _uleb(data, pos + 8)
                out.append((a, a + n))
            else:
                raise DwarfError(f"range list entry kind {kind}")

    def _string(self, unit: _Unit, value: Value) -> str | None:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, tuple):
            kind, n = value
            if kind == "strx":
                offsets = self._section(".debug_str_offsets")
                at = unit.str_offsets_base + unit.offset_size * n
                n = int.from_bytes(offsets[at : at + unit.offset_size], "little")
                kind = "strp"
            section = ".debug_line_str" if kind == "line_strp" else ".debug_str"
            raw, _ = _cstr(self._section(section), n)
        else:
            return None
        return raw.decode("utf-8", "replace")

    def _name(self, unit: _Unit, die_offset: int, attrs: dict[int, Value]) -> str | None:
        """A DIE's name, through its abstract origin or specification where it has none."""
        if die_offset in self._names:
            return self._names[die_offset]
        name = None
        seen = 0
        while seen < 8:
            seen += 1
            if AT_NAME in attrs:
                name = self._string(unit, attrs[AT_NAME])
                break
            ref = attrs.get(AT_ABSTRACT_ORIGIN, attrs.get(AT_SPECIFICATION))
            if not isinstance(ref, int):
                break
            unit = self._unit_containing(ref) if not unit.offset <= ref < unit.end else unit
            _tag, attrs, _next, _abbrev = self._die(unit, ref)
        self._names[die_offset] = name
        return name

    # -- lines ------------------------------------------------------------------------

    def _line_table(self, unit: _Unit) -> _Lines | None:
        if unit.offset in self._lines:
            return self._lines[unit.offset]
        stmt = unit.attrs.get(AT_STMT_LIST)
        table = self._decode_lines(unit, stmt) if isinstance(stmt, int) else None
        self._lines[unit.offset] = table
        return table

    def _find_rows(self, lines: _Lines, addresses: list[int]) -> None:
        """Run the line program for the addresses it has not answered yet."""
        wanted = sorted({a for a in addresses if a not in lines.found})
        if not wanted:
            return
        rows = _run_line_program(self._section(".debug_line"), lines, wanted)
        for address in wanted:
            lines.found[address] = rows.get(address)

    @staticmethod
    def _file_name(lines: _Lines | None, index: object) -> str | None:
        if lines is None or not isinstance(index, int) or not 0 <= index < len(lines.files):
            return None
        return lines.files[index]

    def _decode_lines(self, unit: _Unit, offset: int) -> _Lines:
        data = self._section(".debug_line")
        length, osize, pos = _initial_length(data, offset)
        end = pos + length
        version = _U16.unpack_from(data, pos)[0]
        pos += 2
        if version >= 5:
            pos += 2  # address_size, segment_selector_size
        header_length = int.from_bytes(data[pos : pos + osize], "little")
        pos += osize
        program = pos + header_length
        min_inst = data[pos]
        pos += 1
        if version >= 4:
            pos += 1  # maximum_operations_per_instruction (VLIW only)
        default_is_stmt = data[pos]
        line_base = data[pos + 1] - 256 if data[pos + 1] > 127 else data[pos + 1]
        line_range, opcode_base = data[pos + 2], data[pos + 3]
        pos += 4
        lengths = list(data[pos : pos + opcode_base - 1])
        pos += opcode_base - 1
        files: list[str | None]
        names: list[str | None]
        if version >= 5:
            dirs, pos = self._entries(unit, data, pos, osize)
            entries, pos = self._entries(unit, data, pos, osize)
            names = [_text(d.get(0x1)) for d in dirs]  # DW_LNCT_path
            comp = names[0] if names else None
            files = [self._joined(_text(e.get(0x1)), names, e.get(0x2, 0), comp) for e in entries]
        else:
            names = [self._string(unit, unit.attrs.get(AT_COMP_DIR)) or ""]
            while data[pos]:
                raw, pos = _cstr(data, pos)
                names.append(raw.decode("utf-8", "replace"))
            pos += 1
            files = [None]  # file numbers start at 1 before DWARF 5
            while data[pos]:
                raw, pos = _cstr(data, pos)
                directory, pos = _uleb(data, pos)
                _mtime, pos = _uleb(data, pos)
                _size, pos = _uleb(data, pos)
                files.append(
                    self._joined(raw.decode("utf-8", "replace"), names, directory, names[0])
                )
        del default_is_stmt  # every row counts, as for gdb's and elfutils' lookups
        return _Lines(
            files, (program, end), min_inst, line_base, line_range, opcode_base, lengths, {}
        )

    @staticmethod
    def _joined(
        name: str | None, dirs: list[str | None], index: object, comp: str | None
    ) -> str | None:
        """A line table's file name as gdb and elfutils show it: an absolute name as it is;
        a name in the unit's own directory (index 0) alone when that directory is absolute,
        behind it when it is relative (glibc's `./nptl`); any other behind its directory."""
        if name is None:
            return None
        if name.startswith("/") or not isinstance(index, int) or not 0 <= index < len(dirs):
            return name
        directory = dirs[index] or ""
        if not directory or (index == 0 and directory.startswith("/")):
            return name
        return f"{directory}/{name}"

    def _entries(
        self, unit: _Unit, data: Data, pos: int, osize: int
    ) -> tuple[list[dict[int, str | int | None]], int]:
        """DWARF 5 directory or file entries: their formats, then the entries."""
        count = data[pos]
        pos += 1
        formats = []
        for _ in range(count):
            kind, pos = _uleb(data, pos)
            form, pos = _uleb(data, pos)
            formats.append((kind, form))
        n, pos = _uleb(data, pos)
        out: list[dict[int, str | int | None]] = []
        for _ in range(n):
            entry: dict[int, str | int | None] = {}
            for kind, form in formats:
                value: str | int | None
                if form == 0x08:
                    raw, pos = _cstr(data, pos)
                    value = raw.decode("utf-8", "replace")
                elif form in (0x1F, 0x0E):
                    at = int.from_bytes(data[pos : pos + osize], "little")
                    pos += osize
                    value = self._string(unit, ("line_strp" if form == 0x1F else "strp", at))
                elif form in (0x0F, 0x1A):
                    value, pos = _uleb(data, pos)
                    if form == 0x1A:
                        value = self._string(unit, ("strx", value))
                elif form in (0x25, 0x26, 0x27, 0x28):
                    size = form - 0x24
                    value = self._string(
                        unit, ("strx", int.from_bytes(data[pos : pos + size], "little"))
                    )
                    pos += size
                elif form in (0x0B, 0x05, 0x06, 0x07, 0x1E):
                    size = {0x0B: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x1E: 16}[form]
                    value = int.from_bytes(data[pos : pos + size], "little")
                    pos += size
                elif form == 0x09:
                    size, pos = _uleb(data, pos)
                    pos += size
                    value = None
                else:
                    raise DwarfError(f"line table entry form 0x{form:x}")
                entry[kind] = value
            out.append(entry)
        return out, pos


def _run_line_program(data: Data, lines: _Lines, targets: list[int]) -> dict[int, tuple[int, int]]:
    """Run a line program for the sorted `targets`: for each, the (file, line) of the last
    row at or below it in the sequence that contains it (rows rise within a sequence, so a
    target is answered when the first row above it appears). Rows are not kept; the run stops
    once every target is answered."""
    pos, end = lines.program
    opcode_base, line_range, min_inst = lines.opcode_base, lines.line_range, lines.min_inst
    lengths = lines.lengths
    # What each special opcode adds to the address and the line (the hot path).
    address_step = [0] * 256
    line_step = [0] * 256
    for op in range(opcode_base, 256):
        adjusted = op - opcode_base
        address_step[op] = (adjusted // line_range) * min_inst
        line_step[op] = lines.line_base + adjusted % line_range
    const_add = address_step[255]
    found: dict[int, tuple[int, int]] = {}
    count = len(targets)
    address, file, line = 0, 1, 1
    started = False  # a row of the current sequence was seen (prev_* hold the last one)
    prev_address = prev_file = prev_line = 0
    k = 0  # the next target not yet passed in this sequence
    limit = -1  # a row above this address answers targets (or starts the sequence)

    def crossed(row_address: int) -> None:
        """A row at `row_address` follows the previous one: answer the targets between."""
        nonlocal k, limit, started
        if not started:
            k = bisect.bisect_left(targets, row_address)
            started = True
        else:
            while k < count and targets[k] < row_address:
                if targets[k] >= prev_address:
                    found[targets[k]] = (prev_file, prev_line)
                k += 1
        limit = targets[k] if k < count else 1 << 64

    while pos < end:
        op = data[pos]
        pos += 1
        if op >= opcode_base:
            address += address_step[op]
            line += line_step[op]
            if address > limit:
                crossed(address)
                if len(found) == count:
                    break
            prev_address, prev_file, prev_line = address, file, line
        elif op == 0:  # extended
            size, pos = _uleb(data, pos)
            sub = data[pos]
            if sub == 1:  # end_sequence: its address ends the last row's range
                if started:
                    crossed(address)
                    if len(found) == count:
                        break
                address, file, line = 0, 1, 1
                started, limit = False, -1
            elif sub == 2:  # set_address
                address = int.from_bytes(data[pos + 1 : pos + size], "little")
            pos += size
        elif op == 1:  # copy
            if address > limit:
                crossed(address)
                if len(found) == count:
                    break
            prev_address, prev_file, prev_line = address, file, line
        elif op == 2:  # advance_pc
            n, pos = _uleb(data, pos)
            address += n * min_inst
        elif op == 3:  # advance_line
            n, pos = _sleb(data, pos)
            line += n
        elif op == 4:  # set_file
            file, pos = _uleb(data, pos)
        elif op == 8:  # const_add_pc
            address += const_add
        elif op == 9:  # fixed_advance_pc
            address += _U16.unpack_from(data, pos)[0]
            pos += 2
        else:  # set_column, negate_stmt, basic_block, prologue/epilogue, isa, unknown
            for _ in range(lengths[op - 1] if op - 1 < len(lengths) else 0):
                _n, pos = _uleb(data, pos)
    return found


def _text(value: str | int | None) -> str | None:
    """A line table entry's path: a string, else (damaged DWARF) none."""
    return value if isinstance(value, str) else None
