"""Which executable the dead process ran: found in the core, or given and checked against it."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Literal

from triage.coredump import elf
from triage.coredump.corefile import CoreFile
from triage.coredump.images import build_id_in_core, build_id_of_file, is_elf_file
from triage.coredump.memory import CoreMemory
from triage.coredump.notes import AT_ENTRY, AT_EXECFN, AT_PHDR, AT_SYSINFO_EHDR
from triage.errors import AddressError, ExecutableError


@dataclass(frozen=True, slots=True)
class Executable:
    """The executable: the path shown to the user and the mapping path recorded in the core."""

    path: str
    mapping_path: str | None
    source: Literal["core", "argument"]


def main_mapping_path(core: CoreFile, memory: CoreMemory) -> str | None:
    """The recorded path of the file mapped where the program's entry point (or phdrs) lie."""
    for key in (AT_ENTRY, AT_PHDR):
        addr = core.auxv.get(key)
        if addr:
            m = memory.mapping_at(addr)
            if m is not None:
                return m.path
    return None


def exec_path(core: CoreFile, memory: CoreMemory) -> str | None:
    """The path the process was exec'd with (AT_EXECFN), read from the core's stack."""
    addr = core.auxv.get(AT_EXECFN)
    if not addr:
        return None
    try:
        raw = memory.cstring(addr, 4096)
    except AddressError:
        return None
    return raw.decode("utf-8", "surrogateescape") or None


def executable_maps(core: CoreFile, memory: CoreMemory) -> list[str]:
    """Names of the executable mappings in the core, main program first, as users read them."""
    vdso = core.auxv.get(AT_SYSINFO_EHDR)
    main = main_mapping_path(core, memory)
    names = [main] if main else []
    for seg in core.segments:
        if not seg.executable:
            continue
        m = memory.mapping_at(seg.vaddr)
        if m is not None:
            names.append(m.path)
        elif vdso is not None and seg.vaddr <= vdso < seg.end:
            names.append("[vdso]")
    # gcore leaves unchanged file-backed text out of the core altogether: ask the files.
    for m in core.mappings:
        if any(
            lo < m.offset + (m.end - m.start) and m.offset < hi for lo, hi in _exec_ranges(m.path)
        ):
            names.append(m.path)
    return list(dict.fromkeys(names))


@functools.lru_cache(maxsize=1024)
def _exec_ranges(path: str) -> tuple[tuple[int, int], ...]:
    """File-offset ranges of a file's executable PT_LOAD segments (empty if unreadable)."""
    try:
        with open(path, "rb") as f:

            def read(offset: int, size: int) -> bytes:
                f.seek(offset)
                return f.read(size)

            phdrs = elf.read_program_headers(read, elf.read_header(read))
    except (OSError, elf.ElfFormatError):
        return ()
    return tuple(
        (p.offset, p.offset + p.filesz)
        for p in phdrs
        if p.type == elf.PT_LOAD and p.flags & elf.PF_X
    )


def find_executable(core: CoreFile, memory: CoreMemory, given: str | None) -> Executable:
    """Detect the executable, or check the given one; a wrong one raises ExecutableError."""
    main = main_mapping_path(core, memory)
    if given is not None:
        return _check_given(core, memory, given, main)
    execfn = exec_path(core, memory)
    if execfn and main and is_elf_file(execfn) and _same_file(execfn, main):
        return Executable(execfn, main, "core")
    if main:
        return Executable(main, main, "core")
    if execfn:
        return Executable(execfn, None, "core")
    raise ExecutableError(
        "executable_not_found",
        "the core does not say which executable ran; pass it as the second argument",
    )


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_given(core: CoreFile, memory: CoreMemory, given: str, main: str | None) -> Executable:
    if not os.path.exists(given):
        raise ExecutableError(
            "executable_not_found", f"executable {given} does not exist; check the path"
        )
    if os.path.isdir(given):
        raise ExecutableError(
            "executable_unreadable", f"executable {given} is a directory; give the program's file"
        )
    if not os.access(given, os.R_OK):
        raise ExecutableError(
            "executable_unreadable", f"executable {given} is not readable: permission denied"
        )
    if not is_elf_file(given):
        raise ExecutableError(
            "executable_not_elf",
            f"executable {given} is not an ELF file (a script?); give the interpreter binary, "
            f"such as the Python the script ran with",
        )
    maps = executable_maps(core, memory)
    file_maps = [m for m in maps if m.startswith("/")]
    names = {os.path.basename(given), os.path.basename(os.path.realpath(given))}
    for m in file_maps:
        if os.path.basename(m) in names or _same_file(given, m):
            return Executable(given, m, "argument")
    given_id = build_id_of_file(given)
    if given_id is not None:
        for mapping in core.mappings:
            if (
                mapping.path in file_maps
                and mapping.offset == 0
                and build_id_in_core(memory, mapping.start) == given_id
            ):
                return Executable(given, mapping.path, "argument")
    raise ExecutableError(
        "wrong_executable",
        f"Unable to find maps for the executable {given}. "
        f"These are the available executable memory maps: {', '.join(maps) or 'none'}",
    )
