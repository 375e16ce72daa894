"""Finding the interpreter in a dead process: the binary that holds CPython, its version,
its layout and the address of the interpreter list."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.coredump.symbols import ElfSymbols, load_symbols
from triage.cpython import debug_offsets, version
from triage.cpython.layout import Layout, UnknownLayout, available_versions, load_layout
from triage.cpython.version import PythonVersion
from triage.errors import AddressError, TriageError

_LIBPYTHON = re.compile(r"^libpython\d\.\d+")


class PythonNotFound(TriageError):
    """The core is not of a CPython process, or its interpreter cannot be read."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class PythonBinary:
    """The ELF file holding CPython (libpython or the executable) as loaded in the process."""

    path: str
    local: str
    symbols: ElfSymbols
    bias: int
    start: int
    end: int
    build_id: str | None = None
    """The build-id the core and the file agree on (None when unknown or they differ)."""

    def address(self, name: str) -> int | None:
        value = self.symbols.address_of(name)
        return None if value is None else self.bias + value

    def section(self, name: str) -> tuple[int, int] | None:
        sec = self.symbols.sections.get(name)
        return None if sec is None or not sec.addr else (self.bias + sec.addr, sec.size)


def find_python_binary(
    images: list[LoadedImage],
    files: dict[str, str],
    executable_mapping: str | None,
    build_ids: dict[str, str] | None = None,
) -> PythonBinary | None:
    """libpythonX.Y if loaded (shared builds), else the executable if it exports CPython."""
    ordered = [i for i in images if _LIBPYTHON.match(i.path.rsplit("/", 1)[-1])]
    ordered += [i for i in images if i.path == executable_mapping]
    for image in ordered:
        local = files.get(image.path)
        if local is None:
            continue
        build_id = (build_ids or {}).get(image.path)
        try:
            syms = load_symbols(local, build_id)
        except (OSError, ValueError):
            continue
        if not any(syms.address_of(n) is not None for n in ("Py_Initialize", "Py_InitializeEx")):
            continue
        bias = syms.load_bias(image.start)
        return PythonBinary(image.path, local, syms, bias, image.start, image.end, build_id)
    return None


#: Versions found by scanning for sys.version's text, by build-id: a build has one version,
#: and the scan (a regular expression over .data and .bss) is the slowest step of a warm
#: analysis of 3.6-3.10 cores.
_SCANNED_VERSIONS: dict[str, PythonVersion] = {}


def detect_version(memory: CoreMemory, binary: PythonBinary) -> PythonVersion:
    """The version, from the most to the least trusted source."""
    addr = binary.address("Py_Version")
    if addr is not None:
        found = version.read_py_version(memory, addr)
        if found:
            return found
    runtime = _runtime_address(binary)
    if runtime is not None:
        found = version.read_debug_cookie(memory, runtime)
        if found:
            return found
    if binary.build_id in _SCANNED_VERSIONS:
        return _SCANNED_VERSIONS[binary.build_id]
    by_name = version.from_file_name(binary.path)
    for sec in (".data", ".bss"):
        where = binary.section(sec)
        if where is None:
            continue
        text = version.scan_version_text(memory, where[0], where[0] + where[1])
        if text and (by_name is None or text.short == by_name.short):
            if binary.build_id:
                _SCANNED_VERSIONS[binary.build_id] = text
            return text
    if by_name is not None:
        return by_name
    raise PythonNotFound(
        "unknown_python_version",
        f"cannot tell which Python version {binary.path} is; pass the interpreter executable "
        f"as the second argument",
    )


def layout_for(memory: CoreMemory, binary: PythonBinary, ver: PythonVersion) -> Layout:
    """The structure layout: our table, or for 3.13+ the core's debug offsets over a table."""
    try:
        table = load_layout(*ver.short)
    except UnknownLayout:
        table = None
    runtime = _runtime_address(binary)
    newest = [v for v in available_versions() if v >= (3, 13) and v <= ver.short]
    if ver.short >= (3, 13) and runtime is not None and (table or newest):
        base = table or load_layout(*newest[-1])
        from_core = debug_offsets.layout_from_core(memory, runtime, base, ver.short)
        if from_core is not None:
            return from_core
    if table is not None:
        return table
    raise PythonNotFound(
        "unsupported_python_version",
        f"Python {ver} is not supported: no structure layout for it and no debug offsets in "
        f"the core (supported: 2.7, 3.6 and newer)",
    )


def _runtime_address(binary: PythonBinary) -> int | None:
    addr = binary.address("_PyRuntime")
    if addr is None:
        sec = binary.section(".PyRuntime")
        addr = sec[0] if sec else None
    return addr


def interpreter_heads(memory: CoreMemory, binary: PythonBinary, layout: Layout) -> list[int]:
    """Candidate addresses of the first PyInterpreterState, most trusted first."""
    out = []
    runtime = _runtime_address(binary)
    if runtime is not None and layout.has("_PyRuntimeState", "interpreters.head"):
        with contextlib.suppress(AddressError):
            out.append(memory.u64(runtime + layout.offset("_PyRuntimeState", "interpreters.head")))
    head_sym = binary.address("interp_head")
    if head_sym is not None:
        with contextlib.suppress(AddressError):
            out.append(memory.u64(head_sym))
    return [a for a in dict.fromkeys(out) if a]


def runtime_address(binary: PythonBinary) -> int | None:
    """Address of `_PyRuntime` (3.7+), None for older versions or when not found."""
    return _runtime_address(binary)
