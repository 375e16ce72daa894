"""Just enough ELF64 (little-endian) to read headers, program headers and notes.

Works over any `read(offset, size) -> bytes` function, so the same code reads a core file, a
library on disk, or an ELF image mapped in the dead process's memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
EM_X86_64 = 62
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
NT_GNU_BUILD_ID = 3

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_NHDR = struct.Struct("<III")

Reader = Callable[[int, int], bytes]
ByteOrder = Literal["little", "big"]


class ElfFormatError(ValueError):
    """The bytes are not a (well-formed) ELF64 little-endian image."""


#: What reading a damaged ELF file on disk (cut short, overwritten) can raise in the readers
#: of its headers, symbols, call-frame information and DWARF: the file is then one that cannot
#: be used, not a bug.
DAMAGED_FILE = (OSError, ValueError, IndexError, struct.error)


@dataclass(frozen=True, slots=True)
class ElfHeader:
    """The fields of the ELF header that triage uses."""

    type: int
    machine: int
    entry: int
    phoff: int
    phentsize: int
    phnum: int
    shoff: int = 0
    shentsize: int = 0
    shnum: int = 0
    shstrndx: int = 0


@dataclass(frozen=True, slots=True)
class ProgramHeader:
    """One program header (segment)."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True, slots=True)
class Note:
    """One ELF note: owner name, type and the descriptor's place in the containing image."""

    name: str
    type: int
    desc_offset: int
    desc_size: int


ET_NAMES = {
    0: "an ELF file of no type",
    1: "an ELF relocatable object",
    2: "an ELF executable",
    3: "an ELF shared library",
}
PT_INTERP = 3


def what_is_not_a_core(data: bytes) -> str | None:
    """None for the start of a 64-bit ELF core; else, in words, what the file is (tolerant of
    any class and byte order, which `parse_header` refuses)."""
    if not data.startswith(b"\x7fELF"):
        return "not an ELF file"
    if len(data) < 20:
        return f"a truncated ELF file ({len(data)} bytes)"
    ei_class, ei_data = data[4], data[5]
    if ei_data not in (1, 2):
        return "an ELF file of unknown byte order"
    order: ByteOrder = "little" if ei_data == 1 else "big"
    e_type = int.from_bytes(data[16:18], order)
    if ei_class != 2:
        kind = "a 32-bit ELF core" if e_type == ET_CORE else "a 32-bit ELF file"
        return f"{kind}; only 64-bit cores are supported"
    if e_type == ET_CORE:
        return None
    if e_type == ET_DYN and _has_interp(data, order):
        return "an ELF executable (position-independent), not a core"
    return f"{ET_NAMES.get(e_type, f'an ELF file of type {e_type}')}, not a core"


def _has_interp(data: bytes, order: ByteOrder) -> bool:
    """Whether a 64-bit ELF file's program headers (if within `data`) include PT_INTERP."""
    if len(data) < 64:
        return False
    phoff = int.from_bytes(data[32:40], order)
    phentsize = int.from_bytes(data[54:56], order)
    phnum = int.from_bytes(data[56:58], order)
    if phentsize < 4:
        return False
    for i in range(min(phnum, 256)):
        at = phoff + i * phentsize
        if at + 4 > len(data):
            return False
        if int.from_bytes(data[at : at + 4], order) == PT_INTERP:
            return True
    return False


def parse_header(data: bytes) -> ElfHeader:
    """Parse the 64-byte ELF header, refusing anything but ELF64 little-endian."""
    if len(data) < 4 or data[:4] != ELF_MAGIC:
        raise ElfFormatError("not an ELF file (no \\x7fELF magic)")
    if len(data) < _EHDR.size:
        raise ElfFormatError("ELF header is truncated")
    (
        ident,
        etype,
        machine,
        _ver,
        entry,
        phoff,
        shoff,
        _fl,
        _eh,
        phentsize,
        phnum,
        shentsize,
        shnum,
        shstrndx,
    ) = _EHDR.unpack_from(data)
    if ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB:
        raise ElfFormatError("only 64-bit little-endian ELF files are supported")
    return ElfHeader(
        etype, machine, entry, phoff, phentsize, phnum, shoff, shentsize, shnum, shstrndx
    )


