"""Every thread's native stack, merged with its Python frames into the report (--native).

Each physical native frame becomes one report frame per function at its address: the calls
inlined there (innermost first, `inlined`), then the function itself, each with its source
file and line when DWARF says them. Frames PyStack's display rules hide are kept, marked
`hidden` (the text output leaves them out unless asked). Each eval-loop frame gives way to the
Python frames it ran; a thread running code in several interpreters has its merged stack split
between them at the eval-loop call that entered the inner one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.coredump.corefile import CoreFile
from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.native.display import hidden, native_status
from triage.native.merge import is_eval_frame, merge
from triage.native.unwind import Module, Modules, NativeFrame, add_locations, unwind
from triage.report import CoreReport, FrameReport, ThreadReport

UNKNOWN = "???"


def native_stacks(
    core: CoreFile,
    memory: CoreMemory,
    images: list[LoadedImage],
    files: dict[str, str],
    build_ids: dict[str, str],
    debug_roots: tuple[str, ...] = (),
    debug_dirs: tuple[str, ...] = (),
    names: dict[str, str] | None = None,
) -> dict[int, list[NativeFrame]]:
    """Each thread's native frames (newest first), by kernel tid; separate debug files are
    looked for in the sysroots `debug_roots` and the directories `debug_dirs` too; `names`:
    the link map's name of each recorded path, shown as the frames' library."""
    modules = Modules(
        [
            Module(
                image.path,
                files[image.path],
                image.start,
                image.end,
                build_ids.get(image.path),
                debug_roots,
                debug_dirs,
                (names or {}).get(image.path),
            )
            for image in images
            if image.path in files
        ]
    )
    stacks = {t.tid: unwind(t.registers, memory, modules) for t in core.threads}
    add_locations(stacks, modules)
    return stacks


def expand(frame: NativeFrame, vectorcall: bool) -> list[FrameReport]:
    """The report frames of one physical frame, newest first: its inlined calls, then it."""
    out = []
    for where in frame.locations or ():
        name = where.function if where.inlined else frame.function
        out.append(
            FrameReport(
                kind="native",
                function=name or UNKNOWN,
                file=where.file or UNKNOWN,
                line=where.line,
                address=frame.pc,
                library=frame.module,
                inlined=where.inlined,
                hidden=hidden(name, vectorcall),
                by_frame_pointer=frame.by_frame_pointer,
            )
        )
    if not out:
        out.append(
            FrameReport(
                kind="native",
                function=frame.function or UNKNOWN,
                file=UNKNOWN,
                address=frame.pc,
                library=frame.module,
                hidden=hidden(frame.function, vectorcall),
                by_frame_pointer=frame.by_frame_pointer,
            )
        )
    return out


def attach_native(
    report: CoreReport,
    python_threads: Sequence[Any],
    stacks: dict[int, list[NativeFrame]],
    vectorcall: bool = True,
) -> None:
    """Put each thread's native frames into its report rows: merged with its Python frames
    where the two line up (else a warning, and the Python frames alone), alone in a thread
    without Python; and the statuses its native frames tell (GC, the GIL)."""
    states: dict[int | None, list[Any]] = {}
    for thread in python_threads:
        states.setdefault(thread.tid, []).append(thread)
    rows: dict[int | None, list[ThreadReport]] = {}
    for row in report.threads:
        rows.setdefault(row.tid, []).append(row)
    for tid, native in stacks.items():
        mine_rows = rows.get(tid, [])
        if not native or not mine_rows:
            continue
        groups = [expand(f, vectorcall) for f in native]
        guessed = [f for f in native if f.by_frame_pointer]
        if guessed:
            report.warnings.append(
                f"thread {tid}: {len(guessed)} native frame(s) from "
                f"{guessed[0].function or '???'} on were found by frame pointers (no "
                f"call-frame information for the code below them)"
            )
        status = native_status(e.function for group in groups for e in group)
        for row in mine_rows:
            row.status += [s for s in status if s not in row.status]
        python_rows = [r for r in mine_rows if r.python]
        if not python_rows:
            mine_rows[0].frames = [e for group in groups for e in group][::-1]
            continue
        # The thread's states, outermost (the main interpreter) first; each row holds one
        # state's Python frames, oldest first.
        python_rows.sort(key=lambda r: r.interpreter_id or 0)
        by_interp = {t.interpreter_id: t for t in states.get(tid, [])}
        ordered = [by_interp.get(r.interpreter_id) for r in python_rows]
        if any(state is None for state in ordered):
            continue
        python: list[Any] = []
        entries: list[bool] = []
        owner: list[int] = []
        for k in range(len(python_rows) - 1, -1, -1):  # innermost state first: newest
            frames = python_rows[k].frames[::-1]
            python += frames
            entries += [f.entry for f in ordered[k].frames]
            owner += [k] * len(frames)
        # An eval-loop frame gives way to its Python frames; calls inlined at its address
        # (`cmp_outcome` in 3.6's loop) are newer than those and stay, as PyStack shows them.
        units: list[list[FrameReport]] = []
        names: list[str | None] = []
        for frame, group in zip(native, groups, strict=True):
            if is_eval_frame(frame.function) and len(group) > 1:
                units.append(group[:-1])
                names.append(None)
            units.append(group)
            names.append(frame.function)
        merged = merge(units, names, python, entries)
        if merged is None:
            report.warnings.append(
                f"thread {tid}: its native and Python frames do not line up (the native "
                f"stack could not be followed to its end?); Python frames only"
            )
            continue
        _split(merged, python, owner, python_rows)


def _split(
    merged: list[Any], python: list[Any], owner: list[int], rows: list[ThreadReport]
) -> None:
    """Give each interpreter's row its part of the merged stack (newest first in `merged`):
    the innermost state's part runs from the newest frame to its oldest Python frame, the
    next state's from there on, and so on; native frames older than a state's oldest Python
    frame belong to the state that called it."""
    position = {id(frame): i for i, frame in enumerate(python)}
    oldest = {k: i for i, k in enumerate(owner)}  # each state's oldest Python frame
    parts: list[list[FrameReport]] = [[] for _ in rows]
    current = len(rows) - 1  # the innermost state
    for item in merged:
        if isinstance(item, list):
            parts[current].extend(item)
            continue
        i = position[id(item)]
        current = owner[i]
        parts[current].append(item)
        if i == oldest[current] and current > 0:
            current -= 1  # what is older belongs to the state that called this one
    for row, part in zip(rows, parts, strict=True):
        row.frames = part[::-1]
