"""The per-version CPython layout tables (triage/cpython/layouts/*.json) and their loader.

(a) every committed table loads and has the fields that version's readers rely on;
(b) offsets agree with gdb's own view of the interpreters' DWARF (``ptype/o``), and the
    derivation handles DWARF 2-5 bitfields like gdb does on a small compiled struct;
(c) rerunning scripts/derive_layouts.py on an installed interpreter reproduces the committed
    table byte for byte (so nobody edits a table by hand, and the script keeps working).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from triage.cpython.fields import check, wanted_structs
from triage.cpython.layout import (
    Bitfield,
    Layout,
    LayoutError,
    MissingField,
    UnknownLayout,
    available_versions,
    load_layout,
)
from triage.cpython.model import Model

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_DIR = ROOT / "triage" / "cpython" / "layouts"
SCRIPT = ROOT / "scripts" / "derive_layouts.py"
PYENV = Path("~/.pyenv/versions").expanduser()

#: The versions whose tables are committed (one per installed interpreter on the dev machines).
EXPECTED_VERSIONS = [
    (2, 7),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
    (3, 14),
    (3, 15),
]

TABLES = sorted(LAYOUT_DIR.glob("*.json"))


def _version_of(path: Path) -> tuple[int, int]:
    major, minor = path.stem.split(".")
    return int(major), int(minor)


@functools.cache
def _load_script() -> ModuleType:
    """scripts/derive_layouts.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("derive_layouts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["derive_layouts"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _prefix(version: str) -> Path:
    return PYENV / version


def _libpython(version: str) -> Path | None:
    libs = sorted((_prefix(version) / "lib").glob("libpython*.so.1.0"))
    return libs[0] if libs else None


# ------------------------------------------------------------------------------------------
# (a) the committed tables


def test_every_expected_version_has_a_table() -> None:
    assert available_versions() == sorted(available_versions())
    missing = [v for v in EXPECTED_VERSIONS if v not in available_versions()]
    assert not missing, f"no layout table for {missing}; run scripts/derive_layouts.py"


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_table_is_well_formed(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text) < 512 * 1024, "layout tables must stay small"
    doc = json.loads(text)
    # Deterministic formatting: exactly what the script writes.
    assert text == json.dumps(doc, indent=1, sort_keys=True) + "\n"
    assert doc["python"] == path.stem
    assert doc["derived_from"].endswith("(DWARF)")
    for name, struct in doc["structs"].items():
        size = struct["size"]
        assert size > 0, name
        for field, offset in struct["fields"].items():
            # A flexible array member may sit at the very end.
            assert 0 <= offset <= size, (name, field, offset, size)
        for field, bf in struct.get("bitfields", {}).items():
            assert 0 <= bf["bit_offset"] < 8, (name, field)
            assert 0 < bf["bit_size"] <= 64, (name, field)
            assert bf["offset"] * 8 + bf["bit_offset"] + bf["bit_size"] <= size * 8, (name, field)


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_table_satisfies_every_declaration(path: Path) -> None:
    """Every member a reader declares for this version's model resolves in its table (the
    declarations are the one list of what the engine reads)."""
    layout = load_layout(*_version_of(path))
    assert check(layout) == []
    assert layout.constant("PyLong_SHIFT") == 30


#: What each version's model must say (see triage/cpython/model.py): frame model, shim owners
#: of entry frames, line table, int and dict representations, stack-reference tag bits.
MODEL_EXPECTED = {
    (2, 7): ("frame_objects", set(), "lnotab_unsigned", "py2", "py2", "dictoffset", 0),
    (3, 6): ("frame_objects", set(), "lnotab", "ob_size", "dk_size", "dictoffset", 0),
    (3, 9): ("frame_objects", set(), "lnotab", "ob_size", "dk_size", "dictoffset", 0),
    (3, 10): ("frame_objects", set(), "linetable_310", "ob_size", "dk_size", "dictoffset", 0),
    (3, 11): ("cframe", set(), "locations", "ob_size", "log2", "values_before", 0),
    (3, 12): ("cframe", {3}, "locations", "lv_tag", "log2", "dict_or_values", 0),
    (3, 13): ("thread_state", {3}, "locations", "lv_tag", "log2", "inline_values", 0),
    (3, 14): ("thread_state", {3, 4}, "locations", "lv_tag", "log2", "inline_values", 3),
    (3, 15): ("thread_state", {3}, "locations", "lv_tag", "log2", "inline_values", 3),
}


@pytest.mark.parametrize("version", sorted(MODEL_EXPECTED), ids=lambda v: f"{v[0]}.{v[1]}")
def test_model_choices(version: tuple[int, int]) -> None:
    if version not in available_versions():
        pytest.skip(f"no table for {version}")
    model = Model.of(load_layout(*version))
    frames, shims, table, ints, keys, dicts, tags = MODEL_EXPECTED[version]
    assert model.frames == frames
    assert model.shim_owners == shims
    assert model.line_table == table
    assert model.ints == ints
    assert model.dict_keys == keys
    assert model.instance_dicts == dicts
    assert model.stackref_tags == tags
    assert model.entry_flag == (version == (3, 11))
    assert model.py2_objects == (version == (2, 7))
    assert model.qualnames_from_self == (version < (3, 11))
    assert model.gil == (
        "interpreter" if version >= (3, 12) else "runtime" if version >= (3, 7) else "symbol"
    )
    assert not model.free_threaded
    assert model.raised == ("object" if version >= (3, 12) else "triple")
    assert model.handled == (
        "items" if version >= (3, 11) else "item_triples" if version >= (3, 7) else "thread_state"
    )


def test_stack_references_decode_as_the_headers_define() -> None:
    """3.14+: low bits are tags (Py_TAG_BITS); Py_INT_TAG marks an unboxed int shifted left
    by two; NULL is the refcount tag alone."""
    if (3, 14) not in available_versions():
        pytest.skip("no 3.14 table")
    model = Model.of(load_layout(3, 14))
    assert model.untag(0x7F0012345679) == 0x7F0012345678  # a pointer with Py_TAG_REFCNT
    assert model.untag(0x7F0012345678) == 0x7F0012345678
    assert model.untag(1) == 0  # PyStackRef_NULL
    assert model.untag((42 << 2) | 3) == 0
    assert model.unboxed_int((42 << 2) | 3) == 42
    assert model.unboxed_int(((-7 << 2) | 3) & (2**64 - 1)) == -7
    assert model.unboxed_int(0x7F0012345679) is None
    old = Model.of(load_layout(3, 13))
    assert old.untag(0x7F0012345679) == 0x7F0012345679
    assert old.unboxed_int(0xAB) is None


def test_declarations_cover_what_the_derivation_derives() -> None:
    """scripts/derive_layouts.py knows the C names of every declared struct, and derives
    nothing the engine does not declare."""
    script = _load_script()
    assert {spec.key for spec in script.wanted_specs()} == wanted_structs()
    assert {spec.key for spec in script.STRUCTS} == wanted_structs()


def test_fields_that_must_not_exist() -> None:
    """Absence is information: readers branch on ``has``."""
    l27, l310, l312, l313 = (load_layout(*v) for v in ((2, 7), (3, 10), (3, 12), (3, 13)))
    assert not l27.has("_PyRuntimeState")
    assert not l27.has("PyThreadState", "native_thread_id")
    assert not l310.has("_PyInterpreterFrame")
    assert not l310.has("PyThreadState", "native_thread_id")
    assert not l312.has("PyThreadState", "current_frame")
    assert not l312.has("_PyRuntimeState", "gilstate.tstate_current")
    assert not l313.has("_PyCFrame")
    assert not l313.has("PyThreadState", "cframe")
    assert not l313.has("_PyInterpreterFrame", "prev_instr")


def test_known_values() -> None:
    """A few offsets that were checked by hand against the headers (x86-64)."""
    l312 = load_layout(3, 12)
    assert l312.offset("PyObject", "ob_type") == 8
    assert l312.offset("PyThreadState", "next") == 8
    assert l312.offset("PyThreadState", "interp") == 16
    assert l312.offset("PyThreadState", "cframe") == 56
    assert l312.size("PyASCIIObject") == 40
    assert tuple(l312.bitfield("PyASCIIObject", "state.kind")) == (32, 2, 3)
    assert l312.offset("PyASCIIObject", "state") == 32
    l27 = load_layout(2, 7)
    assert l27.offset("PyThreadState", "frame") == 16
    assert l27.offset("PyStringObject", "ob_sval") == 36
    l313 = load_layout(3, 13)
    assert l313.offset("_PyRuntimeState", "debug_offsets") == 0
    assert l313.offset("_Py_DebugOffsets", "cookie") == 0
    assert l313.offset("_Py_DebugOffsets", "version") == 8


# ------------------------------------------------------------------------------------------
# The loader's API


def test_loader_api() -> None:
    layout = load_layout(3, 12)
    assert isinstance(layout, Layout)
    assert layout.version == (3, 12)
    assert load_layout(3, 12) is layout  # cached
    assert layout.derived_from == "libpython3.12.so.1.0 (DWARF)"
    assert layout.has("PyThreadState")
    assert layout.has("struct _gil_runtime_state", "locked")
    assert layout.offset("struct _gil_runtime_state", "locked") == layout.offset(
        "_gil_runtime_state", "locked"
    )
    assert layout.has("PyASCIIObject", "state.kind")  # bitfields count for has()
    assert "PyThreadState" in layout.structs()
    assert layout.fields("PyThreadState")["next"] == 8
    assert layout.has_constant("PyLong_SHIFT")
    assert not layout.has_constant("NO_SUCH_CONSTANT")
    with pytest.raises(MissingField, match="no field 'nope'"):
        layout.offset("PyThreadState", "nope")
    with pytest.raises(MissingField, match="no struct 'NoSuchStruct'"):
        layout.size("NoSuchStruct")
    with pytest.raises(MissingField):
        layout.bitfield("PyASCIIObject", "state.nope")
    with pytest.raises(KeyError):
        layout.constant("NO_SUCH_CONSTANT")


def test_unknown_version() -> None:
    with pytest.raises(UnknownLayout) as info:
        load_layout(9, 99)
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, LayoutError)
    message = str(info.value)
    assert message.startswith("no structure layout table for Python 9.99")
    assert "3.12" in message  # lists the versions it has


