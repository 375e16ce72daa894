"""Call-frame information of one ELF file: the unwinding rules at an address.

Rules come from `.eh_frame`, whose FDE for an address is found by binary search in
`.eh_frame_hdr`'s sorted table, and else from `.debug_frame` (of the file or of its separate
debug file), indexed once by scanning its entries' headers. Only the one FDE needed is
decoded: its CIE's initial instructions, then its own, up to the address.

    frames = CallFrames(path, debug_path=None)
    row = frames.row(address)     # Row(cfa_register, cfa_offset, {register: (rule, arg)})

Rules are (kind, argument) pairs, kind one of OFFSET, VAL_OFFSET, REGISTER, SAME_VALUE,
UNDEFINED, EXPRESSION, VAL_EXPRESSION (the argument of the last two: the DWARF expression's
bytes, which the unwinder evaluates; so is a CFA given by an expression, `Row.cfa_expression`,
as in every PLT's FDE).
"""

from __future__ import annotations

import bisect
import mmap
import struct
from dataclasses import dataclass

from triage.coredump import symbols as elf_symbols
from triage.native.leb128 import sleb as _sleb
from triage.native.leb128 import uleb as _uleb

DW_EH_PE_omit = 0xFF
DW_EH_PE_datarel_sdata4 = 0x3B
DW_EH_PE_pcrel_sdata4 = 0x1B
DW_EH_PE_udata4 = 0x03

OFFSET, VAL_OFFSET, REGISTER, SAME_VALUE = "OFFSET", "VAL_OFFSET", "REGISTER", "SAME_VALUE"
UNDEFINED, EXPRESSION, VAL_EXPRESSION = "UNDEFINED", "EXPRESSION", "VAL_EXPRESSION"
#: A register's rule: (kind, argument), the argument a number (an offset, a register), or the
#: DWARF expression's bytes for EXPRESSION and VAL_EXPRESSION.
Rule = tuple[str, int | bytes]

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_I16, _I32, _I64 = struct.Struct("<h"), struct.Struct("<i"), struct.Struct("<q")


class CfiError(ValueError):
    """The call-frame information does not read as the format says."""


@dataclass(frozen=True, slots=True)
class Row:
    """The unwinding rules in force at one address: the CFA as register + offset (register
    None when a DWARF expression computes it: `cfa_expression`) and each register's rule."""

    cfa_register: int | None
    cfa_offset: int
    registers: dict[int, Rule]
    cfa_expression: bytes | None = None
    signal_frame: bool = False
    """The code is a signal trampoline (augmentation 'S'): its caller was interrupted, not
    making a call, so its address is the instruction itself, not a return address."""


@dataclass(frozen=True, slots=True)
class _Cie:
    code_align: int
    data_align: int
    return_register: int
    pointer_encoding: int
    augmented: bool  # 'z': FDEs carry an augmentation length
    instructions: tuple[int, int]  # where they are in the section data
    signal_frame: bool = False  # 'S': the FDEs are of signal trampolines


