"""Open a core file as given: plain ELF, or gzip/zstd/xz/lz4 recognised by content.

A compressed core is streamed into anonymous memory, or an anonymous temporary file (created,
then unlinked at once, so it disappears on every exit path, even SIGKILL), and served from there
through mmap. Decompression is bounded: by the maximum core size asked for, and by the free
space of the temporary directory (a clear error before the disk fills), checked against what
the archive's headers declare before anything is decompressed, then while copying.

Only regular files are opened: a FIFO (which would block until a writer comes) or a device is
refused with `not_a_regular_file` before anything is opened.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import resource
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Protocol

from triage.coredump.archives import declared_size, zstd_frames
from triage.coredump.filebytes import FileBytes, map_file
from triage.errors import CoreFileError
from triage.sizes import format_size

if TYPE_CHECKING:
    from triage.report import Compression

MAGICS: tuple[tuple[bytes, Compression], ...] = (
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
    """A core ready to read: its bytes (a read-only mmap, or read on demand when the address
    space has no room for one), and what it was on disk."""

    path: str
    size: int
    compression: Compression
    data: mmap.mmap | FileBytes | bytes

    @property
    def uncompressed_size(self) -> int:
        return len(self.data)


def sniff(head: bytes) -> Compression | None:
    """The compression (or "none" for plain ELF) named by a file's first bytes, else None."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return None


class Readable(Protocol):
    """A binary stream read by `read` or `readinto` (a file, BytesIO, a decompressor)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...


class Decompressed(Readable, Protocol):
    """What `decompressor` gives: gzip.GzipFile, lzma.LZMAFile, zstandard's stream reader or
    lz4.frame.LZ4FrameFile, each its own context manager (which closes it)."""

    def close(self) -> None: ...

    def __enter__(self) -> Decompressed: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> object: ...


def decompressor(stream: BinaryIO, compression: str) -> Decompressed:
    """A file-like object giving the decompressed bytes of `stream`."""
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "xz":
        import lzma

        return lzma.LZMAFile(stream, "rb")
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=CHUNK, read_across_frames=True
        )
    if compression == "lz4":
        import lz4.frame

        reader: Decompressed = lz4.frame.LZ4FrameFile(stream, "rb")  # untyped: Any
        return reader
    raise ValueError(f"unknown compression {compression!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """How big a compressed core may decompress: at most `max_size` bytes (None: no limit),
    and what spills to disk at most `space` bytes of the temporary directory `tmpdir`, which
    had `free` bytes free."""

    max_size: int | None
    tmpdir: str
    free: int
    space: int

    @classmethod
    def here(cls, max_size: int | None = None) -> Limits:
        """The limits of this machine: the temporary directory's free space, less a reserve
        (a twentieth of its file system, at most 1 GiB) so that the disk never fills."""
        import shutil
        import tempfile

        tmpdir = tempfile.gettempdir()
        usage = shutil.disk_usage(tmpdir)
        reserve = min(usage.total // 20, 1 << 30)
        return cls(max_size, tmpdir, usage.free, max(0, usage.free - reserve))


class TooBig(Exception):
    """Decompression was stopped: the core has more than `size` bytes, the limit `limit`
    ("max_size" or "space"); with `declared`, it has at least `size`, as its headers say."""

    def __init__(self, size: int, limit: str, declared: bool = False) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit
        self.declared = declared


def _too_big(path: str, exc: TooBig, limits: Limits, compression: str) -> CoreFileError:
    """The one-line error for a core that passes a limit."""
    amount = f"{'at least' if exc.declared else 'more than'} {format_size(exc.size)}"
    how = "its headers say" if exc.declared else "decompression was stopped there"
    if exc.limit == "max_size":
        assert limits.max_size is not None
        return CoreFileError(
            "core_too_large",
            f"{path} ({compression}) decompresses to {amount} ({how}), more than the maximum "
            f"core size of {format_size(limits.max_size)}; raise it (--max-core-size) to "
            f"analyse this core",
        )
    return CoreFileError(
        "insufficient_space",
        f"decompressing {path} ({compression}) needs {amount} of temporary space ({how}) but "
        f"{limits.tmpdir} has {format_size(limits.free)} free; set TMPDIR to a directory "
        f"with more room",
    )


def _check_path(path: str) -> os.stat_result:
    """The file's status, or the CoreFileError that says why it cannot be a core: missing,
    unreadable, a symbolic link loop, a directory, a FIFO or a device, empty. Nothing is
    opened (opening a FIFO would wait for a writer)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _open_error(path, exc) from None
    _check_type(path, st)
    return st


def _open_error(path: str, exc: OSError) -> CoreFileError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CoreFileError("file_not_found", f"core file {path} does not exist; check the path")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return CoreFileError(
            "permission_denied", f"core file {path} is not readable: permission denied"
        )
    if exc.errno == errno.ELOOP:
        return CoreFileError(
            "symlink_loop",
            f"core file {path} is a symbolic link that leads back to itself (too many levels "
            f"of symbolic links); give the path of the core file itself",
        )
    return CoreFileError("unreadable", f"cannot open core file {path}: {exc.strerror}")


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_type(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise CoreFileError(
            "is_a_directory", f"{path} is a directory; give the path of one core file"
        )
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "special")
        raise CoreFileError(
            "not_a_regular_file",
            f"{path} is {what}, not a regular file; save the core to a file and give its path",
        )
    if st.st_size == 0:
        raise CoreFileError(
            "empty_file", f"core file {path} is empty (0 bytes); the dump failed or was cut"
        )


