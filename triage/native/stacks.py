"""Every thread's native stack, merged with its Python frames into one stack (--native).

Each physical native frame becomes one entry per function at its address: the calls inlined
there (innermost first, `inlined`), then the function itself, each with its source file and
line when DWARF says them. Frames PyStack's display rules hide are kept, marked `hidden` (the
text output leaves them out unless asked). Each eval-loop frame gives way to the Python frames
it ran; a thread running code in several interpreters has its merged stack split between them
at the eval-loop call that entered the inner one. The result is in the interpreter model's
terms (thread states, PyFrames); the report layer describes it (triage/describe.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from triage.coredump.corefile import CoreFile
from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.native.display import hidden, native_status
from triage.native.merge import is_eval_frame, merge
from triage.native.unwind import Module, Modules, NativeFrame, add_locations, unwind

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
    tids: Collection[int] | None = None,
    sites_only: bool = False,
) -> tuple[dict[int, list[NativeFrame]], list[str]]:
    """Each thread's native frames (newest first), by kernel tid (only the threads `tids`
    when given), and a warning for each file that could not be read (its frames unnamed, the
    others' as ever); separate debug files are looked for in the sysroots `debug_roots` and
    the directories `debug_dirs` too; `names`: the link map's name of each recorded path,
    shown as the frames' library. `sites_only`: source locations (and inlined calls) only
    for the frames newer than each thread's newest eval-loop frame, where a crash in C
    happened and what its signature is made of; the interpreter's frames below keep their
    names and addresses (the DWARF of the eval loop's unit is the largest to read)."""
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
    stacks = {
        t.tid: unwind(t.registers, memory, modules)
        for t in core.threads
        if tids is None or t.tid in tids
    }
    add_locations(stacks, modules, _in_eval_loop if sites_only else None)
    return stacks, modules.warnings()


def _in_eval_loop(frame: NativeFrame) -> bool:
    return is_eval_frame(frame.function)


@dataclass(frozen=True, slots=True)
class NativeEntry:
    """One function at a native frame's address: the frame's own, or a call inlined there."""

    function: str
    file: str
    line: int | None
    library: str | None
    address: int
    inlined: bool = False
    hidden: bool = False
    by_frame_pointer: bool = False


Frame = TypeVar("Frame")


@dataclass
class ThreadStacks(Generic[Frame]):
    """Every thread's stack as one ordered list of Python and native frames, most recent
    call LAST, and what the native frames tell of each thread."""

    merged: dict[int, list[Frame | NativeEntry]] = field(default_factory=dict)
    """Keyed by id() of a thread state: its Python frames with the native frames between."""
    native_only: dict[int, list[NativeEntry]] = field(default_factory=dict)
    """Keyed by tid: the native frames of threads without any thread state."""
    status: dict[int, list[str]] = field(default_factory=dict)
    """Keyed by tid: statuses from native frames (GC, the GIL)."""
    warnings: list[str] = field(default_factory=list)


def expand(frame: NativeFrame, vectorcall: bool) -> list[NativeEntry]:
    """The entries of one physical frame, newest first: its inlined calls, then it."""
    out = []
    for where in frame.locations or ():
        name = where.function if where.inlined else frame.function
        out.append(
            NativeEntry(
                function=name or UNKNOWN,
                file=where.file or UNKNOWN,
                line=where.line,
                library=frame.module,
                address=frame.pc,
                inlined=where.inlined,
                hidden=hidden(name, vectorcall),
                by_frame_pointer=frame.by_frame_pointer,
            )
        )
    if not out:
        out.append(
            NativeEntry(
                function=frame.function or UNKNOWN,
                file=UNKNOWN,
                line=None,
                library=frame.module,
                address=frame.pc,
                hidden=hidden(frame.function, vectorcall),
                by_frame_pointer=frame.by_frame_pointer,
            )
        )
    return out


def combine(
    threads: Sequence[Any],
    stacks: dict[int, list[NativeFrame]],
    vectorcall: bool = True,
) -> ThreadStacks[Any]:
    """Each thread state's Python frames (`threads`: PyThread, frames newest first, each
    knowing whether it is an eval-loop entry) merged with its OS thread's native frames where
    the two line up (else a warning, and the Python frames alone); the native frames of
    threads without a state; the statuses native frames tell."""
    out: ThreadStacks[Any] = ThreadStacks()
    states: dict[int | None, list[Any]] = {}
    for thread in threads:
        states.setdefault(thread.tid, []).append(thread)
    for tid, native in stacks.items():
        if not native:
            continue
        groups = [expand(f, vectorcall) for f in native]
        out.status[tid] = native_status(e.function for group in groups for e in group)
        guessed = [f for f in native if f.by_frame_pointer]
        if guessed:
            out.warnings.append(
                f"thread {tid}: {len(guessed)} native frame(s) from "
                f"{guessed[0].function or '???'} on were found by frame pointers (no "
                f"call-frame information for the code below them)"
            )
        mine = states.get(tid, [])
        if not mine:
            out.native_only[tid] = [e for group in groups for e in group][::-1]
            continue
        # The thread's states, outermost (the main interpreter) first.
        mine = sorted(mine, key=lambda t: t.interpreter_id or 0)
        python: list[Any] = []
        entries: list[bool] = []
        owner: list[int] = []
        for k in range(len(mine) - 1, -1, -1):  # innermost state first: newest
            python += mine[k].frames
            entries += [f.entry for f in mine[k].frames]
            owner += [k] * len(mine[k].frames)
        # An eval-loop frame gives way to its Python frames; calls inlined at its address
        # (`cmp_outcome` in 3.6's loop) are newer than those and stay, as PyStack shows them.
        units: list[list[NativeEntry]] = []
        names: list[str | None] = []
        for frame, group in zip(native, groups, strict=True):
            if is_eval_frame(frame.function) and len(group) > 1:
                units.append(group[:-1])
                names.append(None)
            units.append(group)
            names.append(frame.function)
        merged = merge(units, names, python, entries)
        if merged is None:
            out.warnings.append(
                f"thread {tid}: its native and Python frames do not line up (the native "
                f"stack could not be followed to its end?); Python frames only"
            )
            continue
        for state, part in zip(mine, _split(merged, python, owner, len(mine)), strict=True):
            out.merged[id(state)] = part[::-1]
    return out


def _split(merged: list[Any], python: list[Any], owner: list[int], count: int) -> list[list[Any]]:
    """Each state's part of the merged stack (newest first in `merged`): the innermost
    state's part runs from the newest frame to its oldest Python frame, the next state's from
    there on, and so on; native frames older than a state's oldest Python frame belong to the
    state that called it. Parts newest first, outermost state first."""
    position = {id(frame): i for i, frame in enumerate(python)}
    oldest = {k: i for i, k in enumerate(owner)}  # each state's oldest Python frame
    parts: list[list[Any]] = [[] for _ in range(count)]
    current = count - 1  # the innermost state
    for item in merged:
        if isinstance(item, list):
            parts[current].extend(item)
            continue
        i = position[id(item)]
        current = owner[i]
        parts[current].append(item)
        if i == oldest[current] and current > 0:
            current -= 1  # what is older belongs to the state that called this one
    return parts
