"""ELF images in a dead process: which files were loaded where, and their GNU build-ids."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from triage.coredump import elf
from triage.coredump.memory import CoreMemory
from triage.coredump.notes import FileMapping
from triage.errors import AddressError

PAGE = 4096


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """A file mapped into the process: its recorded path and lowest mapped address."""

    path: str
    start: int
    end: int


def is_real_file(path: str) -> bool:
    """Mappings of real files, not /dev/zero, memfds, SysV shm or deleted files."""
    return (
        path.startswith("/")
        and not path.startswith(("/dev/", "/memfd:", "/SYSV", "/proc/"))
        and not path.endswith(" (deleted)")
    )


def loaded_images(mappings: list[FileMapping]) -> list[LoadedImage]:
    """One entry per mapped file, in address order of its first mapping."""
    spans: dict[str, list[int]] = {}
    for m in mappings:
        if not is_real_file(m.path):
            continue
        span = spans.setdefault(m.path, [m.start, m.end])
        span[0] = min(span[0], m.start)
        span[1] = max(span[1], m.end)
    return sorted((LoadedImage(p, s, e) for p, (s, e) in spans.items()), key=lambda i: i.start)


def build_id_in_core(memory: CoreMemory, base: int) -> str | None:
    """The build-id of the ELF image whose header is mapped at `base`, read from core bytes only."""

    def read_header_bytes(offset: int, size: int) -> bytes:
        return memory.read(base + offset, size, core_only=True)

    try:
        header = elf.read_header(read_header_bytes)
        phdrs = elf.read_program_headers(read_header_bytes, header)
    except (AddressError, elf.ElfFormatError):
        return None
    loads = [p for p in phdrs if p.type == elf.PT_LOAD]
    bias = base - (loads[0].vaddr & ~(PAGE - 1)) if loads and header.type == elf.ET_DYN else 0
    if header.type == elf.ET_EXEC:
        bias = 0

    def read_memory(vaddr: int, size: int) -> bytes:
        return memory.read(bias + vaddr, size, core_only=True)

    return elf.build_id_from_notes(read_memory, phdrs, memory=True)


def build_id_of_file(path: str) -> str | None:
    """The build-id of an ELF file on disk (cached by path, size and mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _build_id_of_file(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _build_id_of_file(path: str, _size: int, _mtime: int) -> str | None:
    try:
        with open(path, "rb") as f:

            def read(offset: int, size: int) -> bytes:
                f.seek(offset)
                return f.read(size)

            header = elf.read_header(read)
            return elf.build_id_from_notes(
                read, elf.read_program_headers(read, header), memory=False
            )
    except (OSError, elf.ElfFormatError):
        return None


def is_elf_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == elf.ELF_MAGIC
    except OSError:
        return False
