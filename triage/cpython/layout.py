"""Per-version CPython structure layouts, loaded from the tables in ``layouts/*.json``.

The tables are derived from the interpreters' DWARF by ``scripts/derive_layouts.py``; never edit
them by hand. Typical use::

    layout = load_layout(3, 12)
    cframe = read_ptr(tstate + layout.offset("PyThreadState", "cframe"))
    if layout.has("PyThreadState", "native_thread_id"): ...
    kind = layout.bitfield("PyASCIIObject", "state.kind").extract(raw_bytes)

Struct names are the C names (``PyThreadState``, ``_PyInterpreterFrame``); tag-only structs are
named by their tag with or without ``struct `` (``_gil_runtime_state``). Members of embedded
structs are dotted (``threads.head``, ``ceval.gil``) and every offset counts from the start of
the outermost struct. A field missing from a table does not exist in that version.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "Bitfield",
    "Layout",
    "LayoutError",
    "MissingField",
    "UnknownLayout",
    "available_versions",
    "load_layout",
]

# os.path, not pathlib: pathlib and what it imports are 2.5 ms of every start.
_LAYOUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layouts")
_FILE_RE = re.compile(r"^(\d+)\.(\d+)\.json$")


class LayoutError(KeyError):
    """Base class for lookups that a layout table cannot answer (a ``KeyError``)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; these carry a sentence.
        return str(self.args[0]) if self.args else ""


class UnknownLayout(LayoutError):
    """There is no layout table for the requested CPython version."""


class MissingField(LayoutError):
    """The struct or field does not exist in this CPython version's layout."""


class Bitfield(NamedTuple):
    """Where a bitfield lives: byte ``offset`` in the struct, LSB-based ``bit_offset``, width."""

    offset: int
    bit_offset: int
    bit_size: int

    @property
    def nbytes(self) -> int:
        """How many bytes from ``offset`` hold the bitfield."""
        return (self.bit_offset + self.bit_size + 7) // 8

    def extract(self, data: bytes) -> int:
        """The bitfield's value from memory starting at ``offset`` (little-endian)."""
        if len(data) < self.nbytes:
            raise ValueError(f"bitfield needs {self.nbytes} bytes, got {len(data)}")
        raw = int.from_bytes(data[: self.nbytes], "little")
        return (raw >> self.bit_offset) & ((1 << self.bit_size) - 1)


class _Struct(NamedTuple):
    size: int
    fields: Mapping[str, int]
    bitfields: Mapping[str, Bitfield]


def _canonical(struct: str) -> str:
    return struct[7:] if struct.startswith("struct ") else struct


@dataclass(frozen=True, eq=False)
class Layout:
    """The structure layouts and constants of one CPython ``major.minor`` version."""

    version: tuple[int, int]
    derived_from: str
    _structs: Mapping[str, _Struct]
    _constants: Mapping[str, int]
    provisional: bool = False
    """Another version's table corrected by the core's debug offsets (a CPython newer than
    every table): readers treat anything that does not validate as an error, not as data."""

    def _struct(self, struct: str) -> _Struct:
        try:
            return self._structs[_canonical(struct)]
        except KeyError:
            raise MissingField(
                f"Python {self.version[0]}.{self.version[1]} has no struct {struct!r}"
            ) from None

    def has(self, struct: str, field: str | None = None) -> bool:
        """Whether ``struct`` (and, if given, its ``field`` or bitfield) exists in this version."""
        entry = self._structs.get(_canonical(struct))
        if entry is None:
            return False
        return field is None or field in entry.fields or field in entry.bitfields

    def offset(self, struct: str, field: str) -> int:
        """Byte offset of ``field`` (dotted for embedded structs) from the start of ``struct``."""
        entry = self._struct(struct)
        try:
            return entry.fields[field]
        except KeyError:
            raise MissingField(
                f"Python {self.version[0]}.{self.version[1]}: {struct} has no field {field!r}"
            ) from None

    def size(self, struct: str) -> int:
        """``sizeof(struct)`` in bytes."""
        return self._struct(struct).size

    def bitfield(self, struct: str, field: str) -> Bitfield:
        """``(offset, bit_offset, bit_size)`` of a bitfield such as ``state.kind``."""
        entry = self._struct(struct)
        try:
            return entry.bitfields[field]
        except KeyError:
            raise MissingField(
                f"Python {self.version[0]}.{self.version[1]}: {struct} has no bitfield {field!r}"
            ) from None

    def fields(self, struct: str) -> Mapping[str, int]:
        """Every field of ``struct`` with its offset (read-only view)."""
        return self._struct(struct).fields

    def structs(self) -> list[str]:
        """Names of the structs in this table, sorted."""
        return sorted(self._structs)

    def constant(self, name: str) -> int:
        """A constant: ``PyLong_SHIFT``, ``sizeof(_Py_CODEUNIT)``, ``FRAME_OWNED_BY_CSTACK``..."""
        try:
            return self._constants[name]
        except KeyError:
            raise MissingField(
                f"Python {self.version[0]}.{self.version[1]} has no constant {name!r}"
            ) from None

    def has_constant(self, name: str) -> bool:
        """Whether the table has the constant ``name``."""
        return name in self._constants


def _parse(version: tuple[int, int], doc: dict[str, Any]) -> Layout:
    structs: dict[str, _Struct] = {}
    for name, raw in doc["structs"].items():
        bitfields = {
            key: Bitfield(int(bf["offset"]), int(bf["bit_offset"]), int(bf["bit_size"]))
            for key, bf in raw.get("bitfields", {}).items()
        }
        fields = {key: int(value) for key, value in raw["fields"].items()}
        structs[name] = _Struct(int(raw["size"]), fields, bitfields)
    return Layout(
        version=version,
        derived_from=str(doc.get("derived_from", "")),
        _structs=structs,
        _constants={key: int(value) for key, value in doc.get("constants", {}).items()},
    )


@lru_cache(maxsize=64)
def load_layout(major: int, minor: int) -> Layout:
    """The layout table of CPython ``major.minor``; raises ``UnknownLayout`` if there is none."""
    path = os.path.join(_LAYOUT_DIR, f"{major}.{minor}.json")
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        known = ", ".join(f"{a}.{b}" for a, b in available_versions()) or "none"
        raise UnknownLayout(
            f"no structure layout table for Python {major}.{minor} (have: {known}); "
            f"derive one with scripts/derive_layouts.py"
        ) from None
    return _parse((major, minor), json.loads(text))


@lru_cache(maxsize=1)
def _available() -> tuple[tuple[int, int], ...]:
    found = []
    for name in os.listdir(_LAYOUT_DIR):
        match = _FILE_RE.match(name)
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return tuple(sorted(found))


def available_versions() -> list[tuple[int, int]]:
    """The ``(major, minor)`` versions that have a layout table, oldest first."""
    return list(_available())