def test_bitfield_extract() -> None:
    kind = Bitfield(offset=32, bit_offset=2, bit_size=3)
    # interned=1 (bits 0-1), kind=4 (bits 2-4), compact=1 (bit 5), ascii=0, ready=1 (bit 7)
    assert kind.extract(bytes([0b1011_0001])) == 4
    assert kind.nbytes == 1
    straddling = Bitfield(offset=9, bit_offset=0, bit_size=9)
    assert straddling.nbytes == 2
    assert straddling.extract(bytes([0xFF, 0x03])) == 0x1FF
    with pytest.raises(ValueError):
        straddling.extract(b"\x00")


# ------------------------------------------------------------------------------------------
# (b) cross-check with gdb

_GDB_LINE = re.compile(r"^/\*\s*(?:(\d+)(?::\s*(\d+))?\s*\|)?\s*(\d+)\s*\*/(.*)$")
_GDB_FUNC_PTR = re.compile(r"\(\*\s*(\w+)\s*(?:\[[^\]]*\])*\)")


def _decl_name(decl: str) -> str | None:
    decl = decl.strip().rstrip(";").strip()
    match = _GDB_FUNC_PTR.search(decl)
    if match:
        return match.group(1)
    decl = re.sub(r"\s*:\s*\d+$", "", decl)  # bitfield width
    decl = re.sub(r"(\[[^\]]*\])+$", "", decl)  # array dimensions
    names = re.findall(r"\w+", decl)
    return names[-1] if names else None