def identify(path: str) -> tuple[int, Compression | None]:
    """Size and compression of a file as given, for the report, even when it cannot be read
    further; (0, None) when it is no regular file or cannot be opened at all."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return 0, None
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size, sniff(f.read(8))
    except OSError:
        return 0, None


@contextlib.contextmanager
def open_core(path: str, *, max_size: int | None = None) -> Iterator[OpenedCore]:
    """Open `path` as a core, decompressing if needed; everything is released on exit.
    `max_size`: the most bytes the (uncompressed) core may have, else core_too_large."""
    _check_path(path)
    try:
        # Non-blocking: a FIFO put in the file's place since the check must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_error(path, exc) from None
    f = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        _check_type(path, st)
        compression = sniff(f.read(8))
        f.seek(0)
        if compression is None:
            raise CoreFileError(
                "not_elf",
                f"{path} is not an ELF core file nor a gzip/zstd/xz/lz4 archive of one",
            )
        if compression == "none":
            if max_size is not None and st.st_size > max_size:
                raise CoreFileError(
                    "core_too_large",
                    f"core file {path} has {format_size(st.st_size)}, more than the maximum "
                    f"core size of {format_size(max_size)}; raise it (--max-core-size) to "
                    f"analyse this core",
                )
            data: mmap.mmap | FileBytes = map_file(fd)
        else:
            data = _inflate(f, compression, path, Limits.here(max_size))
        try:
            yield OpenedCore(path, st.st_size, compression, data)
        finally:
            data.close()
    finally:
        f.close()


def _inflate(f: BinaryIO, compression: str, path: str, limits: Limits) -> mmap.mmap | FileBytes:
    """Stream-decompress into memory (see IN_MEMORY_LIMIT), or into an already-unlinked
    temporary file for bigger cores, and map it; within `limits`, checked first against
    the size the headers declare, then while copying."""
    if compression == "zstd":
        frames = zstd_frames(f)
        if frames.problem is not None:
            raise CoreFileError(
                "decompression_failed",
                f"{path} is a damaged or truncated zstd archive ({frames.problem}); "
                f"recompress it from the original core",
            )
        declared = frames.declared or None
    else:
        declared = declared_size(f, compression)
    try:
        if declared is not None:
            _check_declared(declared, limits)
        with decompressor(f, compression) as src:
            data = decompress_to_map(src, max_size=limits.max_size, space=limits.space)
    except TooBig as exc:
        raise _too_big(path, exc, limits, compression) from None
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


def _check_declared(declared: int, limits: Limits) -> None:
    """TooBig before anything is decompressed, when the size the archive's headers declare
    passes the maximum, or needs more temporary space than there is."""
    if limits.max_size is not None and declared > limits.max_size:
        raise TooBig(declared, "max_size", declared=True)
    if declared > _region_size() and declared > limits.space:
        raise TooBig(declared, "space", declared=True)


def decompress_to_map(
    src: Readable,
    limit: int = IN_MEMORY_LIMIT,
    *,
    max_size: int | None = None,
    space: int | None = None,
) -> mmap.mmap | FileBytes | None:
    """All of `src` in anonymous memory if it fits in `limit` bytes, else in a temporary
    file (what was read so far first), as a mapping; None if it holds nothing. TooBig as
    soon as more than `max_size` bytes come, or more than `space` would go to the file."""
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
                if max_size is not None and size > max_size:
                    raise TooBig(max_size, "max_size")
        except BaseException:
            view.release()
            region.close()
            raise
        view.release()
        if size < len(region):
            if not size:
                region.close()
                return None
            region.resize(size)
            return region
    return _spill(src, region, max_size, space)


def _region_size(limit: int = IN_MEMORY_LIMIT) -> int:
    """How many bytes `_anonymous_region(limit)` holds at most (0: none)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft // 4)
    return limit if limit >= CHUNK else 0


def _anonymous_region(limit: int) -> mmap.mmap | None:
    """A private anonymous mapping of `limit` bytes (of a quarter of the process's data limit
    at most), asking for transparent huge pages; None if none can be had."""
    limit = _region_size(limit)
    if not limit:
        return None
    try:
        region = mmap.mmap(-1, limit, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        return None
    with contextlib.suppress(OSError, AttributeError):  # no THP: still right, only slower
        region.madvise(mmap.MADV_HUGEPAGE)
    return region


def _spill(
    src: Readable, head: mmap.mmap | None, max_size: int | None, space: int | None
) -> mmap.mmap | FileBytes | None:
    """`head` (a full region, if any) and then the rest of `src`, in an already-unlinked
    temporary file, mapped; TooBig past `max_size` bytes or `space` bytes of the file."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="triage-core-")
    os.unlink(tmp)
    with os.fdopen(fd, "w+b") as out:
        size = 0
        try:
            if head is not None:
                size = len(head)
                if space is not None and size > space:
                    raise TooBig(space, "space")
                out.write(head)
                head.close()
            buffer = bytearray(CHUNK)
            while True:
                n = src.readinto(buffer)
                if not n:
                    break
                size += n
                if max_size is not None and size > max_size:
                    raise TooBig(max_size, "max_size")
                if space is not None and size > space:
                    raise TooBig(space, "space")
                out.write(memoryview(buffer)[:n])
            out.flush()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TooBig(size, "space") from None  # the disk filled before the estimate
            raise
        finally:
            if head is not None and not head.closed:
                head.close()
        if size == 0:
            return None
        return map_file(out.fileno())
