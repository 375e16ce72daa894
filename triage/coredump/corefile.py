"""An ELF core file: its segments and the notes about the process, threads and mappings."""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

from triage.coredump import elf, notes
from triage.coredump.filebytes import FileBytes
from triage.coredump.source import OpenedCore
from triage.errors import CoreFileError

MAX_NOTES_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class Segment:
    """A PT_LOAD segment: memory [vaddr, vaddr+memsz), of which `filesz` bytes were dumped."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    @property
    def executable(self) -> bool:
        return bool(self.flags & elf.PF_X)


@dataclass
class CoreFile:
    """The parsed structure of a core; memory access lives in `triage.coredump.memory`."""

    opened: OpenedCore
    segments: list[Segment]
    threads: list[notes.ThreadStatus] = field(default_factory=list)
    process: notes.ProcessStatus | None = None
    siginfo: notes.SigInfo | None = None
    auxv: dict[int, int] = field(default_factory=dict)
    mappings: list[notes.FileMapping] = field(default_factory=list)

    @property
    def data(self) -> mmap.mmap | FileBytes | bytes:
        return self.opened.data

    @property
    def path(self) -> str:
        return self.opened.path

    def truncation(self) -> str | None:
        """Describe how the file is cut short, or None when every dumped byte is present."""
        size = len(self.data)
        short = [s for s in self.segments if s.filesz and s.offset + s.filesz > size]
        if not short:
            return None
        missing = sum(s.offset + s.filesz - max(size, s.offset) for s in short)
        return (
            f"core file {self.path} is truncated: {len(short)} of {len(self.segments)} memory "
            f"segments end past the end of the file ({missing} bytes missing); "
            f"the dump was cut short (disk full, or a core size limit: ulimit -c, "
            f"systemd-coredump's ProcessSizeMax); what it still holds is read"
        )


def parse_core(opened: OpenedCore) -> CoreFile:
    """Parse the header, segments and notes of an opened core; bad input raises CoreFileError."""
    data = opened.data
    path = opened.path
    size = len(data)

    def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    try:
        header = elf.read_header(read)
    except elf.ElfFormatError as exc:
        raise CoreFileError("not_elf", f"{path} is not an ELF core file: {exc}") from None
    if header.type != elf.ET_CORE:
        kind = {elf.ET_EXEC: "an executable", elf.ET_DYN: "a shared library or PIE executable"}
        raise CoreFileError(
            "not_core",
            f"{path} is {kind.get(header.type, f'an ELF file of type {header.type}')}, "
            f"not a core dump; give the core file first, then the executable",
        )
    if header.machine != elf.EM_X86_64:
        raise CoreFileError(
            "unsupported_architecture",
            f"{path} is a core of machine type {header.machine}; only x86-64 cores are supported",
        )
    try:
        phdrs = elf.read_program_headers(read, header)
    except elf.ElfFormatError as exc:
        raise CoreFileError("truncated_core", f"core file {path} is damaged: {exc}") from None

    core = CoreFile(
        opened,
        sorted(
            (
                Segment(p.vaddr, p.memsz, p.offset, p.filesz, p.flags)
                for p in phdrs
                if p.type == elf.PT_LOAD and p.memsz
            ),
            key=lambda s: s.vaddr,
        ),
    )
    for ph in phdrs:
        if ph.type != elf.PT_NOTE:
            continue
        if ph.filesz > MAX_NOTES_BYTES:
            raise CoreFileError(
                "corrupt_notes",
                f"core file {path} has a note segment of {ph.filesz} bytes, more than the "
                f"{MAX_NOTES_BYTES >> 20} MiB any real core holds; the file is corrupt",
            )
        if ph.offset + ph.filesz > size:
            # Cut short (the segments it describes also end past the file: gcore writes its
            # notes last), or a note header that lies about its size.
            described_end = max(
                (p.offset + p.filesz for p in phdrs if p.type == elf.PT_LOAD), default=0
            )
            if ph.offset + ph.filesz <= max(described_end, size) or described_end > size:
                raise CoreFileError(
                    "truncated_core",
                    f"core file {path} is truncated: its notes end at byte "
                    f"{ph.offset + ph.filesz} but the file has {size} bytes; the dump was cut "
                    f"short (disk full or size limit?)",
                )
            raise CoreFileError(
                "corrupt_notes",
                f"core file {path} is corrupt: its note segment claims to end at byte "
                f"{ph.offset + ph.filesz}, past the {size} bytes of the file",
            )
        _read_notes(core, bytes(data[ph.offset : ph.offset + ph.filesz]), path)
    if not core.threads and core.process is None:
        raise CoreFileError(
            "corrupt_notes", f"core file {path} holds no process or thread notes; it is corrupt"
        )
    return core


def _read_notes(core: CoreFile, blob: bytes, path: str) -> None:
    try:
        for note in elf.iter_notes(blob):
            desc = blob[note.desc_offset : note.desc_offset + note.desc_size]
            if note.name != "CORE":
                continue
            if note.type == notes.NT_PRSTATUS:
                core.threads.append(notes.parse_prstatus(desc))
            elif note.type == notes.NT_PRPSINFO:
                core.process = notes.parse_prpsinfo(desc)
            elif note.type == notes.NT_SIGINFO and core.siginfo is None:
                core.siginfo = notes.parse_siginfo(desc)
            elif note.type == notes.NT_AUXV:
                core.auxv = notes.parse_auxv(desc)
            elif note.type == notes.NT_FILE:
                core.mappings = notes.parse_file_note(desc)
    except (elf.ElfFormatError, notes.NoteFormatError) as exc:
        raise CoreFileError("corrupt_notes", f"core file {path} has corrupt notes: {exc}") from None
