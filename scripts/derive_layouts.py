#!/usr/bin/env python3
"""Derive per-version CPython structure layouts from libpython's DWARF and keep them as data.

Usage::

    python scripts/derive_layouts.py                      # every ~/.pyenv/versions/*
    python scripts/derive_layouts.py ~/.pyenv/versions/3.14.0
    python scripts/derive_layouts.py /path/to/libpython3.12.so.1.0 --out /tmp/layouts

Each argument is an interpreter prefix (a directory holding ``lib/libpythonX.Y*.so*`` or, for a
static build, ``bin/pythonX.Y``) or an ELF file with DWARF (a stripped one is read through its
separate debug file, found by build-id under ``usr/lib/debug`` of the sysroot it lies in or of
this machine, as Debian's ``python3.X-dbg`` packages install them):

    python scripts/derive_layouts.py ~/.cache/triage/sid-sysroot/usr/bin/python3.14

The script walks the DWARF type information with pyelftools and resolves the structures the
engine declares it reads (``triage.cpython.fields.wanted_structs()``: the readers' member
declarations and what ``triage.cpython.model`` inspects; ``STRUCTS`` below gives their C
names), takes the constants they declare from the DWARF (enumerators, typedef sizes) or, for C
macros, from the interpreter's installed headers through the C preprocessor (``cc -E -dM``),
checks that every declaration that applies to the version resolves, and writes
``<out>/<major>.<minor>.json``::

    {"python": "3.12", "derived_from": "libpython3.12.so.1.0 (DWARF)",
     "structs": {"PyThreadState": {"size": 288, "fields": {"next": 8, ...},
                                   "bitfields": {...}}, ...},
     "constants": {"PyLong_SHIFT": 30, "FRAME_OWNED_BY_CSTACK": 3, ...}}

Conventions:

* Members of embedded structs and unions are named with dots (``threads.head``, ``ceval.gil``);
  members of anonymous structs/unions are named as C names them (without a prefix). Every offset
  is in bytes from the start of the outermost struct. Arrays are not expanded (the offset of an
  array member is the offset of its first element), pointers are never followed, and these
  embedded structs are recorded by their own offset only, not member by member: types from
  outside the interpreter's sources (``pthread_mutex_t``), interpreter and thread states (they
  have their own entries) and structs with more than ``EXPAND_LIMIT`` members in all (the tables
  of static strings and objects).
* Bitfields are listed under ``bitfields`` (not ``fields``): ``offset`` is the byte holding the
  bitfield's least significant bit and ``bit_offset`` counts from that byte's least significant
  bit (x86-64 is little-endian), so ``(int.from_bytes(mem[offset:offset + n], "little") >>
  bit_offset) & ((1 << bit_size) - 1)`` with ``n = (bit_offset + bit_size + 7) // 8`` reads it.
* The output is deterministic (sorted keys, fixed indentation, no paths or dates): a rerun on the
  same interpreter gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the engine's declarations say what to derive

from triage.cpython import fields as engine_fields  # noqa: E402
from triage.cpython.layout import _parse as parse_table  # noqa: E402
from triage.native.leb128 import uleb  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "triage" / "cpython" / "layouts"
DEFAULT_PREFIXES_GLOB = "~/.pyenv/versions/*"

# Embedded structs with more members than this (counted through all levels) are recorded by
# offset only, not expanded member by member: the runtime and interpreter states embed tables of
# hundreds of static strings and objects that no reader needs.
EXPAND_LIMIT = 256

Version = tuple[int, int]


@dataclass(frozen=True)
class StructSpec:
    """One structure to resolve: output key, C names to match, and the versions that have it.

    ``names`` are matched against both typedef names and struct/union tags. ``since``/``until``
    (inclusive) only tell the scanner what to expect so it can stop early; a struct found outside
    that range is still written.
    """

    key: str
    names: tuple[str, ...]
    since: Version = (2, 0)
    until: Version | None = None

    def expected(self, version: Version) -> bool:
        """Whether this struct is expected to exist in ``version``."""
        return self.since <= version and (self.until is None or version <= self.until)


STRUCTS: tuple[StructSpec, ...] = (
    # Interpreter and thread states.
    StructSpec("_PyRuntimeState", ("_PyRuntimeState", "pyruntimestate"), since=(3, 7)),
    StructSpec("PyInterpreterState", ("PyInterpreterState", "_is")),
    StructSpec("PyThreadState", ("PyThreadState", "_ts")),
    StructSpec("_gil_runtime_state", ("_gil_runtime_state",), since=(3, 7)),
    StructSpec("_Py_DebugOffsets", ("_Py_DebugOffsets",), since=(3, 13)),
    # Frames and code.
    StructSpec("PyFrameObject", ("PyFrameObject", "_frame")),
    StructSpec("_PyInterpreterFrame", ("_PyInterpreterFrame",), since=(3, 11)),
    StructSpec("_PyCFrame", ("_PyCFrame",), since=(3, 11), until=(3, 12)),
    StructSpec("PyCodeObject", ("PyCodeObject",)),
    StructSpec("PyFunctionObject", ("PyFunctionObject",)),
    StructSpec("PyCellObject", ("PyCellObject",)),
    StructSpec("PyModuleObject", ("PyModuleObject",)),
    # Exceptions: thread states' stacks of handled ones, exception objects, tracebacks.
    StructSpec("_PyErr_StackItem", ("_PyErr_StackItem", "_err_stackitem"), since=(3, 7)),
    StructSpec("PyBaseExceptionObject", ("PyBaseExceptionObject",)),
    StructSpec("PyTracebackObject", ("PyTracebackObject", "_traceback")),
    # Objects.
    StructSpec("PyObject", ("PyObject", "_object")),
    StructSpec("PyVarObject", ("PyVarObject",)),
    StructSpec("PyTypeObject", ("PyTypeObject", "_typeobject")),
    StructSpec("PyHeapTypeObject", ("PyHeapTypeObject", "_heaptypeobject")),
    StructSpec("PyGC_Head", ("PyGC_Head", "_gc_head")),
    StructSpec("PyASCIIObject", ("PyASCIIObject",), since=(3, 3)),
    StructSpec("PyCompactUnicodeObject", ("PyCompactUnicodeObject",), since=(3, 3)),
    StructSpec("PyUnicodeObject", ("PyUnicodeObject",)),
    StructSpec("PyStringObject", ("PyStringObject",), until=(2, 7)),
    StructSpec("PyBytesObject", ("PyBytesObject",), since=(3, 0)),
    StructSpec("PyIntObject", ("PyIntObject",), until=(2, 7)),
    StructSpec("PyLongObject", ("PyLongObject", "_longobject")),
    StructSpec("PyFloatObject", ("PyFloatObject",)),
    StructSpec("PyTupleObject", ("PyTupleObject",)),
    StructSpec("PyListObject", ("PyListObject",)),
    StructSpec("PyDictObject", ("PyDictObject",)),
    StructSpec("PyDictEntry", ("PyDictEntry",), until=(2, 7)),
    StructSpec("PyDictKeysObject", ("PyDictKeysObject", "_dictkeysobject"), since=(3, 3)),
    StructSpec("PyDictKeyEntry", ("PyDictKeyEntry",), since=(3, 3)),
    StructSpec("PyDictUnicodeEntry", ("PyDictUnicodeEntry",), since=(3, 11)),
    StructSpec("PyDictValues", ("PyDictValues", "_dictvalues"), since=(3, 11)),
    StructSpec("PyDictOrValues", ("PyDictOrValues",), since=(3, 12), until=(3, 12)),
    StructSpec("PyInstanceObject", ("PyInstanceObject",), until=(2, 7)),
    StructSpec("PyClassObject", ("PyClassObject",), until=(2, 7)),
)

# Embedded structs that are never expanded inside another struct: they have their own entry.
NO_EXPAND_TAGS = frozenset({"_is", "_ts", "_PyThreadStateImpl"})

# Scalar typedefs whose size the readers need: (typedef, constant name, since, until).
SIZED_TYPEDEFS: tuple[tuple[str, str, Version, Version | None], ...] = (
    ("digit", "sizeof(digit)", (2, 7), None),
    ("Py_UNICODE", "sizeof(Py_UNICODE)", (2, 0), (3, 12)),
    ("_Py_CODEUNIT", "sizeof(_Py_CODEUNIT)", (3, 6), None),
    ("_PyStackRef", "sizeof(_PyStackRef)", (3, 14), None),
)

# Headers whose macros are asked for (when the interpreter has them), after Python.h.
MACRO_HEADERS = ("internal/pycore_stackref.h", "internal/pycore_long.h")
_MACRO_LINE = re.compile(r"^#define (\w+) (.+)$")
_CAST = re.compile(r"\(\s*(?:unsigned\s+|signed\s+)?[A-Za-z_]\w*\s*\)(?=\s*[\w(])")

# Enumerators collected as constants (by name prefix), with one enumerator per enum that tells
# the scanner the enum was seen: (sentinel enumerator, since).
ENUMERATOR_PREFIXES = ("FRAME_", "PyUnicode_", "DICT_KEYS_", "PY_CODE_LOCATION_INFO_")
ENUM_SENTINELS: tuple[tuple[str, Version], ...] = (
    ("PyUnicode_1BYTE_KIND", (3, 3)),
    ("FRAME_CREATED", (3, 10)),
    ("FRAME_OWNED_BY_THREAD", (3, 11)),
    ("DICT_KEYS_GENERAL", (3, 11)),
    ("PY_CODE_LOCATION_INFO_NONE", (3, 11)),
)

_QUALIFIER_TAGS = frozenset(
    {
        "DW_TAG_typedef",
        "DW_TAG_const_type",
        "DW_TAG_volatile_type",
        "DW_TAG_restrict_type",
        "DW_TAG_atomic_type",
        "DW_TAG_immutable_type",
    }
)
_AGGREGATE_TAGS = frozenset({"DW_TAG_structure_type", "DW_TAG_union_type"})
_DW_OP_PLUS_UCONST = 0x23
_DW_OP_CONSTU = 0x10


class DeriveError(Exception):
    """The DWARF of an interpreter cannot be turned into a layout table."""


# --------------------------------------------------------------------------------------------
# DWARF helpers


def _name(die: DIE) -> str | None:
    attr = die.attributes.get("DW_AT_name")
    if attr is None:
        return None
    value = attr.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _type_of(die: DIE) -> DIE | None:
    if "DW_AT_type" not in die.attributes:
        return None  # e.g. "void" or a typedef of void
    return die.get_DIE_from_attribute("DW_AT_type")


def _strip(die: DIE | None) -> DIE | None:
    """Follow typedefs and qualifiers (const, volatile, restrict, _Atomic) to the real type."""
    seen = 0
    while die is not None and die.tag in _QUALIFIER_TAGS:
        die = _type_of(die)
        seen += 1
        if seen > 64:
            raise DeriveError("typedef loop in DWARF")
    return die


def _is_declaration(die: DIE) -> bool:
    attr = die.attributes.get("DW_AT_declaration")
    return bool(attr is not None and attr.value)


def _member_location(member: DIE) -> int:
    """Byte offset of a member in its parent (0 for union members, which have none)."""
    attr = member.attributes.get("DW_AT_data_member_location")
    if attr is None:
        return 0
    value = attr.value
    if isinstance(value, int):
        return value
    # DWARF 2/3 style location expression: DW_OP_plus_uconst N (or DW_OP_constu N).
    expr = list(value)
    if expr and expr[0] in (_DW_OP_PLUS_UCONST, _DW_OP_CONSTU):
        offset, _ = uleb(bytes(expr), 1)
        return offset
    raise DeriveError(f"unsupported DW_AT_data_member_location expression {expr!r}")


def _byte_size(die: DIE | None) -> int | None:
    """sizeof() of a type DIE, following typedefs and qualifiers; None if unknown."""
    die = _strip(die)
    if die is None:
        return None
    attr = die.attributes.get("DW_AT_byte_size")
    if attr is not None:
        return int(attr.value)
    if die.tag == "DW_TAG_array_type":
        elem = _byte_size(_type_of(die))
        if elem is None:
            return None
        count = 1
        for sub in die.iter_children():
            if sub.tag != "DW_TAG_subrange_type":
                continue
            if "DW_AT_count" in sub.attributes:
                count *= int(sub.attributes["DW_AT_count"].value)
            elif "DW_AT_upper_bound" in sub.attributes:
                count *= int(sub.attributes["DW_AT_upper_bound"].value) + 1
            else:
                return None  # flexible array member
        return elem * count
    if die.tag == "DW_TAG_pointer_type":
        return die.cu.structs.address_size
    return None


_FOREIGN_CACHE: dict[tuple[int, int], bool] = {}


def _is_foreign(die: DIE) -> bool:
    """Whether a type is declared outside the interpreter's sources (libc, compiler headers).

    Such types (``pthread_mutex_t``, ``sigset_t``...) are recorded by offset but not expanded.
    System and compiler headers live in directories named ``include`` (``/usr/include/...``,
    ``/usr/lib/gcc/<triplet>/<n>/include``); CPython's own are under ``Include`` (capital I),
    ``Python``, ``Objects``... whether the build used relative or absolute paths.
    """
    attr = die.attributes.get("DW_AT_decl_file")
    if attr is None:
        return False
    cu = die.cu
    key = (cu.cu_offset, int(attr.value))
    cached = _FOREIGN_CACHE.get(key)
    if cached is not None:
        return cached
    foreign = False
    program = cu.dwarfinfo.line_program_for_CU(cu)
    if program is not None:
        version = program.header["version"]
        files = program["file_entry"]
        dirs = program["include_directory"]
        # DWARF 5 numbers files and directories from 0 (0 = the CU itself / its directory);
        # earlier versions number files from 1 and directories from 1 (0 = the CU directory).
        index = int(attr.value) - (0 if version >= 5 else 1)
        if 0 <= index < len(files):
            dir_index = files[index].dir_index
            if version >= 5:
                directory = dirs[dir_index] if dir_index < len(dirs) else b""
            else:
                directory = dirs[dir_index - 1] if 0 < dir_index <= len(dirs) else b""
            path = bytes(directory) + b"/" + bytes(files[index].name)
            foreign = b"include" in path.split(b"/")[:-1]
    _FOREIGN_CACHE[key] = foreign
    return foreign


def _bit_position(member: DIE) -> int:
    """Position of a bitfield's least significant bit, in bits from the start of its parent."""
    attrs = member.attributes
    bit_size = int(attrs["DW_AT_bit_size"].value)
    if "DW_AT_data_bit_offset" in attrs:  # DWARF 4+: counted from the start of the parent
        return int(attrs["DW_AT_data_bit_offset"].value)
    # DWARF 2/3 (and GCC's DWARF 4 default): DW_AT_bit_offset counts from the most significant
    # bit of a storage unit of DW_AT_byte_size bytes at DW_AT_data_member_location.
    storage = attrs.get("DW_AT_byte_size")
    storage_size = int(storage.value) if storage is not None else _byte_size(_type_of(member))
    if storage_size is None:
        raise DeriveError(f"bitfield {_name(member)!r} without a storage size")
    bit_offset = int(attrs.get("DW_AT_bit_offset").value) if "DW_AT_bit_offset" in attrs else 0
    return _member_location(member) * 8 + storage_size * 8 - bit_offset - bit_size


