"""Open a core file as given: plain ELF, or gzip/zstd/xz/lz4 recognised by content.

A compressed core is streamed into an anonymous temporary file (created, then unlinked at once,
so it disappears on every exit path, even SIGKILL) and served from there through mmap.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from triage.errors import CoreFileError

MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "none"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
CHUNK = 1 << 20

#: A compressed core that decompresses to at most this many bytes is held in anonymous memory
#: (on transparent huge pages where the kernel offers them): 8 ms instead of 11-14 ms for a
#: 14 MB core, which spent a third of its analysis writing a temporary file. Bigger cores
#: continue into the file, so memory stays bounded whatever the core's size.
IN_MEMORY_LIMIT = 64 << 20


@dataclass
class OpenedCore:
    """A core ready to read: its bytes as a read-only mmap, and what it was on disk."""

    path: str
    size: int
    compression: str
    data: mmap.mmap | bytes

    @property
    def uncompressed_size(self) -> int:
        return len(self.data)


def sniff(head: bytes) -> str | None:
    """The compression (or "none" for plain ELF) named by a file's first bytes, else None."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return None


def decompressor(stream: BinaryIO, compression: str) -> BinaryIO:
    """A file-like object giving the decompressed bytes of `stream`."""
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression == "xz":
        import lzma

        return lzma.LZMAFile(stream, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=CHUNK, read_across_frames=True
        )
        return reader  # type: ignore[return-value]
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameFile(stream, "rb")  # type: ignore[return-value]
    raise ValueError(f"unknown compression {compression!r}")


ZSTD_MAGIC = 0xFD2FB528


def zstd_problem(stream: BinaryIO) -> str | None:
    """Why a zstd stream is incomplete (cut inside a frame), or None when every frame ends.

    zstandard's streaming reader stops quietly at a cut, so the frames are walked here by
    their headers (RFC 8878): block sizes are read, payloads skipped, nothing decompressed.
    """
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    frames = 0
    while stream.tell() < size:
        head = stream.read(4)
        if len(head) < 4:
            return "it ends inside a frame header"
        magic = int.from_bytes(head, "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: size, then that many bytes
            raw = stream.read(4)
            if len(raw) < 4 or stream.seek(int.from_bytes(raw, "little"), os.SEEK_CUR) > size:
                return "it ends inside a skippable frame"
            continue
        if magic != ZSTD_MAGIC:
            return f"frame {frames + 1} does not start with the zstd magic number"
        descriptor = stream.read(1)
        if not descriptor:
            return "it ends inside a frame header"
        d = descriptor[0]
        fcs, single, checksum, dict_id = d >> 6, d >> 5 & 1, d >> 2 & 1, d & 3
        header = (0 if single else 1) + (0, 1, 2, 4)[dict_id]
        header += (1 if single else 0, 2, 4, 8)[fcs]
        stream.seek(header, os.SEEK_CUR)
        while True:
            raw = stream.read(3)
            if len(raw) < 3:
                return f"it ends inside frame {frames + 1} (the dump or the copy was cut)"
            block = int.from_bytes(raw, "little")
            kind, length = block >> 1 & 3, block >> 3
            if kind == 3:
                return f"frame {frames + 1} has a block of a reserved type (corrupt)"
            stream.seek(1 if kind == 1 else length, os.SEEK_CUR)
            if block & 1:
                break
        if checksum:
            stream.seek(4, os.SEEK_CUR)
        if stream.tell() > size:
            return f"it ends inside frame {frames + 1} (the dump or the copy was cut)"
        frames += 1
    stream.seek(0)
    return None


def _check_path(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CoreFileError(
            "file_not_found", f"core file {path} does not exist; check the path"
        ) from None
    except PermissionError:
        raise CoreFileError(
            "permission_denied", f"core file {path} is not readable: permission denied"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise CoreFileError(
            "is_a_directory", f"{path} is a directory; give the path of one core file"
        )
    if st.st_size == 0:
        raise CoreFileError(
            "empty_file", f"core file {path} is empty (0 bytes); the dump failed or was cut"
        )
    return st


def identify(path: str) -> tuple[int, str | None]:
    """Size and compression of a file as given, for the report, even when it cannot be read
    further; (0, None) when it cannot be opened at all."""
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size, sniff(f.read(8))
    except OSError:
        return 0, None


@contextlib.contextmanager
def open_core(path: str) -> Iterator[OpenedCore]:
    """Open `path` as a core, decompressing if needed; everything is released on exit."""
    st = _check_path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise CoreFileError("unreadable", f"cannot open core file {path}: {exc.strerror}") from None
    try:
        compression = sniff(f.read(8))
        f.seek(0)
        if compression is None:
            raise CoreFileError(
                "not_elf",
                f"{path} is not an ELF core file nor a gzip/zstd/xz/lz4 archive of one",
            )
        if compression == "none":
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            data = _inflate(f, compression, path)
        try:
            yield OpenedCore(path, st.st_size, compression, data)
        finally:
            data.close()
    finally:
        f.close()


def _inflate(f: BinaryIO, compression: str, path: str) -> mmap.mmap:
    """Stream-decompress into memory (see IN_MEMORY_LIMIT), or into an already-unlinked
    temporary file for bigger cores, and map it."""
    if compression == "zstd":
        problem = zstd_problem(f)
        if problem is not None:
            raise CoreFileError(
                "decompression_failed",
                f"{path} is a damaged or truncated zstd archive ({problem}); "
                f"recompress it from the original core",
            )
    try:
        with decompressor(f, compression) as src:
            data = decompress_to_map(src)
    except Exception as exc:  # each codec has its own error types (zstd: ZstdError)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise CoreFileError(
                "decompression_failed", f"cannot decompress {path}: {exc.strerror}"
            ) from None
        raise CoreFileError(
            "decompression_failed",
            f"{path} is a damaged or truncated {compression} archive ({exc}); "
            f"recompress it from the original core",
        ) from None
    if data is None:
        raise CoreFileError("empty_file", f"{path} decompresses to nothing ({compression})")
    return data


def decompress_to_map(src: BinaryIO, limit: int = IN_MEMORY_LIMIT) -> mmap.mmap | None:
    """All of `src` in anonymous memory if it fits in `limit` bytes, else in a temporary
    file (what was read so far first), as a mapping; None if it holds nothing."""
    region = _anonymous_region(limit)
    size = 0
    if region is not None:
        view = memoryview(region)
        try:
            while size < len(region):
                n = src.readinto(view[size : size + CHUNK])
                if not n:
                    break
                size += n
        finally:
            view.release()
        if size < len(region):
            if not size:
                region.close()
                return None
            region.resize(size)
            return region
    return _spill(src, region)


def _anonymous_region(limit: int) -> mmap.mmap | None:
    """A private anonymous mapping of `limit` bytes (of a quarter of the process's data limit
    at most), asking for transparent huge pages; None if none can be had."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft // 4)
    if limit < CHUNK:
        return None
    try:
        region = mmap.mmap(-1, limit, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        return None
    with contextlib.suppress(OSError, AttributeError):  # no THP: still right, only slower
        region.madvise(mmap.MADV_HUGEPAGE)
    return region


def _spill(src: BinaryIO, head: mmap.mmap | None) -> mmap.mmap | None:
    """`head` (a full region, if any) and then the rest of `src`, in an already-unlinked
    temporary file, mapped."""
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="triage-core-")
    os.unlink(tmp)
    with os.fdopen(fd, "w+b") as out:
        if head is not None:
            out.write(head)
            head.close()
        shutil.copyfileobj(src, out, CHUNK)
        out.flush()
        if out.tell() == 0:
            return None
        return mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ)
