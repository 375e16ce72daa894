"""Which CPython the dead process ran: from Py_Version, the debug offsets, the version string
in memory, or the library's file name, in that order of trust."""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage.coredump.memory import CoreMemory
from triage.errors import ReadError

_LIB_NAME = re.compile(r"(?:libpython|python)(\d)\.(\d+)")
_VERSION_TEXT = re.compile(rb"([23])\.(\d{1,2})\.(\d{1,2})((?:a|b|rc)\d+)?\+? \(")
DEBUG_COOKIE = b"xdebugpy"


@dataclass(frozen=True, slots=True)
class PythonVersion:
    """A CPython version; `micro` is None when only major.minor could be learnt."""

    major: int
    minor: int
    micro: int | None = None
    suffix: str = ""
    source: str = ""

    @property
    def short(self) -> tuple[int, int]:
        return self.major, self.minor

    def __str__(self) -> str:
        if self.micro is None:
            return f"{self.major}.{self.minor}"
        return f"{self.major}.{self.minor}.{self.micro}{self.suffix}"


def from_hex(value: int, source: str) -> PythonVersion | None:
    """Decode PY_VERSION_HEX (0xMMmmuuLS); None when implausible."""
    major, minor, micro = value >> 24 & 0xFF, value >> 16 & 0xFF, value >> 8 & 0xFF
    level, serial = value >> 4 & 0xF, value & 0xF
    if major not in (2, 3) or minor > 40:
        return None
    suffix = {0xA: f"a{serial}", 0xB: f"b{serial}", 0xC: f"rc{serial}"}.get(level, "")
    return PythonVersion(major, minor, micro, suffix, source)


def from_file_name(path: str) -> PythonVersion | None:
    m = _LIB_NAME.search(path.rsplit("/", 1)[-1])
    return PythonVersion(int(m.group(1)), int(m.group(2)), source="file name") if m else None


def from_text(blob: bytes) -> PythonVersion | None:
    """Find "3.8.18 (default, ..." (sys.version as built at start-up) in a block of memory."""
    m = _VERSION_TEXT.search(blob)
    if not m:
        return None
    suffix = (m.group(4) or b"").decode()
    return PythonVersion(int(m.group(1)), int(m.group(2)), int(m.group(3)), suffix, "sys.version")


def read_py_version(memory: CoreMemory, address: int) -> PythonVersion | None:
    """The Py_Version constant (3.11+) at `address`."""
    try:
        return from_hex(memory.u32(address), "Py_Version")
    except ReadError:
        return None


def read_debug_cookie(memory: CoreMemory, runtime: int) -> PythonVersion | None:
    """3.13+: `_PyRuntime` begins with `_Py_DebugOffsets`: the cookie, then PY_VERSION_HEX."""
    try:
        head = memory.read(runtime, 16)
    except ReadError:
        return None
    if head[:8] != DEBUG_COOKIE:
        return None
    return from_hex(int.from_bytes(head[8:16], "little"), "_Py_DebugOffsets")


def scan_version_text(memory: CoreMemory, start: int, end: int) -> PythonVersion | None:
    """Look for sys.version's text in [start, end) of the process's memory (core bytes only)."""
    step = 1 << 20
    for lo in range(start, end, step):
        try:
            blob = memory.read(lo, min(step + 64, end - lo), core_only=True)
        except ReadError:
            continue
        found = from_text(blob)
        if found:
            return found
    return None