class _Section:
    """One CFI section's bytes and its address, and how to decode its entries."""

    def __init__(self, data: bytes, address: int, eh: bool) -> None:
        self.data = data
        self.address = address
        self.eh = eh  # .eh_frame (relative CIE pointers, encoded addresses) or .debug_frame
        self._cies: dict[int, _Cie] = {}

    def pointer(self, pos: int, encoding: int) -> tuple[int, int]:
        """An encoded pointer at `pos` (relative encodings resolved): (value, next pos)."""
        data = self.data
        fmt = encoding & 0x0F
        if fmt == 0x00:
            value, end = _U64.unpack_from(data, pos)[0], pos + 8
        elif fmt == 0x01:
            value, end = _uleb(data, pos)
        elif fmt == 0x02:
            value, end = _U16.unpack_from(data, pos)[0], pos + 2
        elif fmt == 0x03:
            value, end = _U32.unpack_from(data, pos)[0], pos + 4
        elif fmt == 0x04:
            value, end = _U64.unpack_from(data, pos)[0], pos + 8
        elif fmt == 0x09:
            value, end = _sleb(data, pos)
        elif fmt == 0x0A:
            value, end = _I16.unpack_from(data, pos)[0], pos + 2
        elif fmt == 0x0B:
            value, end = _I32.unpack_from(data, pos)[0], pos + 4
        elif fmt == 0x0C:
            value, end = _I64.unpack_from(data, pos)[0], pos + 8
        else:
            raise CfiError(f"pointer encoding 0x{encoding:x}")
        if encoding & 0x70 == 0x10:  # pcrel
            value += self.address + pos
        return value & 0xFFFFFFFFFFFFFFFF, end

    def entry(self, offset: int) -> tuple[bool, int, int, int]:
        """(is a CIE, CIE offset or 0, where the body starts, where the entry ends)."""
        data = self.data
        length = _U32.unpack_from(data, offset)[0]
        pos = offset + 4
        wide = length == 0xFFFFFFFF
        if wide:
            length = _U64.unpack_from(data, pos)[0]
            pos += 8
        end = pos + length
        if wide:
            ident = _U64.unpack_from(data, pos)[0]
            pos += 8
        else:
            ident = _U32.unpack_from(data, pos)[0]
            pos += 4
        if self.eh:
            if ident == 0:
                return True, 0, pos, end
            return False, pos - 4 - ident, pos, end  # relative to the id field
        if ident == (0xFFFFFFFFFFFFFFFF if wide else 0xFFFFFFFF):
            return True, 0, pos, end
        return False, ident, pos, end

    def cie(self, offset: int) -> _Cie:
        found = self._cies.get(offset)
        if found is not None:
            return found
        is_cie, _ref, pos, end = self.entry(offset)
        if not is_cie:
            raise CfiError(f"no CIE at 0x{offset:x}")
        data = self.data
        version = data[pos]
        pos += 1
        augmentation_end = data.index(b"\0", pos)
        augmentation = data[pos:augmentation_end].decode("ascii", "replace")
        pos = augmentation_end + 1
        if "eh" in augmentation:
            pos += 8
        if version >= 4:
            pos += 2  # address_size, segment_size
        code_align, pos = _uleb(data, pos)
        data_align, pos = _sleb(data, pos)
        if version == 1:
            return_register = data[pos]
            pos += 1
        else:
            return_register, pos = _uleb(data, pos)
        encoding = 0x00  # absolute unless the augmentation says otherwise
        augmented = augmentation.startswith("z")
        if augmented:
            size, pos = _uleb(data, pos)
            body = pos
            for char in augmentation[1:]:
                if char == "R":
                    encoding = data[pos]
                    pos += 1
                elif char == "L":
                    pos += 1
                elif char == "P":
                    personality = data[pos]
                    _value, pos = self.pointer(pos + 1, personality & 0x7F)
                elif char in "SB":
                    continue
                else:
                    break  # unknown: the size says where the instructions start
            pos = body + size
        found = self._cies[offset] = _Cie(
            code_align,
            data_align,
            return_register,
            encoding,
            augmented,
            (pos, end),
            augmented and "S" in augmentation,
        )
        return found

    def fde_range(self, offset: int) -> tuple[int, int, _Cie, int, int] | None:
        """(start, end, CIE, where its instructions start, where they end) of the FDE at
        `offset`, or None when the entry there is a CIE."""
        is_cie, cie_offset, pos, end = self.entry(offset)
        if is_cie:
            return None
        cie = self.cie(cie_offset)
        encoding = cie.pointer_encoding if self.eh else 0x00
        start, pos = self.pointer(pos, encoding)
        size, pos = self.pointer(pos, encoding & 0x0F)
        if cie.augmented:
            skip, pos = _uleb(self.data, pos)
            pos += skip
        return start, start + size, cie, pos, end


