"""The dead process's memory: served from the core, else from the mapped file on disk."""

from __future__ import annotations

import bisect
import mmap
import struct
from collections.abc import Mapping

from triage.coredump.corefile import CoreFile, Segment
from triage.coredump.filebytes import FileBytes, map_file
from triage.coredump.notes import FileMapping
from triage.errors import AddressError

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class CoreMemory:
    """Reads the process's address space.

    Bytes the kernel dumped come from the core. Bytes it left out (read-only file-backed text and
    data) come from the file that was mapped there, found through `files`: mapping path ->
    local path of that file (the library locator's answer). Anything else raises AddressError.
    """

    def __init__(self, core: CoreFile, files: Mapping[str, str] | None = None) -> None:
        self._data = core.data
        self._size = len(core.data)
        self._segments: list[Segment] = core.segments
        self._starts = [s.vaddr for s in self._segments]
        self._mappings: list[FileMapping] = sorted(core.mappings, key=lambda m: m.start)
        self._map_starts = [m.start for m in self._mappings]
        self._files = dict(files or {})
        self._opened: dict[str, mmap.mmap | FileBytes | None] = {}

    def add_files(self, files: Mapping[str, str]) -> None:
        """Serve undumped bytes of these mappings (recorded path -> local path) from disk."""
        self._files.update(files)

    @property
    def segments(self) -> list[Segment]:
        return self._segments

    def close(self) -> None:
        for m in self._opened.values():
            if m is not None:
                m.close()
        self._opened.clear()

    # -- raw access ------------------------------------------------------------------------

    def segment_at(self, address: int) -> Segment | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0:
            seg = self._segments[i]
            if address < seg.end:
                return seg
        return None

    def mapping_at(self, address: int) -> FileMapping | None:
        i = bisect.bisect_right(self._map_starts, address) - 1
        if i >= 0:
            m = self._mappings[i]
            if address < m.end:
                return m
        return None

    def read(self, address: int, size: int, *, core_only: bool = False) -> bytes:
        """`size` bytes at `address`; core_only refuses bytes that would come from disk."""
        if size <= 0:
            return b""
        seg = self.segment_at(address)
        if seg is not None and address + size <= seg.vaddr + seg.filesz:
            off = seg.offset + address - seg.vaddr
            if off + size <= self._size:  # else the file was cut there: said below
                return self._data[off : off + size]
        parts = []
        addr, left = address, size
        while left:
            chunk = self._read_piece(addr, left, core_only)
            parts.append(chunk)
            addr += len(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _read_piece(self, address: int, size: int, core_only: bool) -> bytes:
        seg = self.segment_at(address)
        if seg is not None and address < seg.vaddr + seg.filesz:
            n = min(size, seg.vaddr + seg.filesz - address)
            off = seg.offset + address - seg.vaddr
            if off + n <= self._size:
                return self._data[off : off + n]
            if off < self._size:  # what the file still has, then the error for the rest
                return self._data[off : self._size]
            raise AddressError(address, size, "the core file is truncated before it")
        if core_only:
            raise AddressError(address, size, "not dumped in the core")
        mapping = self.mapping_at(address)
        if mapping is None:
            raise AddressError(address, size)
        limit = mapping.end if seg is None else min(mapping.end, seg.end)
        n = min(size, limit - address)
        blob = self._file(mapping.path)
        if blob is None:
            raise AddressError(address, size, f"not dumped and {mapping.path} was not found")
        off = mapping.offset + address - mapping.start
        out = blob[off : off + n]
        if len(out) != n:
            raise AddressError(address, size, f"past the end of {mapping.path} on disk")
        return out

    def _file(self, path: str) -> mmap.mmap | FileBytes | None:
        if path not in self._opened:
            local = self._files.get(path)
            blob = None
            if local is not None:
                try:
                    with open(local, "rb") as f:
                        blob = map_file(f.fileno())
                except (OSError, ValueError):
                    blob = None
            self._opened[path] = blob
        return self._opened[path]

    # -- typed helpers ---------------------------------------------------------------------

    def u64(self, address: int) -> int:
        value: int = _U64.unpack(self.read(address, 8))[0]
        return value

    def i64(self, address: int) -> int:
        value: int = _I64.unpack(self.read(address, 8))[0]
        return value

    def u32(self, address: int) -> int:
        value: int = _U32.unpack(self.read(address, 4))[0]
        return value

    def i32(self, address: int) -> int:
        value: int = _I32.unpack(self.read(address, 4))[0]
        return value

    def cstring(self, address: int, limit: int = 4096) -> bytes:
        """A NUL-terminated byte string, read in page-bounded chunks, at most `limit` bytes."""
        out = bytearray()
        while len(out) < limit:
            step = min(limit - len(out), 4096 - (address + len(out)) % 4096)
            chunk = self.read(address + len(out), step)
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                return bytes(out)
            out += chunk
        return bytes(out)

    def readable(self, address: int, size: int = 1) -> bool:
        try:
            self.read(address, size)
        except AddressError:
            return False
        return True
