"""Every thread's native stack, merged with its Python frames into the report (--native)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.coredump.corefile import CoreFile
from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.native.merge import merge
from triage.native.unwind import Module, Modules, NativeFrame, unwind
from triage.report import CoreReport, FrameReport


def native_stacks(
    core: CoreFile,
    memory: CoreMemory,
    images: list[LoadedImage],
    files: dict[str, str],
    build_ids: dict[str, str],
    debug_roots: tuple[str, ...] = (),
) -> dict[int, list[NativeFrame]]:
    """Each thread's native frames (newest first), by kernel tid; separate debug files are
    looked for in the sysroots `debug_roots` too."""
    modules = Modules(
        [
            Module(
                image.path,
                files[image.path],
                image.start,
                image.end,
                build_ids.get(image.path),
                debug_roots,
            )
            for image in images
            if image.path in files
        ]
    )
    return {t.tid: unwind(t.registers, memory, modules) for t in core.threads}


def attach_native(
    report: CoreReport, python_threads: Sequence[Any], stacks: dict[int, list[NativeFrame]]
) -> None:
    """Put each thread's native frames into its report row: merged with its Python frames
    where the two line up, alone in a thread without Python (a warning says when a thread's
    stacks do not line up; it keeps its Python frames)."""
    states: dict[int | None, list[Any]] = {}
    for thread in python_threads:
        states.setdefault(thread.tid, []).append(thread)
    for row in report.threads:
        native = stacks.get(row.tid) if row.tid is not None else None
        if not native:
            continue
        frames = [
            FrameReport(
                kind="native",
                function=f.function or "???",
                file=f.module or "???",
                address=f.pc,
            )
            for f in native
        ]
        mine = states.get(row.tid, [])
        if not row.python or not mine:
            row.frames = frames[::-1]
            continue
        if len(mine) != 1:  # thread states in several interpreters: Python frames only
            continue
        entries = [f.entry for f in mine[0].frames]
        merged = merge(frames, [f.function for f in native], row.frames[::-1], entries)
        if merged is None:
            report.warnings.append(
                f"thread {row.tid}: its native and Python frames do not line up (the native "
                f"stack could not be followed to its end?); Python frames only"
            )
            continue
        row.frames = merged[::-1]
