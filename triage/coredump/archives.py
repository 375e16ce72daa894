"""What a compressed core's headers say before anything is decompressed: whether a zstd
stream is complete, and how big the core is at least.

The sizes are lower bounds taken where the format makes them trustworthy: zstd's frame
content sizes (each frame's header, at the start of the frame), lz4's content size (the
first frame's header) and xz's index (at the end, checked by its CRC32). gzip's ISIZE is not
used: nothing checks it before the end of the data, and the last four bytes of a cut gzip
file are any number. The streaming copy enforces the limits whatever the headers say.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import BinaryIO

ZSTD_MAGIC = 0xFD2FB528
LZ4_MAGIC = 0x184D2204
XZ_FOOTER_MAGIC = b"YZ"


@dataclass(frozen=True, slots=True)
class ZstdStream:
    """What walking a zstd stream's frames found: the first problem (None: every frame
    ends), and the sum of the content sizes the frames declare."""

    problem: str | None
    declared: int


def zstd_frames(stream: BinaryIO) -> ZstdStream:
    """Walk the frames of a zstd stream by their headers (RFC 8878): block sizes are read,
    payloads skipped, nothing decompressed (zstandard's streaming reader stops quietly at a
    cut). The stream is left at its start."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    frames = declared = 0

    def done(problem: str | None) -> ZstdStream:
        stream.seek(0)
        return ZstdStream(problem, declared)

    while stream.tell() < size:
        head = stream.read(4)
        if len(head) < 4:
            return done("it ends inside a frame header")
        magic = int.from_bytes(head, "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: size, then that many bytes
            raw = stream.read(4)
            if len(raw) < 4 or stream.seek(int.from_bytes(raw, "little"), os.SEEK_CUR) > size:
                return done("it ends inside a skippable frame")
            continue
        if magic != ZSTD_MAGIC:
            return done(f"frame {frames + 1} does not start with the zstd magic number")
        descriptor = stream.read(1)
        if not descriptor:
            return done("it ends inside a frame header")
        d = descriptor[0]
        fcs, single, checksum, dict_id = d >> 6, d >> 5 & 1, d >> 2 & 1, d & 3
        stream.seek((0 if single else 1) + (0, 1, 2, 4)[dict_id], os.SEEK_CUR)
        width = (1 if single else 0, 2, 4, 8)[fcs]
        raw = stream.read(width)
        if len(raw) < width:
            return done("it ends inside a frame header")
        if width:
            declared += int.from_bytes(raw, "little") + (256 if width == 2 else 0)
        while True:
            raw = stream.read(3)
            if len(raw) < 3:
                return done(f"it ends inside frame {frames + 1} (the dump or the copy was cut)")
            block = int.from_bytes(raw, "little")
            kind, length = block >> 1 & 3, block >> 3
            if kind == 3:
                return done(f"frame {frames + 1} has a block of a reserved type (corrupt)")
            stream.seek(1 if kind == 1 else length, os.SEEK_CUR)
            if block & 1:
                break
        if checksum:
            stream.seek(4, os.SEEK_CUR)
        if stream.tell() > size:
            return done(f"it ends inside frame {frames + 1} (the dump or the copy was cut)")
        frames += 1
    return done(None)


def lz4_declared(stream: BinaryIO) -> int | None:
    """The content size the first lz4 frame's header declares (a lower bound of the whole
    stream's), if it declares one."""
    stream.seek(0)
    head = stream.read(14)
    stream.seek(0)
    if len(head) < 14 or int.from_bytes(head[:4], "little") != LZ4_MAGIC or not head[4] & 8:
        return None
    return int.from_bytes(head[6:14], "little")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """An xz multibyte integer (7 bits a byte, at most 9 bytes) at `pos`: (value, next pos)."""
    value = 0
    for i in range(9):
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("xz integer longer than 9 bytes")


def xz_declared(stream: BinaryIO) -> int | None:
    """The uncompressed size that the index of the last xz stream records (a lower bound of
    the whole file's), when its footer and index check out; None otherwise (a cut file)."""
    try:
        end = stream.seek(0, os.SEEK_END)
        while end >= 16:  # stream padding: zeros, four at a time, after the footer
            stream.seek(end - 4)
            if stream.read(4) != bytes(4):
                break
            end -= 4
        if end < 24:
            return None
        stream.seek(end - 12)
        footer = stream.read(12)
        if footer[10:] != XZ_FOOTER_MAGIC or zlib.crc32(footer[4:10]) != int.from_bytes(
            footer[:4], "little"
        ):
            return None
        index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
        if index_size > end - 12:
            return None
        stream.seek(end - 12 - index_size)
        index = stream.read(index_size)
        if index[0] != 0 or zlib.crc32(index[:-4]) != int.from_bytes(index[-4:], "little"):
            return None
        count, pos = _varint(index, 1)
        total = 0
        for _ in range(count):
            _unpadded, pos = _varint(index, pos)
            uncompressed, pos = _varint(index, pos)
            total += uncompressed
        return total
    except (IndexError, ValueError, OSError):
        return None
    finally:
        stream.seek(0)


def declared_size(stream: BinaryIO, compression: str) -> int | None:
    """At least how many bytes the archive decompresses to, as its headers say (None: they
    do not say, or not in a way that can be trusted)."""
    if compression == "zstd":
        return zstd_frames(stream).declared or None
    if compression == "lz4":
        return lz4_declared(stream)
    if compression == "xz":
        return xz_declared(stream)
    return None
