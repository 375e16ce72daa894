"""The names the dynamic linker loaded each library by, from the dead process's link map.

The kernel records a mapped file by its real path (`/usr/lib/x86_64-linux-gnu/libffi.so.8.1.2`);
the process asked for it by its soname (`libffi.so.8`), which is what the dynamic linker keeps
in its `link_map` list and what debuggers (gdb, elfutils, PyStack) show. The list is found
through the executable's `DT_DEBUG` entry, which the dynamic linker points at its `r_debug`
(`r_version`, `r_map`, ...); each `link_map` is (`l_addr`, `l_name`, `l_ld`, `l_next`,
`l_prev`). An image is matched by its dynamic section's address (`l_ld`) lying in it.
"""

from __future__ import annotations

import os

from triage.coredump import elf
from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.errors import AddressError

PT_DYNAMIC = 2
DT_NULL, DT_DEBUG = 0, 21
MAX_LINKS = 4096


def link_map_names(
    memory: CoreMemory, images: list[LoadedImage], executable: str | None
) -> dict[str, str]:
    """Recorded path -> the name the dynamic linker loaded it by (only where they differ);
    empty when the link map cannot be read (a static executable, an unreadable core)."""
    exe = next((i for i in images if i.path == executable), None)
    if exe is None:
        return {}
    try:
        r_debug = _debug_entry(memory, exe)
        if not r_debug:
            return {}
        link = memory.u64(r_debug + 8)  # r_map (after the int r_version and its padding)
        out: dict[str, str] = {}
        seen: set[int] = set()
        while link and link not in seen and len(seen) < MAX_LINKS:
            seen.add(link)
            name_at, dynamic = memory.u64(link + 8), memory.u64(link + 16)
            name = os.fsdecode(memory.cstring(name_at, 4096)) if name_at else ""
            image = next((i for i in images if i.start <= dynamic < i.end), None)
            if image is not None and name and name != image.path:
                out[image.path] = name
            link = memory.u64(link + 24)
        return out
    except (AddressError, ValueError):
        return {}


def _debug_entry(memory: CoreMemory, exe: LoadedImage) -> int:
    """The value of the executable's DT_DEBUG entry as the process left it (0: none)."""

    def read(offset: int, size: int) -> bytes:
        return memory.read(exe.start + offset, size)

    header = elf.read_header(read)
    headers = elf.read_program_headers(read, header)
    loads = [p.vaddr for p in headers if p.type == elf.PT_LOAD]
    dynamic = next((p for p in headers if p.type == PT_DYNAMIC), None)
    if dynamic is None or not loads:
        return 0
    bias = exe.start - (min(loads) & ~0xFFF) if header.type == elf.ET_DYN else 0
    at = bias + dynamic.vaddr
    for i in range(dynamic.memsz // 16):
        tag, value = memory.u64(at + 16 * i), memory.u64(at + 16 * i + 8)
        if tag == DT_NULL:
            break
        if tag == DT_DEBUG:
            return value
    return 0