_GDB_TOTAL = re.compile(r"^/\*\s*total size \(bytes\):\s*(\d+)\s*\*/$")

_Block = tuple[dict[str, "int | None"], dict[str, tuple[int, int]], int, "str | None", int]


def _parse_block(lines: list[str], i: int) -> _Block:
    """Members of one ``{ ... } name;`` block of ``ptype/o`` output, from line ``i``.

    Returns (fields, bitfields, size, name, next line). Members of a union have no offset in
    gdb's output (None here): they sit at the union's offset, filled in by the caller.
    """
    fields: dict[str, int | None] = {}
    bitfields: dict[str, tuple[int, int]] = {}
    size = -1
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("/* XXX"):
            continue
        total = _GDB_TOTAL.match(line)
        if total:
            size = int(total.group(1))
            continue
        if line.startswith("}"):
            return fields, bitfields, size, _decl_name(line[1:]), i
        match = _GDB_LINE.match(line)
        if not match:
            continue
        offset_text, bit_text, _, decl = match.groups()
        decl = decl.strip()
        offset = int(offset_text) if offset_text is not None else None
        if decl.endswith("{"):
            sub_fields, sub_bits, _, name, i = _parse_block(lines, i)
            prefix = f"{name}." if name else ""  # anonymous aggregates are flattened
            if name:
                fields.setdefault(name, offset)
            for key, value in sub_fields.items():
                fields.setdefault(prefix + key, value if value is not None else offset)
            for key, value in sub_bits.items():
                bitfields[prefix + key] = value
            continue
        name = _decl_name(decl)
        if name is None:
            continue
        if bit_text is not None and offset is not None:
            bitfields[name] = (offset, int(bit_text))
        else:
            fields.setdefault(name, offset)
    raise AssertionError("unterminated struct in gdb output")