@dataclass
class StructLayout:
    """A resolved structure: its size, member offsets and bitfields."""

    size: int
    fields: dict[str, int]
    bitfields: dict[str, dict[str, int]]

    def to_json(self) -> dict[str, object]:
        """The JSON form: bitfields only when there are some."""
        out: dict[str, object] = {"size": self.size, "fields": self.fields}
        if self.bitfields:
            out["bitfields"] = self.bitfields
        return out


def _count_members(aggregate: DIE, budget: int) -> int:
    """Members of a struct through all levels of embedding; stops counting past ``budget``."""
    count = 0
    for member in aggregate.iter_children():
        if member.tag != "DW_TAG_member":
            continue
        count += 1
        mtype = _strip(_type_of(member))
        if mtype is not None and mtype.tag in _AGGREGATE_TAGS and not _is_declaration(mtype):
            count += _count_members(mtype, budget - count)
        if count > budget:
            break
    return count


def _walk_members(
    aggregate: DIE, base: int, prefix: str, layout: StructLayout, depth: int = 0
) -> None:
    if depth > 32:
        raise DeriveError("struct nesting too deep")
    for member in aggregate.iter_children():
        if member.tag != "DW_TAG_member":
            continue
        name = _name(member)
        if "DW_AT_bit_size" in member.attributes:
            if name is None:
                continue  # unnamed padding bitfield (": 24")
            bit = _bit_position(member) + base * 8
            layout.bitfields[prefix + name] = {
                "offset": bit // 8,
                "bit_offset": bit % 8,
                "bit_size": int(member.attributes["DW_AT_bit_size"].value),
            }
            continue
        offset = base + _member_location(member)
        if name is not None:
            layout.fields.setdefault(prefix + name, offset)
        mtype = _strip(_type_of(member))
        if mtype is None or mtype.tag not in _AGGREGATE_TAGS or _is_declaration(mtype):
            continue
        if name is None:
            # Anonymous struct/union: its members are named as if they were the parent's.
            _walk_members(mtype, offset, prefix, layout, depth + 1)
            continue
        if (
            _name(mtype) in NO_EXPAND_TAGS
            or _is_foreign(mtype)
            or _count_members(mtype, EXPAND_LIMIT) > EXPAND_LIMIT
        ):
            continue
        _walk_members(mtype, offset, f"{prefix}{name}.", layout, depth + 1)


