"""Is this a core? Told from an object's first bytes alone, plain or compressed.

A sweep reads the head of every object it lists (one ranged read) and asks `sniff_core`
before fetching it: compressions are those `triage.coredump.source` registers (MAGICS and
its decompressors), ELF headers are judged by `triage.coredump.elf`, so what a sweep calls a
core is what `triage core` reads.
"""

from __future__ import annotations

import contextlib
import io

from triage.coredump import elf
from triage.coredump.source import decompressor, sniff
from triage.errors import error_detail


def sniff_core(head: bytes) -> tuple[str, str | None]:
    """(compression, problem) from the first bytes of an object: problem is None when they
    are the start of a 64-bit ELF core, plain or gzip/zstd/xz/lz4-compressed; else one line
    saying what the object is instead. A cut-off compressed head is fine as long as it holds
    the archive's first block (zstd: at most 128 KiB; lz4 frames: 64 KiB by default)."""
    if not head:
        return "none", "an empty file"
    compression = sniff(head)
    if compression is None:
        return "none", "not an ELF file"
    if compression == "none":
        return "none", elf.what_is_not_a_core(head)
    try:
        elf_head, ended = _decompress_head(head, compression)
    except Exception as exc:
        return compression, (
            f"{_an(compression)} archive that cannot be decompressed ({error_detail(exc)})"
        )
    if not elf_head:
        if ended:
            return compression, f"{_an(compression)} archive of nothing"
        return compression, (
            f"{_an(compression)} archive whose first {len(head)} bytes are too few to decompress "
            "anything; read more of it"
        )
    if not elf_head.startswith(b"\x7fELF"):
        return compression, f"{_an(compression)} archive of something that is not a core"
    problem = elf.what_is_not_a_core(elf_head)
    if problem is None:
        return compression, None
    return compression, f"{_an(compression)} archive of {problem}"


def _an(compression: str) -> str:
    return f"an {compression}" if compression in ("xz", "lz4") else f"a {compression}"


def _decompress_head(head: bytes, compression: str, want: int = 4096) -> tuple[bytes, bool]:
    """Up to `want` decompressed bytes from the start of a (possibly cut-off) archive, and
    whether the archive ended there. Output is bounded: a 64 KiB head of a highly
    compressible core must not inflate in memory."""
    # The same bounded readers the engine decompresses with (zstd's stops quietly where
    # the input stops, which is what a head needs).
    reader = decompressor(io.BytesIO(head), compression)
    out = bytearray()
    ended = False
    try:
        while len(out) < want:
            try:
                chunk = reader.read(want - len(out))
            except EOFError:
                if out:
                    break  # the head ends inside the archive: expected
                return b"", False
            if not chunk:
                ended = True
                break
            out += chunk
    finally:
        with contextlib.suppress(Exception):
            reader.close()
    if compression == "zstd" and not out:
        # The stream reader does not tell a complete empty frame from a cut-off first block;
        # with no complete block in `head`, decompressing it whole is cheap.
        import zstandard

        dobj = zstandard.ZstdDecompressor().decompressobj()
        try:
            dobj.decompress(head)
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from None
        ended = dobj.eof
    return bytes(out), ended
