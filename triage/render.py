"""Text output of a CoreReport, in the shape PyStack users know."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from triage.report import CoreReport, ExceptionReport, FrameReport, ThreadReport
from triage.text import unescaped_path

BOLD, RED, GREEN, YELLOW, CYAN = "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[36m"
BLUE = "\x1b[34m"
RESET = "\x1b[0m"


@dataclass(frozen=True)
class NativeView:
    """Which native frames the text shows (JSON always has them all, each marked)."""

    shown: bool = False
    """--native (or a variant): every thread's native frames. Without it, only a thread
    without Python frames (a native thread that crashed) shows its native frames."""
    all_threads: bool = False
    """--native-all: also the threads the interpreter does not know (native frames only)."""
    last_only: bool = False
    """--native-last: of each thread's native frames, only those after its last Python one."""
    unfiltered: bool = False
    """--native-unfiltered: also the frames PyStack's display rules hide."""


DEFAULT_VIEW = NativeView()


def use_color(stream: TextIO, no_color: bool) -> bool:
    """Colour only on a terminal, never with --no-color or NO_COLOR set (no-color.org)."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class Painter:
    """Wraps text in ANSI codes, or not."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *codes: str) -> str:
        if not self.enabled or not codes:
            return text
        return "".join(codes) + text + RESET


def render_text(
    report: CoreReport,
    *,
    color: bool = False,
    verbose: int = 0,
    source_roots: Sequence[str] = (),
    native: NativeView = DEFAULT_VIEW,
) -> str:
    """The report as a person reads it on stdout. Source lines come from the files the frames
    name, read here; `source_roots` (the --lib-search-root sysroots) are tried first as
    ROOT + path, as for libraries."""
    paint = Painter(color)
    lines: list[str] = []
    if report.executable and report.executable_source == "core":
        lines.append(f"Using executable found in the core file: {report.executable}")
        lines.append("")
    if verbose and report.library_search_path:
        lines.append("Library search path: " + ":".join(report.library_search_path))
    if verbose:
        for lib in report.libraries:
            where = lib.found_path or "NOT FOUND"
            lines.append(f"  {lib.path} -> {where} (build-id {lib.build_id or 'unknown'})")
        if report.libraries:
            lines.append("")
    p = report.process
    if p is not None:
        lines += [
            paint("Core file information:", BOLD),
            f"state: {p.state} zombie: {p.zombie} niceness: {p.nice}",
            f"pid: {p.pid} ppid: {p.ppid} sid: {p.sid}",
            f"uid: {p.uid} gid: {p.gid} pgrp: {p.pgrp}",
            f"executable: {p.executable} arguments: {p.arguments}",
            "",
        ]
    if report.signal is not None:
        crashed = report.signal.origin != "on_demand"
        lines.append(
            paint(report.signal.description, BOLD, RED) if crashed else report.signal.description
        )
    sources = SourceCache(source_roots)
    lines += render_threads(report, paint, sources, native)
    if report.last_exception is not None:  # sys.last_exc, after the threads
        lines += ["", *render_exceptions([report.last_exception], paint, sources, indent=0)]
    return "\n".join(lines) + "\n"


def render_threads(
    report: CoreReport,
    paint: Painter,
    sources: SourceCache | None = None,
    native: NativeView = DEFAULT_VIEW,
) -> list[str]:
    """Tracebacks of every Python thread, grouped by interpreter when there are several, the
    crashed thread first (a native thread that crashed with its native frames, before all;
    else its interpreter first and it first there); with --native-all, then the threads
    without Python that have native frames, in core order."""
    threads = sorted((t for t in report.threads if t.python), key=lambda t: not t.crashed)
    native_crashed = [t for t in report.threads if not t.python and t.crashed]
    others = [t for t in report.threads if not t.python and not t.crashed and t.frames]
    others = others if native.all_threads else []
    sources = sources or SourceCache()
    lines: list[str] = []
    if report.python_version is not None or threads:
        for thread in native_crashed:
            lines += render_thread(thread, paint, sources, native)
    if not threads:
        if report.threads and report.error is None and report.python_version is None:
            tids = [f"{t.tid} (crashed)" if t.crashed else str(t.tid) for t in report.threads]
            lines.append(f"Threads ({len(tids)}): " + ", ".join(tids))
            for thread in (t for t in native_crashed if t.frames):
                lines += render_thread(thread, paint, sources, native)
        return lines
    # The crashed thread's interpreter first (sorted is stable: `threads` has it first).
    interpreters = list(dict.fromkeys(t.interpreter_id or 0 for t in threads))
    interpreters = interpreters[:1] + sorted(interpreters[1:])
    for iid in interpreters:
        if len(interpreters) > 1:
            lines.append("")
            lines.append(
                paint("In the main interpreter" if iid == 0 else f"In interpreter {iid}", BOLD)
            )
        for thread in (t for t in threads if (t.interpreter_id or 0) == iid):
            lines += render_thread(thread, paint, sources, native)
    for thread in others:
        lines += render_thread(thread, paint, sources, native)
    return lines


def render_thread(
    thread: ThreadReport,
    paint: Painter,
    sources: SourceCache,
    native: NativeView = DEFAULT_VIEW,
) -> list[str]:
    tid = thread.tid if thread.tid is not None else "?"
    name = f" ({thread.name})" if thread.name else ""
    status = ", ".join(thread.status)
    if not thread.frames:
        empty = f"The frame stack for thread {tid}{name} is empty"
        return [empty, *render_exceptions(thread.exceptions, paint, sources)]
    head = f"Traceback for thread {tid}{name} [{status}] (most recent call last):"
    lines = [paint(head, BOLD)]
    for frame in shown_frames(thread, native):
        if frame.kind == "native":
            lines.append(native_line(frame, paint))
            continue
        lines.append(python_line(frame, paint))
        source = sources.line(frame.file, frame.line)
        if source:
            lines.append(f"        {source}")
        lines += render_locals(frame, paint)
    lines += render_exceptions(thread.exceptions, paint, sources)
    return lines