def resolve_struct(die: DIE) -> StructLayout:
    """Resolve a complete struct/union DIE into its layout."""
    size = _byte_size(die)
    if size is None:
        raise DeriveError(f"struct {_name(die)!r} has no size")
    layout = StructLayout(size=size, fields={}, bitfields={})
    _walk_members(die, 0, "", layout)
    layout.fields = dict(sorted(layout.fields.items()))
    layout.bitfields = dict(sorted(layout.bitfields.items()))
    return layout


# --------------------------------------------------------------------------------------------
# Scanning


@dataclass
class Derived:
    """Everything found in one interpreter's DWARF."""

    structs: dict[str, StructLayout]
    constants: dict[str, int]
    seconds: float
    cus_scanned: int
    cus_total: int


class _Scanner:
    """Scans compilation units' top-level DIEs for the wanted names, resolving as it goes."""

    def __init__(self, version: Version, specs: tuple[StructSpec, ...]) -> None:
        self.version = version
        self.specs = specs
        self.by_name: dict[str, StructSpec] = {}
        for spec in specs:
            for name in spec.names:
                self.by_name[name] = spec
        self.structs: dict[str, StructLayout] = {}
        # Struct tags that a wanted typedef names but whose definition was not in that CU.
        self.pending_tags: dict[str, StructSpec] = {}
        self.typedef_sizes: dict[str, int] = {}
        self.enumerators: dict[str, int] = {}
        self.sized = {name: const for name, const, _, _ in SIZED_TYPEDEFS}

    def done(self) -> bool:
        """True when everything expected for this version has been found."""
        v = self.version
        if any(s.expected(v) and s.key not in self.structs for s in self.specs):
            return False
        for name, _, since, until in SIZED_TYPEDEFS:
            if since <= v and (until is None or v <= until) and name not in self.typedef_sizes:
                return False
        return all(name in self.enumerators for name, since in ENUM_SENTINELS if since <= v)

    def _take(self, spec: StructSpec, die: DIE) -> None:
        if spec.key not in self.structs:
            self.structs[spec.key] = resolve_struct(die)

    def visit(self, die: DIE) -> None:
        """Look at one top-level DIE of a compilation unit."""
        tag = die.tag
        if tag == "DW_TAG_typedef":
            name = _name(die)
            if name is None:
                return
            if name in self.sized and name not in self.typedef_sizes:
                size = _byte_size(die)
                if size is not None:
                    self.typedef_sizes[name] = size
            spec = self.by_name.get(name)
            if spec is None or spec.key in self.structs:
                return
            target = _strip(die)
            if target is None or target.tag not in _AGGREGATE_TAGS:
                return
            if not _is_declaration(target):
                self._take(spec, target)
            elif (tag_name := _name(target)) is not None:
                self.pending_tags.setdefault(tag_name, spec)
        elif tag in _AGGREGATE_TAGS:
            name = _name(die)
            if name is None or _is_declaration(die):
                return
            spec = self.by_name.get(name) or self.pending_tags.get(name)
            if spec is not None and spec.key not in self.structs:
                self._take(spec, die)
        elif tag == "DW_TAG_enumeration_type":
            for child in die.iter_children():
                if child.tag != "DW_TAG_enumerator":
                    continue
                name = _name(child)
                if name is None or not name.startswith(ENUMERATOR_PREFIXES):
                    continue
                value = int(child.attributes["DW_AT_const_value"].value)
                previous = self.enumerators.setdefault(name, value)
                if previous != value:
                    raise DeriveError(f"enumerator {name} has two values: {previous}, {value}")

    def constants(self) -> dict[str, int]:
        """The constants object: typedef sizes, derived facts and enumerators."""
        out: dict[str, int] = {}
        for name, size in self.typedef_sizes.items():
            out[self.sized[name]] = size
        digit = self.typedef_sizes.get("digit")
        if digit is not None:
            out["PyLong_SHIFT"] = 30 if digit == 4 else 15
        out.update(self.enumerators)
        return dict(sorted(out.items()))


