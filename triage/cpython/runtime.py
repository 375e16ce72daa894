"""Finding the interpreter in a dead process: the binary that holds CPython, its version,
its layout and the address of the interpreter list."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.coredump.symbols import ElfSymbols, load_symbols
from triage.cpython import version
from triage.cpython.layout import Layout, UnknownLayout, available_versions, load_layout
from triage.cpython.version import PythonVersion
from triage.errors import TriageError

if TYPE_CHECKING:
    from triage.kinds import ErrorKind

_LIBPYTHON = re.compile(r"^libpython\d\.\d+")


class PythonNotFound(TriageError):
    """The core is not of a CPython process, or its interpreter cannot be read."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
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


def supported_versions() -> str:
    """The versions with a table, as users read them: "2.7, 3.6-3.15"."""
    found = available_versions()
    groups: list[list[tuple[int, int]]] = []
    for v in found:
        if groups and groups[-1][-1][0] == v[0] and groups[-1][-1][1] + 1 == v[1]:
            groups[-1].append(v)
        else:
            groups.append([v])
    return ", ".join(
        f"{g[0][0]}.{g[0][1]}" + (f"-{g[-1][0]}.{g[-1][1]}" if len(g) > 1 else "") for g in groups
    )


def layout_for(
    memory: CoreMemory, binary: PythonBinary, ver: PythonVersion
) -> tuple[Layout, list[str]]:
    """The structure layout, and warnings about it.

    3.13+ publish `_Py_DebugOffsets`: when they validate they correct the version's table (its
    states move between micro versions and build kinds). A CPython newer than every table is
    read through them over the newest table, marked provisional (a walk that does not validate
    then ends in an error, never in output); without valid debug offsets it is unsupported.
    """
    from triage.cpython import debug_offsets  # 3.13+ only: not at every start

    notes: list[str] = []
    runtime = _runtime_address(binary)
    block = None
    if runtime is not None and version.read_debug_cookie(memory, runtime) is not None:
        block = debug_offsets.read(memory, runtime, ver.short)
        if block is None:
            notes.append(
                f"the core's _Py_DebugOffsets (Python {ver}) match no known layout of that "
                f"block; offsets come from the layout table alone"
            )
    if block is not None and block.free_threaded:
        raise PythonNotFound(
            "unsupported_python_version",
            f"Python {ver} is a free-threaded build (no GIL), which triage cannot read yet; "
            f"supported: {supported_versions()} with the GIL",
        )
    try:
        table = load_layout(*ver.short)
    except UnknownLayout:
        table = None
    if table is not None:
        if block is None:
            return table, notes
        return debug_offsets.overlay(table, block, ver.short), notes
    newest = max(available_versions())
    if block is not None and ver.short > newest:
        base = load_layout(*newest)
        layout = dataclasses.replace(
            debug_offsets.overlay(base, block, ver.short), provisional=True
        )
        notes.append(
            f"Python {ver} is newer than every layout table (newest: "
            f"{newest[0]}.{newest[1]}): read through its own _Py_DebugOffsets over the "
            f"{newest[0]}.{newest[1]} table"
        )
        return layout, notes
    why = (
        "its _Py_DebugOffsets match no layout triage knows"
        if runtime is not None and version.read_debug_cookie(memory, runtime) is not None
        else "there is no layout table for it and the core publishes no debug offsets"
    )
    raise PythonNotFound(
        "unsupported_python_version",
        f"Python {ver} is not supported: {why} (supported: {supported_versions()}, and newer "
        f"3.x whose debug offsets validate)",
    )


def _runtime_address(binary: PythonBinary) -> int | None:
    addr = binary.address("_PyRuntime")
    if addr is None:
        sec = binary.section(".PyRuntime")
        addr = sec[0] if sec else None
    return addr


def runtime_address(binary: PythonBinary) -> int | None:
    """Address of `_PyRuntime` (3.7+), None for older versions or when not found."""
    return _runtime_address(binary)
