"""Decoders for CPython line-number tables (pure functions, no I/O).

Three on-memory formats exist, one function each:

* ``co_lnotab`` (2.7, 3.0-3.9): :func:`line_from_lnotab`, offset in **bytes** (``f_lasti``).
* ``co_linetable`` (3.10): :func:`line_from_linetable_310`, offset in **code units**
  (3.10's C-level ``f_lasti``, i.e. instruction index; one unit is 2 bytes).
* ``co_linetable`` location table (3.11+, PEP 657): :func:`position_from_locations`, offset
  in **code units** (``(prev_instr or instr_ptr - co_code_adaptive) // 2`` bytes).

The tables come from a dead process's memory and may be damaged: no function raises on
malformed input. When a table ends before reaching the requested offset (truncation, or an
offset past its end), the line computed so far is returned as the best guess; an offset
before the first instruction (negative ``f_lasti``) yields ``co_firstlineno``, as CPython does.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CODE_UNIT_SIZE",
    "Position",
    "line_from_linetable_310",
    "line_from_lnotab",
    "position_from_locations",
]

#: Bytes per code unit (one 16-bit ``_Py_CODEUNIT``) in 3.6+ bytecode.
CODE_UNIT_SIZE = 2

# 3.10 co_linetable: line delta meaning "this range has no line number".
_NO_LINE_310 = -128

# 3.11+ location-entry codes (bits 3-6 of an entry's first byte).
_SHORT_MAX = 9
_ONE_LINE_MIN = 10
_ONE_LINE_MAX = 12
_NO_COLUMNS = 13
_LONG = 14
_NO_LOCATION = 15

# A varint longer than this many 6-bit chunks is treated as damage, not data.
_MAX_VARINT_CHUNKS = 6


class Position(NamedTuple):
    """Source span of one instruction; ``None`` where the table records nothing.

    Columns are 0-based UTF-8 byte offsets, as CPython stores them.
    """

    line: int | None
    end_line: int | None = None
    column: int | None = None
    end_column: int | None = None


def line_from_lnotab(lnotab: bytes, firstlineno: int, lasti: int, *, signed_deltas: bool) -> int:
    """Line of the instruction at byte offset ``lasti`` from a ``co_lnotab`` table.

    ``lnotab`` is a sequence of (address delta, line delta) byte pairs; the line is
    ``firstlineno`` plus every line delta whose cumulative address is ``<= lasti``.
    ``signed_deltas`` is True from 3.6 on (line deltas are ``int8``), False for 2.7 and
    3.0-3.5 (``uint8``). A trailing odd byte is ignored.
    """
    line = firstlineno
    addr = 0
    for i in range(0, len(lnotab) - 1, 2):
        addr += lnotab[i]
        if addr > lasti:
            break
        delta = lnotab[i + 1]
        if signed_deltas and delta >= 0x80:
            delta -= 0x100
        line += delta
    return line


def line_from_linetable_310(linetable: bytes, firstlineno: int, lasti_units: int) -> int | None:
    """Line of the instruction at code-unit index ``lasti_units`` from a 3.10 ``co_linetable``.

    ``lasti_units`` is 3.10's C-level ``PyFrameObject.f_lasti``: an instruction index, i.e.
    the byte offset divided by 2 (Python-level ``frame.f_lasti`` is already in bytes: divide
    it by 2 first). The table is a sequence of (byte-length ``uint8``, line delta ``int8``)
    pairs, each covering the next range of bytes; a line delta of -128 marks a range with
    no line (``None``) and leaves the running line unchanged.
    """
    if lasti_units < 0:
        return firstlineno
    offset = lasti_units * CODE_UNIT_SIZE  # the table counts bytes
    computed = firstlineno
    end = 0
    for i in range(0, len(linetable) - 1, 2):
        start = end
        end += linetable[i]
        delta = linetable[i + 1]
        if delta >= 0x80:
            delta -= 0x100
        line: int | None
        if delta == _NO_LINE_310:
            line = None
        else:
            computed += delta
            line = computed
        if start <= offset < end:
            return line
    return computed


def _read_varint(table: bytes, pos: int) -> tuple[int, int] | None:
    """Decode an unsigned varint (6-bit chunks, bit 6 = more) at ``pos``.

    Returns (value, next position), or None if the table is truncated or damaged.
    """
    value = 0
    shift = 0
    for _ in range(_MAX_VARINT_CHUNKS):
        if pos >= len(table):
            return None
        byte = table[pos]
        pos += 1
        if byte & 0x80:  # an entry-start byte inside a varint: damage
            return None
        value |= (byte & 0x3F) << shift
        shift += 6
        if not byte & 0x40:
            return value, pos
    return None


def _read_svarint(table: bytes, pos: int) -> tuple[int, int] | None:
    """Decode a signed varint (sign in bit 0 of the unsigned value) at ``pos``."""
    read = _read_varint(table, pos)
    if read is None:
        return None
    uvalue, pos = read
    value = -(uvalue >> 1) if uvalue & 1 else uvalue >> 1
    return value, pos


def _parse_entry(table: bytes, pos: int, line: int) -> tuple[int, int, Position, int] | None:
    """Decode the 3.11+ location entry at ``pos`` given the running line.

    Returns (length in code units, new running line, position, next pos) or None when
    the entry is damaged or truncated.
    """
    first = table[pos]
    if not first & 0x80:
        return None
    code = (first >> 3) & 0x0F
    length = (first & 0x07) + 1
    pos += 1
    if code <= _SHORT_MAX:
        if pos >= len(table) or table[pos] & 0x80:
            return None
        second = table[pos]
        column = code * 8 + ((second >> 4) & 0x07)
        return length, line, Position(line, line, column, column + (second & 0x0F)), pos + 1
    if code <= _ONE_LINE_MAX:
        if pos + 1 >= len(table) or (table[pos] | table[pos + 1]) & 0x80:
            return None
        line += code - _ONE_LINE_MIN
        return length, line, Position(line, line, table[pos], table[pos + 1]), pos + 2
    if code == _NO_LOCATION:
        return length, line, Position(None), pos
    read = _read_svarint(table, pos)
    if read is None:
        return None
    delta, pos = read
    line += delta
    if code == _NO_COLUMNS:
        return length, line, Position(line, line), pos
    # Long form: end-line delta, then column + 1 and end column + 1 (0 = unknown).
    fields = []
    for _ in range(3):
        read = _read_varint(table, pos)
        if read is None:
            return None
        value, pos = read
        fields.append(value)
    end_delta, column, end_column = fields
    position = Position(
        line,
        line + end_delta,
        column - 1 if column else None,
        end_column - 1 if end_column else None,
    )
    return length, line, position, pos


def position_from_locations(table: bytes, firstlineno: int, instr_index: int) -> Position:
    """Source position of code unit ``instr_index`` from a 3.11+ location table.

    ``instr_index`` counts 2-byte code units from the start of the bytecode (inline
    ``CACHE`` entries included): ``(prev_instr - co_code_adaptive)`` in 3.11/3.12, or
    ``(instr_ptr - co_code_adaptive)`` in 3.13+, each in bytes divided by 2. Each entry
    covers ``length`` units and carries the line as a delta from the previous entry's.
    On a damaged or too-short table, returns the running line with no columns.
    """
    if instr_index < 0:
        return Position(firstlineno)
    line = firstlineno
    unit = 0
    pos = 0
    size = len(table)
    while pos < size:
        first = table[pos]
        length = (first & 0x07) + 1
        if unit + length > instr_index or not first & 0x80:
            break
        # Skip an entry that does not cover instr_index, tracking only the line.
        unit += length
        code = (first >> 3) & 0x0F
        pos += 1
        if code <= _SHORT_MAX:
            pos += 1
        elif code <= _ONE_LINE_MAX:
            line += code - _ONE_LINE_MIN
            pos += 2
        elif code != _NO_LOCATION:
            read = _read_svarint(table, pos)
            if read is None:
                return Position(line)
            delta, pos = read
            line += delta
            if code == _LONG:
                for _ in range(3):
                    read = _read_varint(table, pos)
                    if read is None:
                        return Position(line)
                    pos = read[1]
    if pos >= size:
        return Position(line)
    entry = _parse_entry(table, pos, line)
    return Position(line) if entry is None else entry[2]