def _debug_roots(elf_path: Path) -> list[Path]:
    """Where separate debug files may live: ``usr/lib/debug`` of every directory above the ELF
    that has one (the sysroot it was installed into, such as a debootstrapped tree), then the
    host's ``/usr/lib/debug``."""
    roots = [d / "usr/lib/debug" for d in elf_path.resolve().parents if d != Path("/")]
    roots.append(Path("/usr/lib/debug"))
    return [r for r in roots if r.is_dir()]


def _separate_debug_file(elf: ELFFile, elf_path: Path) -> Path | None:
    """The ``usr/lib/debug/.build-id/xx/rest.debug`` file of a stripped ELF, if installed."""
    for section in elf.iter_sections():
        if section.header.sh_type != "SHT_NOTE":
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                build_id = str(note["n_desc"])
                for root in _debug_roots(elf_path):
                    path = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
                    if path.is_file():
                        return path
                return None
    return None


def derive(elf_path: Path, version: Version, specs: tuple[StructSpec, ...] = STRUCTS) -> Derived:
    """Resolve the structures in ``specs`` and the constants from the DWARF in ``elf_path``.

    ``version`` only decides what to expect, so that the scan can stop early. A stripped file
    is read through its separate debug file (by GNU build id) when one is installed.
    """
    start = time.perf_counter()
    _FOREIGN_CACHE.clear()  # keyed by CU offset: valid for one file only
    with elf_path.open("rb") as stream:
        elf = ELFFile(stream)
        if elf.get_section_by_name(".debug_info") is None:
            debug_file = _separate_debug_file(elf, elf_path)
            if debug_file is None:
                raise DeriveError(
                    f"{elf_path} has no .debug_info (stripped?) and no separate debug file "
                    "under usr/lib/debug/.build-id (of its sysroot or of this machine)"
                )
            return derive(debug_file, version, specs)
        dwarf = elf.get_dwarf_info()
        scanner = _Scanner(version, specs)
        units = list(dwarf.iter_CUs())
        scanned = 0
        for unit in units:
            scanned += 1
            for die in unit.get_top_DIE().iter_children():
                scanner.visit(die)
            if scanner.done():
                break
    return Derived(
        structs=dict(sorted(scanner.structs.items())),
        constants=scanner.constants(),
        seconds=time.perf_counter() - start,
        cus_scanned=scanned,
        cus_total=len(units),
    )


