"""A file's bytes, sliced like `bytes`: mapped whole when the address space allows, else read
on demand.

A core can be bigger than the address space a process may use (`ulimit -v`, a container's
limit, a sweep worker's cap): mapping it whole then fails with ENOMEM. `map_file` falls back
on `FileBytes`, which reads what is asked with pread(2) and keeps the last blocks it read, so
the analysis works whatever the file's size, only slower.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections import OrderedDict

#: Reads are done in blocks of this size (small reads of neighbouring fields share one), and
#: this many blocks are kept (16 MiB).
BLOCK = 64 << 10
CACHED_BLOCKS = 256


class FileBytes:
    """The bytes of an open file, read with pread(2): `len()`, slices (as bytes), `close()`.
    Owns the file descriptor it is given."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: slice) -> bytes:
        if not isinstance(key, slice):
            raise TypeError("FileBytes supports slices only")
        start, stop, step = key.indices(self._size)
        if step != 1:
            raise ValueError("FileBytes supports contiguous slices only")
        if stop <= start:
            return b""
        if stop - start > BLOCK:  # a big read: straight from the file, not through the cache
            return self._pread(start, stop - start)
        first, last = start // BLOCK, (stop - 1) // BLOCK
        joined = b"".join(self._block(n) for n in range(first, last + 1))
        offset = start - first * BLOCK
        return joined[offset : offset + stop - start]

    def _block(self, number: int) -> bytes:
        block = self._blocks.get(number)
        if block is not None:
            self._blocks.move_to_end(number)
            return block
        block = self._blocks[number] = self._pread(number * BLOCK, BLOCK)
        if len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return block

    def _pread(self, offset: int, size: int) -> bytes:
        parts = []
        while size > 0:
            chunk = os.pread(self._fd, min(size, 1 << 30), offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._blocks.clear()

    def __enter__(self) -> FileBytes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def map_file(fd: int) -> mmap.mmap | FileBytes:
    """The whole file open at `fd`, read-only: a mapping, or `FileBytes` (on its own copy of
    the descriptor) when the address space has no room for one. `fd` stays the caller's."""
    size = os.fstat(fd).st_size
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, OverflowError, MemoryError) as exc:
        if not size or (isinstance(exc, OSError) and exc.errno not in (None, errno.ENOMEM)):
            raise
    return FileBytes(os.dup(fd), size)
