"""Frames as signatures spell them: `module:name` for Python, `library!function` for native.

The Python spelling is that of every signature version; the native one is version 2's
(version 1 keeps its own in triage/signature/v1.py). docs/signatures.md gives the rules with
examples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from triage.report import CoreReport, FrameReport

UNKNOWN = "???"

#: The library of every frame of the interpreter itself, whichever file holds it (a shared
#: libpython, or a statically linked python executable), so that ids agree across builds.
INTERPRETER = "python"

_SITE_DIRS = ("site-packages", "dist-packages")
_STDLIB_VERSION_DIR = re.compile(r"python\d+(?:\.\d+)?[a-z]*|python\d+\.zip")
_LIB_DIRS = ("lib", "lib64")
_NATIVE_SUFFIX = re.compile(
    r"(?:\.(?:constprop|isra|part|cold|lto_priv|clone|llvm|localalias)(?:\.\d+)*)+$"
)
_SO_VERSION = re.compile(r"(\.so)(?:\.\d+)+$")
#: PEP 3149 ABI tags of extension modules: _ctypes.cpython-312-x86_64-linux-gnu.so, x.abi3.so.
_ABI_TAG = re.compile(r"\.(?:cpython-\d+[a-z]*(?:-[A-Za-z0-9_]+)*|abi3)(?=\.so$)")
_INTERPRETER_FILE = re.compile(r"(?:lib)?python(?:\d+(?:\.\d+)*[a-z]*)?(?:\.so)?")
#: glibc's CPU-specific variants of its string and memory functions, chosen at load time by
#: the CPU: __strlen_avx2, __strlen_evex, __memmove_avx_unaligned_erms, __strchr_sse2_no_bsf.
_CPU_VARIANT = re.compile(
    r"__(?P<base>[a-z]+(?:_chk)?)_(?:sse2|ssse3|sse4_[12]|avx|avx2|avx512[a-z]*|evex(?:512)?"
    r"|erms|unaligned)(?:_[a-z0-9]+)*"
)


# -- Python frames --------------------------------------------------------------------------


def python_frame(frame: FrameReport, program_root: str | None) -> str:
    """A Python frame as `module:name`."""
    return f"{python_module(frame.file, program_root)}:{_python_name(frame)}"


def python_module(file: str, program_root: str | None) -> str:
    """The dotted module of a Python file, as far as its path tells (see docs/signatures.md)."""
    if not file:
        return UNKNOWN
    if file.startswith("<") and file.endswith(">"):
        return file  # <string>, <stdin>, <frozen importlib._bootstrap>
    parts = _path_parts(file)
    if not parts:
        return file
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in _SITE_DIRS:
            rest = parts[i + 1 :]
            if len(rest) > 1 and rest[0].endswith(".egg"):
                rest = rest[1:]  # site-packages/foo-1.0-py3.8.egg/foo/bar.py
            return _dotted(rest) or _base_module(parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "Lib" or (
            i > 0 and parts[i - 1] in _LIB_DIRS and _STDLIB_VERSION_DIR.fullmatch(parts[i])
        ):
            return _dotted(parts[i + 1 :]) or _base_module(parts)
    under = _under_root(file, program_root)
    if under:
        return _dotted(under) or _base_module(parts)
    return _base_module(parts)


def _path_parts(path: str) -> list[str]:
    return [p for p in re.split(r"[/\\]", path) if p and p != "."]


def _strip_py(name: str) -> str:
    return name[:-3] if name.endswith(".py") else name


def _dotted(parts: Sequence[str]) -> str:
    names = [*parts[:-1], _strip_py(parts[-1])] if parts else []
    if names and names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def _base_module(parts: Sequence[str]) -> str:
    name = _strip_py(parts[-1])
    if name == "__init__" and len(parts) > 1:
        return parts[-2]  # a package's __init__.py outside any known root: the package name
    return name


def _under_root(file: str, root: str | None) -> list[str] | None:
    """The path parts of `file` below the program's root directory (None: not below it)."""
    if root is None or file.startswith(".."):
        return None
    if root == "":  # the main script was run by a relative name from its own directory
        return None if file.startswith("/") else _path_parts(file)
    root = root.rstrip("/")
    if not root:  # the root is "/": everything would be "below" it
        return None
    if file.startswith(root + "/"):
        return _path_parts(file[len(root) + 1 :])
    return None


def _python_name(frame: FrameReport) -> str:
    name = frame.qualname or frame.function or UNKNOWN
    return name.rsplit("<locals>.", 1)[-1]


def program_root(report: CoreReport) -> str | None:
    """The directory of the main script: the file of the outermost `<module>` frame of the
    main thread (tid == pid, else the last thread). None when it has no such frame."""
    threads = report.threads
    if not threads:
        return None
    pid = report.process.pid if report.process is not None else None
    mains = [t for t in threads if pid is not None and t.tid == pid] or [threads[-1]]
    for thread in mains:
        for frame in thread.frames:  # outermost first
            if frame.kind == "python" and frame.function == "<module>":
                file = frame.file or ""
                if file.startswith("<") and file.endswith(">"):
                    return None
                return file.rsplit("/", 1)[0] if "/" in file else ""
    return None


# -- native frames ---------------------------------------------------------------------------


def native_frame(frame: FrameReport) -> str:
    """A native frame as `library!function` (version 2)."""
    return f"{library_module(frame.library)}!{native_function(frame.function)}"


def native_function(name: str | None) -> str:
    """A native function without symbol version, clone suffixes and CPU variant:
    `memcpy@@GLIBC_2.14` -> `memcpy`, `f.isra.0.cold` -> `f`, `__strlen_avx2` -> `strlen`."""
    name = (name or "").strip().split("@", 1)[0]
    name = _NATIVE_SUFFIX.sub("", name)
    variant = _CPU_VARIANT.fullmatch(name)
    if variant is not None:
        base = variant.group("base")
        name = f"__{base}" if base.endswith("_chk") else base  # __memcpy_chk_avx512_unaligned
    return name or UNKNOWN


def library_name(path: str | None) -> str:
    """`libfoo.so` for /usr/lib/libfoo.so.1.2.3: the base name without the .so version."""
    parts = _path_parts(path or "")
    if not parts:
        return UNKNOWN
    return _SO_VERSION.sub(r"\1", parts[-1])


def library_module(path: str | None) -> str:
    """The library part of a version-2 native frame: `library_name` without an extension
    module's ABI tag (`_ctypes.cpython-312-x86_64-linux-gnu.so` -> `_ctypes.so`), and
    `python` for the interpreter's own file (libpython3.12.so.1.0, python3.13, python2.7)."""
    name = _ABI_TAG.sub("", library_name(path))
    return INTERPRETER if _INTERPRETER_FILE.fullmatch(name) else name


def frame_kind(text: str) -> str:
    """ "native" for a version-2 native frame (`library!function`: a `!` before any `:`),
    "python" for `module:name`, "native" for version 1's bare symbols (no `:`, or `::`)."""
    bang, colon = text.find("!"), text.find(":")
    if bang >= 0 and (colon < 0 or bang < colon):
        return "native"
    if colon >= 0 and not text[colon + 1 :].startswith(":"):
        return "python"
    return "native"