# --------------------------------------------------------------------------------------------
# Macros, from the installed headers


def header_dirs(elf_path: Path, version: Version) -> tuple[list[Path], Path | None]:
    """The interpreter's header directories (Python.h's, then pyconfig.h's where Debian puts it
    apart) found above its ELF file, and the sysroot they belong to (None for this machine)."""
    name = f"python{version[0]}.{version[1]}"
    for directory in elf_path.parents:
        include = directory / "include" / name
        if (include / "Python.h").is_file():
            dirs = [include]
            multiarch = directory / "include" / "x86_64-linux-gnu" / name
            if multiarch.is_dir():
                dirs.append(multiarch)
            root = directory.parent if directory.name == "usr" else None
            return dirs, root if root is not None and root != Path("/") else None
    return [], None


def _evaluate(name: str, defines: dict[str, str], depth: int = 0) -> int | None:
    """The integer value of a macro as the preprocessor defined it (casts, suffixes and other
    macros resolved); None when it is not an integer constant expression."""
    text = defines.get(name)
    if text is None or depth > 16:
        return None
    expr = _CAST.sub("", text)
    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b", r"\1", expr)
    unresolved = []

    def substitute(match: re.Match[str]) -> str:
        value = _evaluate(match.group(0), defines, depth + 1)
        if value is None:
            unresolved.append(match.group(0))
            return "0"
        return str(value)

    expr = re.sub(r"\b[A-Za-z_]\w*\b", substitute, expr)
    if unresolved or not re.fullmatch(r"[0-9a-fA-FxX\s()+\-*/%<>&|^~]*", expr):
        return None
    try:
        return int(eval(expr, {"__builtins__": {}}))  # digits and operators only, checked above
    except (SyntaxError, ZeroDivisionError, TypeError):
        return None