class CallFrames:
    """The CFI of one ELF file (addresses are the file's own, before relocation)."""

    def __init__(self, path: str, debug_path: str | None = None) -> None:
        self._eh: _Section | None = None
        self._starts: list[int] = []
        self._fdes: list[int] = []
        self._debug: _Section | None = None
        self._debug_index: tuple[list[int], list[int], list[int]] | None = None
        self._debug_sources = [p for p in (path, debug_path) if p]
        parsed = elf_symbols.load_symbols(path)
        frame = parsed.sections.get(".eh_frame")
        header = parsed.sections.get(".eh_frame_hdr")
        if frame is None or header is None or frame.type == elf_symbols.SHT_NOBITS:
            return
        with (
            open(path, "rb") as stream,
            mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as m,
        ):
            self._eh = _Section(m[frame.offset : frame.offset + frame.size], frame.addr, eh=True)
            self._read_table(m[header.offset : header.offset + header.size], header.addr)

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
        for start, fde in struct.iter_unpack("<ii", data[12 : 12 + 8 * count]):
            self._starts.append(base + start)
            self._fdes.append(base + fde)

    def row(self, address: int) -> Row | None:
        """The rules at `address` (a file address), or None where no FDE covers it."""
        found = self._eh_fde(address) or self._debug_fde(address)
        if found is None:
            return None
        start, _end, section, offset = found
        fde = section.fde_range(offset)
        if fde is None:
            return None
        _start, _end, cie, pos, stop = fde
        return _run(section, cie, start, pos, stop, address)

    def _eh_fde(self, address: int) -> tuple[int, int, _Section, int] | None:
        section = self._eh
        if section is None:
            return None
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        offset = self._fdes[i] - section.address
        fde = section.fde_range(offset)
        if fde is None or not fde[0] <= address < fde[1]:
            return None
        return fde[0], fde[1], section, offset

    def _debug_fde(self, address: int) -> tuple[int, int, _Section, int] | None:
        """`.debug_frame`, for code `.eh_frame` does not describe (indexed on first use)."""
        if self._debug_index is None:
            self._debug_index = ([], [], [])
            for source in self._debug_sources:
                section = _debug_frame(source)
                if section is not None:
                    self._debug = section
                    self._debug_index = _index(section)
                    break
        starts, ends, offsets = self._debug_index
        i = bisect.bisect_right(starts, address) - 1
        if i < 0 or address >= ends[i] or self._debug is None:
            return None
        return starts[i], ends[i], self._debug, offsets[i]


def _debug_frame(path: str) -> _Section | None:
    parsed = elf_symbols.load_symbols(path)
    section = parsed.sections.get(".debug_frame")
    if section is None or section.type == elf_symbols.SHT_NOBITS or not section.size:
        return None
    with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as m:
        data = m[section.offset : section.offset + section.size]
    if section.flags & 0x800:  # SHF_COMPRESSED
        from triage.native.dwarf import decompress

        data = decompress(data)
    return _Section(data, 0, eh=False)


def _index(section: _Section) -> tuple[list[int], list[int], list[int]]:
    rows = []
    offset = 0
    size = len(section.data)
    while offset + 12 <= size:
        try:
            is_cie, _cie, _pos, end = section.entry(offset)
            if not is_cie:
                fde = section.fde_range(offset)
                if fde is not None and fde[1] > fde[0]:
                    rows.append((fde[0], fde[1], offset))
        except (CfiError, IndexError, struct.error, ValueError):
            break
        if end <= offset:
            break
        offset = end
    rows.sort()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _run(section: _Section, cie: _Cie, start: int, pos: int, stop: int, address: int) -> Row:
    """Run the CIE's initial instructions, then the FDE's, up to `address`."""
    state = _State()
    _execute(section, cie, cie.instructions[0], cie.instructions[1], state, None, 0, start)
    initial = dict(state.registers)
    _execute(section, cie, pos, stop, state, initial, address, start)
    return Row(
        state.cfa_register,
        state.cfa_offset,
        dict(state.registers),
        state.cfa_expression,
        cie.signal_frame,
    )


class _State:
    __slots__ = ("cfa_expression", "cfa_offset", "cfa_register", "registers", "stack")

    def __init__(self) -> None:
        self.cfa_register: int | None = None
        self.cfa_offset = 0
        self.cfa_expression: bytes | None = None
        self.registers: dict[int, Rule] = {}
        self.stack: list[tuple[int | None, int, bytes | None, dict[int, Rule]]] = []