def shown_frames(thread: ThreadReport, native: NativeView = DEFAULT_VIEW) -> list[FrameReport]:
    """The thread's frames the text shows, most recent call last: its Python frames, and its
    native ones with --native (or when it has no Python frame), by the display rules."""
    frames = thread.frames
    last_python = max((i for i, f in enumerate(frames) if f.kind == "python"), default=-1)
    show_native = native.shown or last_python < 0
    return [
        frame
        for index, frame in enumerate(frames)
        if frame.kind == "python"
        or (
            show_native
            and (native.unfiltered or not frame.hidden)
            and not (native.last_only and index < last_python)
        )
    ]


def python_line(frame: FrameReport, paint: Painter) -> str:
    """`(Python) File "F", line N, in QUALNAME`, as PyStack prints it (`line ?` when the line
    is not known)."""
    func = frame.qualname or frame.function
    where = f"line {frame.line}" if frame.line is not None else "line ?"
    return (
        f'    {paint("(Python)", GREEN)} File "{paint(frame.file, CYAN)}", {where}, in '
        f"{paint(func, YELLOW)}"
    )


def native_line(frame: FrameReport, paint: Painter) -> str:
    """`(C) File "F", line N, in FUNCTION [(inlined)] (LIBRARY)`, as PyStack prints it (line 0
    and file ??? without debug information)."""
    library = (frame.library or "???").rsplit("/", 1)[-1]
    inlined = " (inlined)" if frame.inlined else ""
    # Neither a symbol nor debug information: PyStack names the library as the file.
    where = library if frame.function == "???" and frame.file == "???" else frame.file
    return (
        f'    {paint("(C)", BLUE)} File "{paint(where, CYAN)}", line {frame.line or 0}, in '
        f"{paint(frame.function, YELLOW)}{inlined} ({library})"
    )


def render_locals(frame: FrameReport, paint: Painter) -> list[str]:
    """The frame's arguments, then its other variables (with --locals), as PyStack lays
    them out."""
    if not frame.locals:
        return []
    lines = []
    arguments = [v for v in frame.locals if v.kind == "argument"]
    others = [v for v in frame.locals if v.kind != "argument"]
    for title, group in (("Arguments:", arguments), ("Locals:", others)):
        if group:
            lines.append(f"      {paint(title, BOLD)}")
            lines += [f"        {v.name}: {v.value}" for v in group]
    return lines


class SourceCache:
    """Source lines of files readable on this machine, read once per file: under each of
    `roots` (sysroots: ROOT + path) first, then at the path itself."""

    def __init__(self, roots: Sequence[str] = ()) -> None:
        self._files: dict[str, list[str] | None] = {}
        self._roots = [r.rstrip("/") for r in roots]

    def line(self, path: str, line: int | None) -> str | None:
        if line is None or line < 1:
            return None
        if path not in self._files:
            self._files[path] = None
            named = [path]
            original = unescaped_path(path)  # a name of bytes that are not UTF-8
            if original is not None:
                named.append(original)
            candidates = [root + p for p in named for root in self._roots if p.startswith("/")]
            for candidate in [*candidates, *named]:
                try:
                    with open(candidate, encoding="utf-8", errors="replace") as f:
                        self._files[path] = f.read().splitlines()
                    break
                except (OSError, ValueError):
                    continue
        lines = self._files[path]
        if lines is None or line > len(lines):
            return None
        return lines[line - 1].strip() or None


def render_warnings(
    report: CoreReport, stream: TextIO = sys.stderr, *, color: bool = False
) -> None:
    """Warnings go to stderr, one per line, so stdout stays the report."""
    paint = Painter(color)
    for w in report.warnings:
        stream.write(paint("WARNING: ", YELLOW) + w + "\n")
    if report.missing_libraries:
        stream.write(
            paint("WARNING: ", YELLOW)
            + f"{len(report.missing_libraries)} mapped file(s) not found; if the core comes from "
            "another machine, pass --lib-search-path or --lib-search-root\n"
        )


#: How the text introduces an exception of each state (report.ExceptionReport.state).
EXCEPTION_LABELS = {
    "raised": "Raised",
    "handling": "Handling",
    "context": "While handling",
    "cause": "Caused by",
    "last": "Last uncaught exception:",
}


def render_exceptions(
    exceptions: Sequence[ExceptionReport], paint: Painter, sources: SourceCache, indent: int = 4
) -> list[str]:
    """A thread's exceptions after its traceback, each as `Handling TYPE: MESSAGE` and its
    traceback's frames, indented as Python prints them."""
    lines = []
    margin = " " * indent
    for exc in exceptions:
        described = f"{exc.type}: {exc.message}" if exc.message else exc.type
        lines.append(f"{margin}{paint(EXCEPTION_LABELS[exc.state], BOLD)} {paint(described, RED)}")
        for frame in exc.frames:
            func = frame.qualname or frame.function
            where = f"line {frame.line}" if frame.line is not None else "line ?"
            lines.append(
                f'{margin}  File "{paint(frame.file, CYAN)}", {where}, in {paint(func, YELLOW)}'
            )
            source = sources.line(frame.file, frame.line)
            if source:
                lines.append(f"{margin}    {source}")
    return lines
