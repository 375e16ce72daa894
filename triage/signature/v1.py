"""Crash signatures: a core reduced to the reason it died and the top meaningful frames.

Cores of one bug share a signature across hosts, Python versions and small edits of the code
around the crash; cores of different bugs do not. The algorithm is versioned
(`SIGNATURE_VERSION`) and documented in docs/signatures.md; in short:

    thread     the crashed thread; on demand or when none crashed, the GIL holder;
               else the top meaningful frame of every Python thread, sorted, deduplicated
    normalise  Python frames -> `module:name` (module from the path: site-packages,
               standard library, the program's root, else the base name; name without
               `<locals>.` prefixes); native frames -> the symbol without version and clone
               suffixes, or `libname.so` when unknown
    skip       interpreter plumbing, thread bootstrap, runpy, signal trampolines, and the
               fleet's own patterns
    fold       abort/raise frames leave the stack and become part of the reason
    text       `REASON | frame | frame ...` (the first `Rules.frames` meaningful frames)
    id         first 12 hex digits of sha256("v1\\n" + text)

`Signature.all_frames` keeps every normalised frame before skipping, so `resignature()` (what
`triage regroup` uses) recomputes a signature with other rules without the core.

Only the standard library and `triage.report` are imported here: `triage core` and the
analysis child use this module without pyarrow, duckdb or dask.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from triage.report import CoreReport, FrameReport, Signature, ThreadReport

SIGNATURE_VERSION = 1

#: The reason of an on-demand core (gcore and the like: signal.name is SIGSTOP there).
ON_DEMAND = "on-demand"

#: Native frames of CPython's own machinery, the C runtime and thread start-up.
NATIVE_SKIP: tuple[str, ...] = (
    "_PyEval*",
    "_Py*",
    "PyEval_*",
    "*vectorcall*",
    "*Vectorcall*",
    "PyObject_Call*",
    "call_function",
    "fast_function",
    "function_code_fastcall",
    "method_vectorcall*",
    "cfunction_*",
    "slot_tp_*",
    "PyCFunction_Call",
    "_start",
    "__libc_start_main*",
    "__libc_start_call_main",  # glibc 2.34+, between __libc_start_main_impl and main
    "main",
    "Py_RunMain",
    "Py_BytesMain",
    "pymain_*",
    "start_thread",
    "clone*",
    "__clone*",  # glibc's exported name of clone (clone3 is internal)
    "thread_run",
    "pythread_wrapper",
    # signal trampolines
    "__restore_rt",
    "<signal handler called>",
)

#: Python frames of thread bootstrap (qualified names: co_qualname on 3.11+, recovered for
#: methods before; bare names when not recovered; 2.7's private spellings) and runpy (a file
#: in 3.10 and older, frozen from 3.11 on).
PYTHON_SKIP: tuple[str, ...] = (
    "threading:Thread._bootstrap",
    "threading:Thread._bootstrap_inner",
    "threading:Thread.run",
    "threading:Thread.__bootstrap",
    "threading:Thread.__bootstrap_inner",
    "threading:__bootstrap",
    "threading:__bootstrap_inner",
    "threading:_bootstrap",
    "threading:_bootstrap_inner",
    "threading:run",
    "runpy:*",
    "<frozen runpy>:*",
)

#: Native frames of abort() and raise(): removed, and named in the reason instead.
FOLD_ABORT: tuple[str, ...] = ("abort", "__GI_*abort")
FOLD_RAISE: tuple[str, ...] = ("raise", "gsignal", "pthread_kill", "__pthread_kill*", "__GI_raise")

_SITE_DIRS = ("site-packages", "dist-packages")
_STDLIB_VERSION_DIR = re.compile(r"python\d+(?:\.\d+)?[a-z]*|python\d+\.zip")
_LIB_DIRS = ("lib", "lib64")
_NATIVE_SUFFIX = re.compile(
    r"(?:\.(?:constprop|isra|part|cold|lto_priv|clone|llvm|localalias)(?:\.\d+)*)+$"
)
_SO_VERSION = re.compile(r"(\.so)(?:\.\d+)+$")
_FOLDED_REASON = re.compile(r" \((?:abort|raise)\)$")


@dataclass(frozen=True)
class Rules:
    """What makes a signature: how many meaningful frames, and which frames to leave out
    (fnmatch patterns over normalised frames, on top of the built-in lists)."""

    frames: int = 5
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"signature frames must be a positive integer, not {self.frames!r}")
        if isinstance(self.skip, str):
            raise TypeError("signature skip must be a sequence of patterns, not one string")
        object.__setattr__(self, "skip", tuple(self.skip))

    @classmethod
    def from_fleet(cls, fleet: Any) -> Rules:
        """The rules of a fleet: anything with `signature_frames` and `signature_skip`."""
        return cls(
            frames=getattr(fleet, "signature_frames", cls.frames),
            skip=tuple(getattr(fleet, "signature_skip", None) or ()),
        )


# --------------------------------------------------------------------------------------------
# Normalising frames


def normalise_frame(frame: FrameReport, program_root: str | None) -> str:
    """One frame as it appears in signatures: `module:name` (Python) or the native name."""
    if frame.kind == "native":
        return _native_name(frame.function, frame.file)
    return f"{python_module(frame.file, program_root)}:{_python_name(frame)}"


def python_module(file: str, program_root: str | None) -> str:
    """The dotted module of a Python file, as far as its path tells (see docs/signatures.md)."""
    if not file:
        return "???"
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
    rest = _under_root(file, program_root)
    if rest:
        return _dotted(rest) or _base_module(parts)
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
    name = frame.qualname or frame.function or "???"
    return name.rsplit("<locals>.", 1)[-1]


def _native_name(function: str | None, file: str | None) -> str:
    name = (function or "").strip().split("@", 1)[0]
    name = _NATIVE_SUFFIX.sub("", name)
    if name and name != "???":
        return name
    return library_name(file)


def library_name(path: str | None) -> str:
    """`libfoo.so` for /usr/lib/libfoo.so.1.2.3: the base name without the .so version."""
    parts = _path_parts(path or "")
    if not parts:
        return "???"
    return _SO_VERSION.sub(r"\1", parts[-1])


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


# --------------------------------------------------------------------------------------------
# Skipping and folding


def is_python_frame(text: str) -> bool:
    """Whether a normalised frame is a Python one: `module:name` (C++ names have `::`)."""
    _head, sep, tail = text.partition(":")
    return bool(sep) and not tail.startswith(":")


def _matches(text: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)


def _fold_kind(text: str) -> str | None:
    """The fold ("abort" or "raise") a normalised frame belongs to, if any."""
    if is_python_frame(text):
        return None
    if _matches(text, FOLD_ABORT):
        return "abort"
    if _matches(text, FOLD_RAISE):
        return "raise"
    return None


def is_meaningful(text: str, rules: Rules) -> bool:
    """Whether a normalised frame stays in signatures under `rules` (fold frames do not)."""
    if _matches(text, PYTHON_SKIP if is_python_frame(text) else NATIVE_SKIP):
        return False
    if _fold_kind(text) is not None:
        return False
    return not _matches(text, rules.skip)


def _reduce(all_frames: Sequence[str], rules: Rules, reason: str, thread: int | None) -> Signature:
    """The signature of normalised frames (most recent first) under `rules`."""
    base = _FOLDED_REASON.sub("", reason)
    folds = {kind for kind in map(_fold_kind, all_frames) if kind is not None}
    fold = ("abort" if "abort" in folds else "raise") if folds else None
    reason = f"{base} ({fold})" if fold else base
    frames = [f for f in all_frames if is_meaningful(f, rules)][: rules.frames]
    text = " | ".join([reason, *frames])
    return Signature(
        text=text,
        id=signature_id(text),
        version=SIGNATURE_VERSION,
        reason=reason,
        frames=frames,
        all_frames=list(all_frames),
        thread=thread,
    )


def signature_id(text: str, version: int = SIGNATURE_VERSION) -> str:
    """The group key of a signature text: first 12 hex digits of sha256("v1\\n" + text)."""
    return hashlib.sha256(f"v{version}\n{text}".encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Signatures


def base_reason(report: CoreReport) -> str:
    """The reason before folding: the signal name, or "on-demand" for on-demand cores."""
    signal = report.signal
    if signal is None:
        return "unknown"
    if signal.origin == "on_demand":
        return ON_DEMAND
    return signal.name or "unknown"


def signature_thread(report: CoreReport) -> ThreadReport | None:
    """The thread a signature is taken from (None: every Python thread's top is used)."""
    on_demand = report.signal is not None and report.signal.origin == "on_demand"
    crashed = [] if on_demand else [t for t in report.threads if t.crashed]
    if crashed:
        # One OS thread running code of several interpreters gives several rows (all marked
        # crashed): the one holding the GIL ran last, else the first with a Python stack.
        return next(
            (t for t in crashed if t.holds_gil),
            next((t for t in crashed if t.frames), crashed[0]),
        )
    return next((t for t in report.threads if t.holds_gil), None)


def compute_signature(report: CoreReport, rules: Rules | None = None) -> Signature | None:
    """The signature of a report under `rules` (default: `Rules()`).

    None when the analysis failed (`error` set): a core whose stacks could not be read would
    otherwise group with every other unreadable core of the same signal; `triage ci` and
    `triage groups` key those by their error kind instead. None too when nothing is known.
    """
    if rules is None:
        rules = Rules()
    if report.error is not None or (not report.threads and report.signal is None):
        return None
    reason = base_reason(report)
    root = program_root(report)
    thread = signature_thread(report)
    if thread is not None:
        normalised = [normalise_frame(f, root) for f in reversed(thread.frames)]
        return _reduce(normalised, rules, reason, thread.tid)
    tops = set()
    for row in report.threads:
        if not row.python:
            continue
        for frame in reversed(row.frames):
            text = normalise_frame(frame, root)
            if is_meaningful(text, rules):
                tops.add(text)
                break
    return _reduce(sorted(tops), rules, reason, None)


def resignature(sig: Signature, rules: Rules, reason: str | None = None) -> Signature:
    """`sig` recomputed with other rules from its `all_frames` alone (no core needed).

    `reason` is the reason before folding (the signal name, or "on-demand"); a folded reason
    such as `SIGABRT (abort)` is accepted too, and by default `sig.reason` is used. Folding
    is redone from `all_frames`. For a signature made of several threads' tops (`thread` is
    None), `all_frames` holds those tops: new rules can drop some of them, but cannot reach
    the frames below them.
    """
    return _reduce(sig.all_frames, rules, sig.reason if reason is None else reason, sig.thread)
