"""CPython's own `_Py_DebugOffsets` (3.13+): the offsets a debugger needs, published by the
interpreter at the start of `_PyRuntime`.

The block is a struct of sections (`runtime_state`, `thread_state`, `interpreter_frame`,
`code_object`, ...), each starting with the `size` of the structure it describes and then the
offsets of its members. Its own layout changes between versions (3.14 inserted members and
sections), so it is parsed with the `_Py_DebugOffsets` layout of a table: the table of the
version the block declares first, then the others, and a parse counts only when it
validates (every section's size plausible, every offset inside its section, the members
that must agree agreeing). The values then correct the table (`overlay`): the interpreter,
thread and frame states move between micro versions and between release and debug builds,
and a CPython newer than every table is read through them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import NamedTuple

from triage.coredump.memory import CoreMemory
from triage.cpython.fields import Size, declarations
from triage.cpython.layout import Layout, _Struct, available_versions, load_layout
from triage.errors import ReadError

BLOCK = "_Py_DebugOffsets"
_HEADER = ("cookie", "version", "free_threaded")
_MAX_SECTION = 1 << 24  # _PyRuntimeState, the largest, is ~350 KB
# Members that hold the same offset in every version (PyVarObject.ob_size of each object).
_SAME = ("tuple_object.ob_size", "list_object.ob_size", "bytes_object.ob_size")


class DebugOffsets(NamedTuple):
    """A validated `_Py_DebugOffsets` block of a core."""

    values: dict[str, int]
    """Every member, by its dotted name (`thread_state.current_frame`)."""
    parsed_with: tuple[int, int]
    """The version whose table gave the block's layout."""
    free_threaded: bool

    def section_size(self, section: str) -> int | None:
        return self.values.get(f"{section}.size")


def block_layouts(version: tuple[int, int]) -> Iterator[tuple[int, int]]:
    """Versions whose table has the block's layout, in the order to try them for `version`:
    its own, then the nearest, newer before older (tables are loaded as they are tried)."""
    order = sorted(
        (v for v in available_versions() if v[0] == version[0]),
        key=lambda v: (v != version, abs(v[1] - version[1]), -v[1]),
    )
    return (v for v in order if load_layout(*v).has(BLOCK))


def read(memory: CoreMemory, runtime: int, version: tuple[int, int]) -> DebugOffsets | None:
    """The core's debug offsets, parsed with the first block layout that validates; None when
    none does (or the block is unreadable)."""
    for candidate in block_layouts(version):
        table = load_layout(*candidate)
        fields = table.fields(BLOCK)
        try:
            raw = memory.read(runtime, table.size(BLOCK))
        except ReadError:
            return None
        values = {
            name: int.from_bytes(raw[off : off + 8], "little")
            for name, off in fields.items()
            if "." in name or name == "free_threaded"
        }
        if validate(values) is None:
            return DebugOffsets(values, candidate, bool(values.get("free_threaded", 0)))
    return None


def validate(values: dict[str, int]) -> str | None:
    """Why a parse of the block cannot be right, or None when it is consistent."""
    if values.get("free_threaded", 0) not in (0, 1):
        return f"free_threaded is {values['free_threaded']}"
    sections = {name.split(".", 1)[0] for name in values if "." in name}
    sized = sorted(s for s in sections if f"{s}.size" in values)
    if not sized:
        return "no section has a size"
    for section in sized:
        size = values[f"{section}.size"]
        if not 0 < size <= _MAX_SECTION:
            return f"{section}.size is {size}"
        for name, value in values.items():
            if not name.startswith(section + ".") or name.endswith("size"):
                continue
            if value >= size:
                return f"{name} ({value}) lies outside {section} ({size} bytes)"
    same = {values[n] for n in _SAME if n in values}
    if len(same) > 1:
        return f"{', '.join(_SAME)} differ"
    return None


@functools.cache
def _targets() -> dict[str, list[tuple[str, tuple[str, ...], bool]]]:
    """Debug-offset name -> [(struct, member names, is a size)] from the declarations."""
    out: dict[str, list[tuple[str, tuple[str, ...], bool]]] = {}
    for declared in declarations():
        for member in declared.members.values():
            if member.debug:
                out.setdefault(member.debug, []).append(
                    (member.struct, member.names, isinstance(member, Size))
                )
    return out


def overlay(base: Layout, block: DebugOffsets, version: tuple[int, int]) -> Layout:
    """`base` with every offset the core publishes (and the engine declares) replacing the
    table's, labelled `version`."""
    structs = dict(base._structs)
    # The fields of the structs copied before their first change (the table is shared).
    copied: dict[str, dict[str, int]] = {}
    for key, targets in _targets().items():
        parts = key.split("+")
        if not all(p in block.values for p in parts):
            continue
        value = sum(block.values[p] for p in parts)
        for struct, names, is_size in targets:
            entry = structs.get(struct)
            if entry is None:
                continue
            fields = copied.get(struct)
            if fields is None:
                fields = copied[struct] = dict(entry.fields)
                entry = structs[struct] = _Struct(entry.size, fields, entry.bitfields)
            if is_size:
                structs[struct] = entry._replace(size=value)
                continue
            name = next((n for n in names if n in fields), names[0])
            fields[name] = value
    return dataclasses.replace(
        base,
        version=version,
        derived_from=f"{base.derived_from} + _Py_DebugOffsets from the core",
        _structs=structs,
    )
