"""Call-frame information of one ELF file, looked up by address through `.eh_frame_hdr`.

`.eh_frame_hdr` holds a table of (function start, FDE address) sorted by start: a binary
search finds the FDE covering an address, and pyelftools parses that FDE alone (parsing a
whole `.eh_frame` takes it 1-2 s for libpython or libc; one FDE, well under a millisecond).
Files without a table of the usual encoding (datarel, sdata4) have no rules here.
"""

from __future__ import annotations

import bisect
import io
import struct
from dataclasses import dataclass
from typing import Any

from elftools.dwarf.callframe import FDE, CallFrameInfo
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

DW_EH_PE_datarel_sdata4 = 0x3B
DW_EH_PE_pcrel_sdata4 = 0x1B
DW_EH_PE_udata4 = 0x03


@dataclass(frozen=True, slots=True)
class Row:
    """The unwinding rules in force at one address: the CFA as register + offset (None when
    a DWARF expression computes it) and each saved register's rule (pyelftools RegisterRule)."""

    cfa_register: int | None
    cfa_offset: int
    registers: dict[int, Any]


class CallFrames:
    """The CFI of one ELF file (addresses are the file's own, before relocation)."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            frame = elf.get_section_by_name(".eh_frame")
            header = elf.get_section_by_name(".eh_frame_hdr")
            self._starts: list[int] = []
            self._fdes: list[int] = []
            self._cfi: CallFrameInfo | None = None
            if frame is None or header is None:
                return
            self._frame_address = frame["sh_addr"]
            self._cfi = CallFrameInfo(
                io.BytesIO(frame.data()),
                frame["sh_size"],
                frame["sh_addr"],
                DWARFStructs(little_endian=True, dwarf_format=32, address_size=8),
                for_eh_frame=True,
            )
            self._read_table(header.data(), header["sh_addr"])
        self._rows: dict[int, list[dict[str, Any]]] = {}

    def _read_table(self, data: bytes, base: int) -> None:
        version, ptr_enc, count_enc, table_enc = data[:4]
        if (version, ptr_enc, count_enc, table_enc) != (
            1,
            DW_EH_PE_pcrel_sdata4,
            DW_EH_PE_udata4,
            DW_EH_PE_datarel_sdata4,
        ):
            return
        (count,) = struct.unpack_from("<I", data, 8)
        pairs = struct.iter_unpack("<ii", data[12 : 12 + 8 * count])
        for start, fde in pairs:
            self._starts.append(base + start)
            self._fdes.append(base + fde)

    def row(self, address: int) -> Row | None:
        """The rules at `address` (a file address), or None where no FDE covers it."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or self._cfi is None:
            return None
        offset = self._fdes[i] - self._frame_address
        table = self._rows.get(offset)
        if table is None:
            entry = self._cfi._parse_entry_at(offset)
            if not isinstance(entry, FDE):
                return None
            start = entry.header["initial_location"]
            if not start <= address < start + entry.header["address_range"]:
                return None
            table = self._rows[offset] = entry.get_decoded().table
        best = None
        for line in table:
            if line["pc"] <= address:
                best = line
            else:
                break
        if best is None:
            return None
        cfa = best["cfa"]
        registers = {k: v for k, v in best.items() if isinstance(k, int)}
        if cfa.expr is not None:
            return Row(None, 0, registers)
        return Row(cfa.reg, cfa.offset, registers)
