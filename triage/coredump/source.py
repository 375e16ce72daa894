"""Open a core file as given: plain ELF, or gzip/zstd/xz/lz4 recognised by content.

A compressed core is streamed into an anonymous temporary file (created, then unlinked at once,
so it disappears on every exit path, even SIGKILL) and served from there through mmap.
"""

from __future__ import annotations

import contextlib
import mmap
import os
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
        return _ZstdStream(stream)  # type: ignore[return-value]
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameFile(stream, "rb")  # type: ignore[return-value]
    raise ValueError(f"unknown compression {compression!r}")


class _ZstdStream:
    """Decompresses concatenated zstd frames from a stream; a stream that ends inside a frame
    raises EOFError (zstandard's own stream reader just stops there)."""

    def __init__(self, stream: BinaryIO) -> None:
        import zstandard

        self._zstd = zstandard
        self._src = stream
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._started = False

    def __enter__(self) -> _ZstdStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self._src.read(CHUNK)
            if not chunk:
                if self._started and not self._obj.eof:
                    raise EOFError("the zstd stream ends in the middle of a frame")
                return b""
            out = bytearray()
            while chunk:
                self._started = True
                try:
                    out += self._obj.decompress(chunk)
                except self._zstd.ZstdError as exc:
                    raise ValueError(str(exc)) from None
                chunk = b""
                if self._obj.eof:
                    chunk = self._obj.unused_data
                    self._obj = self._zstd.ZstdDecompressor().decompressobj()
                    self._started = False
            if out:
                return bytes(out)


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
    """Stream-decompress into an already-unlinked temporary file and map it."""
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="triage-core-")
    os.unlink(tmp)
    with os.fdopen(fd, "w+b") as out:
        try:
            with decompressor(f, compression) as src:
                shutil.copyfileobj(src, out, CHUNK)
        except (OSError, EOFError, ValueError, RuntimeError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise CoreFileError(
                    "decompression_failed", f"cannot decompress {path}: {exc.strerror}"
                ) from None
            raise CoreFileError(
                "decompression_failed",
                f"{path} is a damaged or truncated {compression} archive ({exc}); "
                f"recompress it from the original core",
            ) from None
        out.flush()
        if out.tell() == 0:
            raise CoreFileError("empty_file", f"{path} decompresses to nothing ({compression})")
        return mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ)