def _execute(
    section: _Section,
    cie: _Cie,
    pos: int,
    stop: int,
    state: _State,
    initial: dict[int, Rule] | None,
    address: int,
    location: int,
) -> None:
    """Apply instructions from `pos` to `stop`; with `initial` (an FDE's), stop before the
    first advance past `address`."""
    data = section.data
    caf, daf = cie.code_align, cie.data_align
    regs = state.registers
    while pos < stop:
        op = data[pos]
        pos += 1
        high, low = op & 0xC0, op & 0x3F
        if high == 0x40:  # advance_loc
            location += low * caf
            if initial is not None and location > address:
                return
            continue
        if high == 0x80:  # offset
            n, pos = _uleb(data, pos)
            regs[low] = (OFFSET, n * daf)
            continue
        if high == 0xC0:  # restore
            _restore(regs, initial, low)
            continue
        if op == 0x00:  # nop
            continue
        if op in (0x01, 0x02, 0x03, 0x04):  # set_loc, advance_loc1/2/4
            if op == 0x01:
                location, pos = section.pointer(pos, cie.pointer_encoding if section.eh else 0)
            else:
                width = {0x02: 1, 0x03: 2, 0x04: 4}[op]
                location += int.from_bytes(data[pos : pos + width], "little") * caf
                pos += width
            if initial is not None and location > address:
                return
        elif op in (0x05, 0x11, 0x14, 0x15, 0x2F):  # offset forms with a register operand
            reg, pos = _uleb(data, pos)
            if op in (0x11, 0x15):
                n, pos = _sleb(data, pos)
            else:
                n, pos = _uleb(data, pos)
            n *= daf
            if op == 0x2F:
                n = -n
            regs[reg] = (VAL_OFFSET if op in (0x14, 0x15) else OFFSET, n)
        elif op == 0x06:  # restore_extended
            reg, pos = _uleb(data, pos)
            _restore(regs, initial, reg)
        elif op == 0x07:  # undefined
            reg, pos = _uleb(data, pos)
            regs[reg] = (UNDEFINED, 0)
        elif op == 0x08:  # same_value
            reg, pos = _uleb(data, pos)
            regs[reg] = (SAME_VALUE, 0)
        elif op == 0x09:  # register
            reg, pos = _uleb(data, pos)
            other, pos = _uleb(data, pos)
            regs[reg] = (REGISTER, other)
        elif op == 0x0A:  # remember_state
            state.stack.append(
                (state.cfa_register, state.cfa_offset, state.cfa_expression, dict(regs))
            )
        elif op == 0x0B:  # restore_state
            if state.stack:
                state.cfa_register, state.cfa_offset, state.cfa_expression, saved = (
                    state.stack.pop()
                )
                regs.clear()
                regs.update(saved)
        elif op == 0x0C:  # def_cfa
            state.cfa_register, pos = _uleb(data, pos)
            state.cfa_offset, pos = _uleb(data, pos)
            state.cfa_expression = None
        elif op == 0x0D:  # def_cfa_register
            state.cfa_register, pos = _uleb(data, pos)
            state.cfa_expression = None
        elif op == 0x0E:  # def_cfa_offset
            state.cfa_offset, pos = _uleb(data, pos)
        elif op == 0x0F:  # def_cfa_expression
            n, pos = _uleb(data, pos)
            state.cfa_expression = bytes(data[pos : pos + n])
            state.cfa_register = None
            pos += n
        elif op in (0x10, 0x16):  # expression, val_expression
            reg, pos = _uleb(data, pos)
            n, pos = _uleb(data, pos)
            regs[reg] = (EXPRESSION if op == 0x10 else VAL_EXPRESSION, bytes(data[pos : pos + n]))
            pos += n
        elif op == 0x12:  # def_cfa_sf
            state.cfa_register, pos = _uleb(data, pos)
            n, pos = _sleb(data, pos)
            state.cfa_offset = n * daf
            state.cfa_expression = None
        elif op == 0x13:  # def_cfa_offset_sf
            n, pos = _sleb(data, pos)
            state.cfa_offset = n * daf
        elif op == 0x2E:  # GNU_args_size
            _n, pos = _uleb(data, pos)
        else:
            raise CfiError(f"call frame instruction 0x{op:x}")


def _restore(regs: dict[int, Rule], initial: dict[int, Rule] | None, reg: int) -> None:
    if initial is not None and reg in initial:
        regs[reg] = initial[reg]
    else:
        regs.pop(reg, None)
