"""Decoders for the notes a Linux x86-64 core carries (layouts in DOMAIN.md section 1)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494C45

AT_PHDR, AT_ENTRY, AT_BASE, AT_EXECFN, AT_SYSINFO_EHDR = 3, 9, 7, 31, 33

REGISTER_NAMES = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx"),
    *("rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base"),
    *("ds", "es", "fs", "gs"),
)

_PRSTATUS_HEAD = struct.Struct("<iiiH")
_PRSTATUS_IDS = struct.Struct("<iiii")
_REGS = struct.Struct("<27Q")
_PRPSINFO = struct.Struct("<bcbbxxxxQIIiiii16s80s")
_SIGINFO = struct.Struct("<iii")

PRSTATUS_SIZE = 336
PRPSINFO_SIZE = 136


class NoteFormatError(ValueError):
    """A note's descriptor is too short or inconsistent."""


@dataclass(frozen=True, slots=True)
class ThreadStatus:
    """NT_PRSTATUS: one thread's id, signal and general registers."""

    tid: int
    signo: int
    code: int
    errno: int
    cursig: int
    ppid: int
    pgrp: int
    sid: int
    registers: dict[str, int]


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """NT_PRPSINFO: the process as ps(1) would show it."""

    state: int
    sname: str
    zombie: bool
    nice: int
    flags: int
    uid: int
    gid: int
    pid: int
    ppid: int
    pgrp: int
    sid: int
    fname: str
    psargs: str


@dataclass(frozen=True, slots=True)
class SigInfo:
    """NT_SIGINFO: the signal that made the core, with sender or fault address when known."""

    signo: int
    errno: int
    code: int
    raw: bytes = field(repr=False)

    @property
    def fault_address(self) -> int:
        address: int = struct.unpack_from("<Q", self.raw, 16)[0]
        return address

    @property
    def sender(self) -> tuple[int, int]:
        pid, uid = struct.unpack_from("<iI", self.raw, 16)
        return pid, uid


@dataclass(frozen=True, slots=True)
class FileMapping:
    """One file-backed mapping from NT_FILE: [start, end) maps `path` from byte `offset`."""

    start: int
    end: int
    offset: int
    path: str


def _need(desc: bytes, size: int, what: str) -> None:
    if len(desc) < size:
        raise NoteFormatError(f"{what} note is {len(desc)} bytes, expected at least {size}")


def parse_prstatus(desc: bytes) -> ThreadStatus:
    _need(desc, PRSTATUS_SIZE, "NT_PRSTATUS")
    signo, code, errno, cursig = _PRSTATUS_HEAD.unpack_from(desc, 0)
    tid, ppid, pgrp, sid = _PRSTATUS_IDS.unpack_from(desc, 32)
    regs = dict(zip(REGISTER_NAMES, _REGS.unpack_from(desc, 112), strict=True))
    return ThreadStatus(tid, signo, code, errno, cursig, ppid, pgrp, sid, regs)


def parse_prpsinfo(desc: bytes) -> ProcessStatus:
    _need(desc, PRPSINFO_SIZE, "NT_PRPSINFO")
    (state, sname, zomb, nice, flag, uid, gid, pid, ppid, pgrp, sid, fname, psargs) = (
        _PRPSINFO.unpack_from(desc, 0)
    )
    return ProcessStatus(
        state=state,
        sname=sname.decode("latin-1").strip("\0"),
        zombie=bool(zomb),
        nice=nice,
        flags=flag,
        uid=uid,
        gid=gid,
        pid=pid,
        ppid=ppid,
        pgrp=pgrp,
        sid=sid,
        fname=_cstr(fname),
        psargs=_cstr(psargs).rstrip(" "),
    )


def parse_siginfo(desc: bytes) -> SigInfo:
    _need(desc, 24, "NT_SIGINFO")
    signo, errno, code = _SIGINFO.unpack_from(desc, 0)
    return SigInfo(signo, errno, code, bytes(desc[:128]))


def parse_auxv(desc: bytes) -> dict[int, int]:
    """NT_AUXV as {type: value}, up to AT_NULL."""
    out: dict[int, int] = {}
    for i in range(0, len(desc) - 15, 16):
        key, value = struct.unpack_from("<QQ", desc, i)
        if key == 0:
            break
        out.setdefault(key, value)
    return out


def parse_file_note(desc: bytes) -> list[FileMapping]:
    """NT_FILE: count, page size, count x (start, end, page offset), then count paths."""
    _need(desc, 16, "NT_FILE")
    count, page_size = struct.unpack_from("<QQ", desc, 0)
    table_end = 16 + 24 * count
    if count > len(desc) // 24 or table_end > len(desc):
        raise NoteFormatError(f"NT_FILE claims {count} mappings but holds {len(desc)} bytes")
    names = bytes(desc[table_end:]).split(b"\0")
    if len(names) < count:
        raise NoteFormatError(f"NT_FILE lists {count} mappings but only {len(names)} paths")
    out = []
    for i in range(count):
        start, end, pgoff = struct.unpack_from("<QQQ", desc, 16 + 24 * i)
        out.append(FileMapping(start, end, pgoff * page_size, os.fsdecode(names[i])))
    return out


def _cstr(raw: bytes) -> str:
    """A NUL-terminated field, its bytes kept (`surrogateescape`; the report escapes what is
    not UTF-8, `triage.text`)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