def parse_ptype_o(text: str) -> tuple[int, dict[str, int], dict[str, tuple[int, int]]]:
    """(size, {field: offset}, {bitfield: (byte, bit)}) from gdb's ``ptype/o`` of one struct.

    Inline struct/union members are dotted like the tables; anonymous ones are flattened.
    """
    lines = [raw.strip() for raw in text.splitlines() if raw.strip()]
    start = next(n for n, line in enumerate(lines) if "type = " in line)
    fields, bitfields, size, _, _ = _parse_block(lines, start + 1)
    return size, {k: v for k, v in fields.items() if v is not None}, bitfields


GDB_CASES = [
    ("2.7.18", (2, 7), "PyThreadState", "struct _ts"),
    ("2.7.18", (2, 7), "PyFrameObject", "struct _frame"),
    ("2.7.18", (2, 7), "PyStringObject", "PyStringObject"),
    ("3.8.18", (3, 8), "_PyRuntimeState", "_PyRuntimeState"),
    ("3.12.1", (3, 12), "PyThreadState", "struct _ts"),
    ("3.12.1", (3, 12), "PyASCIIObject", "PyASCIIObject"),
    ("3.12.1", (3, 12), "PyInterpreterState", "struct _is"),
    ("3.12.1", (3, 12), "_PyInterpreterFrame", "struct _PyInterpreterFrame"),
    ("3.13.0", (3, 13), "PyThreadState", "struct _ts"),
    ("3.13.0", (3, 13), "_Py_DebugOffsets", "_Py_DebugOffsets"),
    ("3.13.0", (3, 13), "PyCodeObject", "PyCodeObject"),
]