def read_header(read: Reader) -> ElfHeader:
    """Read and parse the ELF header through `read`."""
    return parse_header(read(0, _EHDR.size))


_SHDR = struct.Struct("<IIQQQQIIQQ")


@dataclass(frozen=True, slots=True)
class SectionHeader:
    """One section header (its name still an offset into the section-name table)."""

    name_offset: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


def read_section_headers(read: Reader, header: ElfHeader) -> list[SectionHeader]:
    """Every section header through `read` (none when the table is absent or cut off)."""
    if not header.shoff or header.shentsize < _SHDR.size or not header.shnum:
        return []
    raw = read(header.shoff, header.shentsize * header.shnum)
    if len(raw) < header.shentsize * header.shnum:
        return []
    out = []
    for i in range(header.shnum):
        name, stype, flags, addr, offset, size, link, _info, _align, entsize = _SHDR.unpack_from(
            raw, i * header.shentsize
        )
        out.append(SectionHeader(name, stype, flags, addr, offset, size, link, entsize))
    return out


def read_program_headers(read: Reader, header: ElfHeader) -> list[ProgramHeader]:
    """Read every program header through `read`."""
    if header.phnum == 0:
        return []
    if header.phentsize < _PHDR.size:
        raise ElfFormatError(f"program header entries of {header.phentsize} bytes are too small")
    raw = read(header.phoff, header.phentsize * header.phnum)
    if len(raw) < header.phentsize * header.phnum:
        raise ElfFormatError("program header table is truncated")
    out = []
    for i in range(header.phnum):
        ptype, flags, offset, vaddr, _paddr, filesz, memsz, align = _PHDR.unpack_from(
            raw, i * header.phentsize
        )
        out.append(ProgramHeader(ptype, flags, offset, vaddr, filesz, memsz, align))
    return out


def iter_notes(data: bytes, base: int = 0) -> Iterator[Note]:
    """Walk the notes in `data` (one PT_NOTE's bytes); offsets are reported relative to `base`.

    Raises ElfFormatError when a note's sizes run past the end of the segment.
    """
    pos, end = 0, len(data)
    while pos + _NHDR.size <= end:
        namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
        pos += _NHDR.size
        name_end = pos + namesz
        desc_start = pos + _align4(namesz)
        desc_end = desc_start + descsz
        if name_end > end or desc_end > end:
            raise ElfFormatError(
                f"note at offset {base + pos - _NHDR.size} claims {namesz}+{descsz} bytes, "
                f"past the end of its segment"
            )
        name = data[pos:name_end].rstrip(b"\0").decode("ascii", "replace")
        yield Note(name, ntype, base + desc_start, descsz)
        pos = desc_start + _align4(descsz)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def build_id_from_notes(read: Reader, phdrs: list[ProgramHeader], *, memory: bool) -> str | None:
    """The GNU build-id (hex) from an image's PT_NOTE segments, or None.

    `memory` selects addressing: vaddr (an image in process memory, with `read` already
    relative to the load bias) or file offset (a file on disk).
    """
    for ph in phdrs:
        if ph.type != PT_NOTE or ph.filesz == 0 or ph.filesz > 1 << 20:
            continue
        where = ph.vaddr if memory else ph.offset
        try:
            data = read(where, ph.filesz)
        except (OSError, ValueError, LookupError):
            continue
        try:
            for note in iter_notes(data):
                if note.name == "GNU" and note.type == NT_GNU_BUILD_ID:
                    return data[note.desc_offset : note.desc_offset + note.desc_size].hex()
        except ElfFormatError:
            continue
    return None