def derive_macros(names: list[str], elf_path: Path, version: Version) -> dict[str, int]:
    """The integer macros among `names` that the interpreter's headers define, as its own build
    saw them (the C preprocessor over Python.h and MACRO_HEADERS, with Py_BUILD_CORE)."""
    dirs, sysroot = header_dirs(elf_path, version)
    cc = shutil.which("cc") or shutil.which("gcc")
    if not dirs or not names or cc is None:
        return {}
    source = '#include "Python.h"\n' + "".join(
        f'#include "{h}"\n' for h in MACRO_HEADERS if (dirs[0] / h).is_file()
    )
    command = [cc, "-E", "-dM", "-DPy_BUILD_CORE", "-x", "c", "-", *(f"-I{d}" for d in dirs)]
    if sysroot is not None:
        command.append(f"--sysroot={sysroot}")
    result = subprocess.run(
        command, input=source, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise DeriveError(f"the C preprocessor failed on {dirs[0]}: {result.stderr[-500:]}")
    defines = {}
    for line in result.stdout.splitlines():
        match = _MACRO_LINE.match(line)
        if match:
            defines[match.group(1)] = match.group(2)
    found = {name: _evaluate(name, defines) for name in names}
    return {name: value for name, value in found.items() if value is not None}


# --------------------------------------------------------------------------------------------
# Finding interpreters and writing tables

_LIB_RE = re.compile(r"^libpython(\d+)\.(\d+)[a-z]*\.so(\.[\d.]+)?$")
_EXE_RE = re.compile(r"^python(\d+)\.(\d+)[a-z]*$")
_DIR_RE = re.compile(r"^(\d+)\.(\d+)(\.\d+)?")


def find_elf(target: Path) -> tuple[Path, Version | None]:
    """The ELF file to read for ``target`` (a prefix or a file) and the version its name says."""
    if target.is_file():
        target = target.resolve()  # libpython3.12.so -> libpython3.12.so.1.0
        for regex in (_LIB_RE, _EXE_RE):
            match = regex.match(target.name)
            if match:
                return target, (int(match.group(1)), int(match.group(2)))
        return target, None
    libs = sorted(
        p for p in (target / "lib").glob("libpython*.so*") if _LIB_RE.match(p.name) and p.is_file()
    )
    # Prefer the fully versioned soname (libpython3.12.so.1.0) over the dev symlink.
    libs.sort(key=lambda p: (p.is_symlink(), -len(p.name)))
    if libs:
        match = _LIB_RE.match(libs[0].name)
        assert match is not None
        return libs[0], (int(match.group(1)), int(match.group(2)))
    exes = sorted(p for p in (target / "bin").glob("python*") if _EXE_RE.match(p.name))
    if exes:
        match = _EXE_RE.match(exes[0].name)
        assert match is not None
        return exes[0].resolve(), (int(match.group(1)), int(match.group(2)))
    raise DeriveError(f"no libpython*.so or bin/pythonX.Y under {target}")


def render(version: Version, elf_path: Path, derived: Derived) -> str:
    """The JSON text of a layout table (deterministic)."""
    doc = {
        "python": f"{version[0]}.{version[1]}",
        "derived_from": f"{elf_path.name} (DWARF)",
        "structs": {key: layout.to_json() for key, layout in derived.structs.items()},
        "constants": derived.constants,
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def wanted_specs() -> tuple[StructSpec, ...]:
    """The StructSpecs of the structs the engine declares it reads."""
    wanted = engine_fields.wanted_structs()
    known = {spec.key for spec in STRUCTS}
    unknown = sorted(wanted - known)
    if unknown:
        raise DeriveError(f"declared structs without a StructSpec (add them): {unknown}")
    return tuple(spec for spec in STRUCTS if spec.key in wanted)


def derive_one(target: Path, out_dir: Path, version: Version | None = None) -> Path:
    """Derive the table for one interpreter, check it against the engine's declarations and
    write it; returns the written path."""
    elf_path, named = find_elf(target)
    version = version or named
    if version is None:
        match = _DIR_RE.match(target.name)
        if match is None:
            raise DeriveError(f"cannot tell the Python version of {target}; pass --version")
        version = (int(match.group(1)), int(match.group(2)))
    specs = wanted_specs()
    derived = derive(elf_path, version, specs)
    macros = [n for n in engine_fields.wanted_constants() if n not in derived.constants]
    derived.constants.update(derive_macros(macros, elf_path, version))
    derived.constants = dict(sorted(derived.constants.items()))
    missing = [s.key for s in specs if s.expected(version) and s.key not in derived.structs]
    text = render(version, elf_path, derived)
    problems = engine_fields.check(parse_table(version, json.loads(text)))
    if problems:
        raise DeriveError(
            f"the table of {elf_path} does not satisfy the engine's declarations: "
            + "; ".join(problems)
            + " (for C macros, install the interpreter's headers: its -dev package)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{version[0]}.{version[1]}.json"
    out.write_text(text, encoding="utf-8")
    nfields = sum(len(s.fields) for s in derived.structs.values())
    print(
        f"{out}: {len(derived.structs)} structs, {nfields} fields, "
        f"{len(derived.constants)} constants from {elf_path.name} "
        f"({derived.cus_scanned}/{derived.cus_total} CUs, {derived.seconds:.1f}s)",
        file=sys.stderr,
    )
    if missing:
        print(f"  warning: not found for {version}: {', '.join(missing)}", file=sys.stderr)
    return out


def _parse_version(text: str) -> Version:
    match = re.fullmatch(r"(\d+)\.(\d+)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected MAJOR.MINOR, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets",
        nargs="*",
        type=Path,
        help=f"interpreter prefixes or ELF files (default: {DEFAULT_PREFIXES_GLOB})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--version", type=_parse_version, help="MAJOR.MINOR, when the file name does not say"
    )
    args = parser.parse_args(argv)
    targets: list[Path] = args.targets or sorted(
        Path(DEFAULT_PREFIXES_GLOB).expanduser().parent.glob("*")
    )
    if not targets:
        parser.error(f"no interpreters given and none under {DEFAULT_PREFIXES_GLOB}")
    if args.version and len(targets) > 1:
        parser.error("--version needs exactly one target")
    status = 0
    for target in targets:
        try:
            derive_one(target.expanduser(), args.out, args.version)
        except (DeriveError, OSError) as exc:
            print(f"error: {target}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