@pytest.mark.parametrize(
    ("interp", "version", "struct", "gdb_type"),
    GDB_CASES,
    ids=[f"{c[0]}-{c[2]}" for c in GDB_CASES],
)
def test_offsets_match_gdb(
    interp: str, version: tuple[int, int], struct: str, gdb_type: str
) -> None:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.skip("gdb is not installed (apt-get install gdb) - cannot cross-check offsets")
    lib = _libpython(interp)
    if lib is None:
        pytest.skip(f"interpreter {_prefix(interp)} is not installed")
    result = subprocess.run(
        [
            gdb,
            "-batch",
            "-nx",
            "-ex",
            "set max-value-size unlimited",
            "-ex",
            f"ptype/o {gdb_type}",
            str(lib),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "type = " in result.stdout, result.stderr
    size, fields, bitfields = parse_ptype_o(result.stdout)
    layout = load_layout(*version)
    assert layout.size(struct) == size
    ours = layout.fields(struct)
    top_level = [name for name in fields if "." not in name]
    assert top_level, result.stdout[:2000]
    missing = [name for name in top_level if name not in ours]
    assert not missing, f"gdb shows members the table lacks: {missing}"
    compared = {name: (ours[name], offset) for name, offset in fields.items() if name in ours}
    wrong = {name: pair for name, pair in compared.items() if pair[0] != pair[1]}
    assert not wrong, f"(table, gdb) offsets differ: {wrong}"
    for name, (byte, bit) in bitfields.items():
        bf = layout.bitfield(struct, name)
        assert (bf.offset, bf.bit_offset) == (byte, bit), name


_BITFIELD_C = r"""
#include <pthread.h>
struct inner { int a; long b; };
typedef struct {
    long head;
    struct { unsigned int x:2; unsigned int y:3; unsigned int :3;
             unsigned int z:9; unsigned int w:1; } st;
    union { long u1; int u2[2]; };
    struct inner in;
    pthread_mutex_t mutex;
    const volatile struct inner *ptr;
    unsigned long long big:40, top:24;
    char tail[];
} T;
T t;
"""


@pytest.mark.parametrize("dwarf", [2, 3, 4, 5])
def test_derivation_on_compiled_struct(tmp_path: Path, dwarf: int) -> None:
    """Bitfields (DW_AT_bit_offset and DW_AT_data_bit_offset), anonymous unions, nesting."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) to build the test object")
    source = tmp_path / "t.c"
    source.write_text(_BITFIELD_C)
    obj = tmp_path / f"t{dwarf}.o"
    subprocess.run([cc, f"-gdwarf-{dwarf}", "-c", str(source), "-o", str(obj)], check=True)
    script = _load_script()
    derived = script.derive(obj, (0, 0), specs=(script.StructSpec("T", ("T",)),))
    t = derived.structs["T"]
    assert t.size == 96
    assert t.fields == {
        "head": 0,
        "st": 8,
        "u1": 16,
        "u2": 16,
        "in": 24,
        "in.a": 24,
        "in.b": 32,
        "mutex": 40,  # a libc type: offset only, not expanded
        "ptr": 80,
        "tail": 96,
    }
    assert t.bitfields == {
        "st.x": {"offset": 8, "bit_offset": 0, "bit_size": 2},
        "st.y": {"offset": 8, "bit_offset": 2, "bit_size": 3},
        "st.z": {"offset": 9, "bit_offset": 0, "bit_size": 9},
        "st.w": {"offset": 10, "bit_offset": 1, "bit_size": 1},
        "big": {"offset": 88, "bit_offset": 0, "bit_size": 40},
        "top": {"offset": 93, "bit_offset": 0, "bit_size": 24},
    }
    # Reading a value with the documented recipe.
    raw = (0b1_0110_1011 << 8 | 0b101_10) | (1 << 17)  # y=5 x=2, z=0x16B, w=1
    mem = bytes(8) + raw.to_bytes(4, "little")
    for name, value in {"st.x": 2, "st.y": 5, "st.z": 0x16B, "st.w": 1}.items():
        bf = Bitfield(**t.bitfields[name])
        assert bf.extract(mem[bf.offset :]) == value, name


# ------------------------------------------------------------------------------------------
# (c) drift: the script reproduces the committed tables

DRIFT_CASES = [("2.7.18", "2.7"), ("3.13.0", "3.13")]  # the fastest one, and the newest


@pytest.mark.parametrize(("interp", "table"), DRIFT_CASES, ids=[c[0] for c in DRIFT_CASES])
def test_no_drift(tmp_path: Path, interp: str, table: str) -> None:
    prefix = _prefix(interp)
    if _libpython(interp) is None:
        pytest.skip(f"interpreter {prefix} is not installed; cannot rederive {table}.json")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(prefix), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fresh = (tmp_path / f"{table}.json").read_text(encoding="utf-8")
    committed = (LAYOUT_DIR / f"{table}.json").read_text(encoding="utf-8")
    assert fresh == committed, (
        f"{table}.json differs from a fresh derivation; rerun scripts/derive_layouts.py"
    )


@pytest.mark.parametrize("name", ["python3.14", "python3.15"])
def test_no_drift_sid(tmp_path: Path, name: str) -> None:
    """3.14.json and 3.15.json are what the script derives from Debian sid's stripped static
    executables (DWARF from the -dbg packages' debug files, macros from the -dev headers)."""
    import sysroot

    root, why = sysroot.available()
    if root is None:
        pytest.skip(str(why))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), f"{root}/usr/bin/{name}", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    table = name.removeprefix("python")
    fresh = (tmp_path / f"{table}.json").read_text(encoding="utf-8")
    committed = (LAYOUT_DIR / f"{table}.json").read_text(encoding="utf-8")
    assert fresh == committed, f"{table}.json differs from a fresh derivation"
