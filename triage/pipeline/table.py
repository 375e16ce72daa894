"""`triage groups` as a table for people, fitted to the terminal's width.

Each signature is a row of short columns (id, counts, dates, fleets, Python versions, trend)
with the signature itself on the lines under it, broken between frames. A cell is broken
only between its items (fleets and versions at commas), never inside an id, a date or a
frame: a row whose items cannot fit is left wider than the terminal rather than cut.
The failed analyses follow, apart, one line per status.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import TYPE_CHECKING

from triage.pipeline.groups import COLUMNS

if TYPE_CHECKING:
    from triage.pipeline.groups import Group, GroupsResult

#: The columns of the other formats, but the signature (it goes under its row) and with a
#: shorter name for the Python versions.
HEADERS = tuple(
    "pythons" if column == "python_versions" else column
    for column in COLUMNS
    if column != "signature"
)
#: Columns whose items may go on several lines (split at commas).
FLEXIBLE = (6, 7)
RIGHT = (1, 2)
GAP = "  "
INDENT = "    "
#: When the width is not known (output to a file or a pipe): lines as long as they are.
UNLIMITED = 1 << 30


def terminal_width() -> int:
    """$COLUMNS when set, else the terminal's width, else UNLIMITED (not a terminal)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return UNLIMITED


def _items(group: Group) -> list[list[str]]:
    """Each column's items (a cell is its items joined, broken only between them)."""
    return [
        [group.signature_id],
        [str(group.cores)],
        [str(group.hosts)],
        ["NEW" if group.new else ""],
        [group.first_seen],
        [group.last_seen],
        _commas(group.fleets),
        _commas(group.python_versions),
        [" ".join(str(n) for n in group.trend)],
    ]


def _commas(values: list[str]) -> list[str]:
    """Items joined by commas: every one but the last carries its comma."""
    return [v + "," for v in values[:-1]] + values[-1:]


def _lines(items: list[str], width: int) -> list[str]:
    """Items packed into lines of at most `width` (an item longer stays whole)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(item) <= width:
            lines[-1] += item
        else:
            lines.append(item)
    return lines or [""]


def _widths(rows: list[list[list[str]]], width: int) -> list[int]:
    """Column widths: the fixed columns as wide as their widest cell, the flexible ones
    sharing what is left (at least their longest item, at most their widest cell)."""
    full = [max(len(h), *(len("".join(r[i])) for r in rows)) for i, h in enumerate(HEADERS)]
    least = [max(len(h), *(len(x) for r in rows for x in r[i])) for i, h in enumerate(HEADERS)]
    widths = list(full)
    room = width - sum(full) - len(GAP) * (len(HEADERS) - 1)
    for i in FLEXIBLE:  # take from the flexible columns what the line lacks
        if room >= 0:
            break
        give = min(widths[i] - least[i], -room)
        widths[i] -= give
        room += give
    return widths


def render(result: GroupsResult, *, color: bool, width: int = UNLIMITED) -> str:
    """The table (and the failed analyses) as text, lines of at most `width` characters
    where the items allow."""
    out = [
        f"{len(result.groups)} signatures; latest sweep {result.latest_sweep or 'none'}",
    ]
    rows = [_items(g) for g in result.groups]
    if rows:
        widths = _widths(rows, width)
        out.append(_join([[h] for h in HEADERS], widths, color=False)[0])
        for group, row in zip(result.groups, rows, strict=True):
            out += _join(row, widths, color=color and group.new)
            out += _signature_lines(group.signature, width)
    if result.failed:
        total = sum(f.cores for f in result.failed)
        out += ["", f"{total} failed analyses (in no group; rerun the sweep to retry them):"]
        for f in result.failed:
            text = f"{f.status}: {f.cores} core(s) ({', '.join(f.fleets)}), e.g. {f.example_error}"
            out += textwrap.wrap(
                text,
                max(20, width - len(INDENT)) if width < UNLIMITED else UNLIMITED,
                initial_indent="  ",
                subsequent_indent=INDENT,
                break_on_hyphens=False,
                break_long_words=False,
            )
    return "\n".join(out) + "\n"


def _join(row: list[list[str]], widths: list[int], *, color: bool) -> list[str]:
    """One table row, over as many lines as its tallest cell."""
    cells = [_lines(items, w) for items, w in zip(row, widths, strict=True)]
    height = max(len(c) for c in cells)
    lines = []
    for n in range(height):
        parts = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            text = cell[n] if n < len(cell) else ""
            padded = text.rjust(w) if i in RIGHT else text.ljust(w)
            if color and i == 3 and text:
                padded = f"\x1b[1;31m{text}\x1b[0m" + " " * (w - len(text))
            parts.append(padded)
        lines.append(GAP.join(parts).rstrip())
    return lines


def _signature_lines(signature: str, width: int) -> list[str]:
    """The signature under its row, indented, broken between frames (` |` ends a line that
    goes on)."""
    frames = signature.split(" | ")
    room = width - len(INDENT)
    lines: list[str] = []
    for frame in frames:
        if lines and len(lines[-1]) + len(" | ") + len(frame) + len(" |") <= room:
            lines[-1] += " | " + frame
        elif lines:
            lines[-1] += " |"
            lines.append(frame)
        else:
            lines.append(frame)
    return [INDENT + line for line in lines]
