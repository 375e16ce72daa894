"""Python frames of one thread, newest first, for every frame representation CPython has had.

Which representation applies is read off the layout (fields present), not off version numbers:
`PyThreadState.frame` -> a chain of PyFrameObject (2.7-3.10); `cframe` -> _PyCFrame pointing
at _PyInterpreterFrame (3.11, 3.12); `current_frame` -> _PyInterpreterFrame (3.13+).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from triage.cpython.code import CodeInfo, CodeReader
from triage.cpython.layout import Layout
from triage.cpython.objects import ObjectReader
from triage.cpython.qualnames import QualnameFinder
from triage.cpython.variables import Variable
from triage.errors import AddressError

MAX_FRAMES = 100_000


@dataclass(frozen=True, slots=True)
class PyFrame:
    """One Python frame as the user reads it."""

    address: int
    code: CodeInfo
    line: int | None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None
    entry: bool = False
    """The first Python frame run by a C call of the eval loop (native merging uses it)."""
    qualname: str | None = None
    """co_qualname (3.11+), or `Class.method` found through the frame's first argument."""
    variables: list[Variable] | None = None
    """Arguments and locals, when asked for (`read_python(variables=True)`)."""


class FrameWalker:
    """Walks the frame stack of a thread state."""

    def __init__(self, objects: ObjectReader, codes: CodeReader) -> None:
        self.objects = objects
        self.memory = objects.memory
        self.codes = codes
        self.qualnames = QualnameFinder(objects)
        lay: Layout = objects.layout
        self.layout = lay
        ts = "PyThreadState"
        if lay.has(ts, "frame"):
            self.mode = "frameobject"
            self.ts_frame = lay.offset(ts, "frame")
            self.f_back = lay.offset("PyFrameObject", "f_back")
            self.f_code = lay.offset("PyFrameObject", "f_code")
            self.f_lasti = lay.offset("PyFrameObject", "f_lasti")
        else:
            self.mode = "interpreter"
            iframe = "_PyInterpreterFrame"
            if lay.has(ts, "cframe"):
                self.cframe = lay.offset(ts, "cframe")
                self.cframe_current = lay.offset("_PyCFrame", "current_frame")
            else:
                self.cframe = None
                self.ts_current = lay.offset(ts, "current_frame")
            self.previous = lay.offset(iframe, "previous")
            code_field = "f_code" if lay.has(iframe, "f_code") else "f_executable"
            self.code = lay.offset(iframe, code_field)
            instr_field = "prev_instr" if lay.has(iframe, "prev_instr") else "instr_ptr"
            self.instr = lay.offset(iframe, instr_field)
            self.is_entry = lay.offset(iframe, "is_entry") if lay.has(iframe, "is_entry") else None
            self.owner = lay.offset(iframe, "owner") if lay.has(iframe, "owner") else None
            self.cstack_owner = (
                lay.constant("FRAME_OWNED_BY_CSTACK")
                if lay.has_constant("FRAME_OWNED_BY_CSTACK")
                else 3
            )

    def first_frame(self, tstate: int) -> int:
        if self.mode == "frameobject":
            return self.memory.u64(tstate + self.ts_frame)
        if self.cframe is not None:
            cframe = self.memory.u64(tstate + self.cframe)
            return self.memory.u64(cframe + self.cframe_current) if cframe else 0
        return self.memory.u64(tstate + self.ts_current)

    def frames(self, tstate: int) -> list[PyFrame]:
        """The thread's Python frames, newest first. Unreadable frames end the walk."""
        frame = self.first_frame(tstate)
        if self.mode == "frameobject":
            return self._frame_objects(frame)
        return self._interpreter_frames(frame)

    def _frame_objects(self, frame: int) -> list[PyFrame]:
        out: list[PyFrame] = []
        seen: set[int] = set()
        while frame and frame not in seen and len(out) < MAX_FRAMES:
            seen.add(frame)
            code = self.codes.read(self.memory.u64(frame + self.f_code))
            lasti = self.memory.i32(frame + self.f_lasti)
            qualname = self.qualnames.qualname(frame, code)
            out.append(self._frame(frame, code, lasti, entry=True, qualname=qualname))
            frame = self.memory.u64(frame + self.f_back)
        return out

    def _interpreter_frames(self, frame: int) -> list[PyFrame]:
        out: list[PyFrame] = []
        seen: set[int] = set()
        while frame and frame not in seen and len(out) < MAX_FRAMES:
            seen.add(frame)
            previous = self.memory.u64(frame + self.previous)
            if self.owner is not None:
                owner = self.memory.read(frame + self.owner, 1)[0]
                if owner == self.cstack_owner:  # a shim: the frames above it were a C call
                    if out:
                        out[-1] = _as_entry(out[-1])
                    frame = previous
                    continue
            code_addr = self.memory.u64(frame + self.code)
            try:
                code = self.codes.read(code_addr)
            except (AddressError, ValueError):
                frame = previous
                continue
            instr = self.memory.u64(frame + self.instr)
            index = (instr - code.code_start) // 2 if code.code_start else -1
            entry = bool(
                self.is_entry is not None and self.memory.read(frame + self.is_entry, 1)[0]
            )
            out.append(self._frame(frame, code, index, entry=bool(entry)))
            frame = previous
        if out:
            out[-1] = _as_entry(out[-1])
        return out

    def _frame(
        self, frame: int, code: CodeInfo, where: int, *, entry: bool, qualname: str | None = None
    ) -> PyFrame:
        pos = self.codes.position(code, where)
        return PyFrame(
            frame,
            code,
            pos.line,
            pos.column,
            pos.end_line,
            pos.end_column,
            entry,
            qualname or code.qualname,
        )


def _as_entry(frame: PyFrame) -> PyFrame:
    if frame.entry:
        return frame
    return dataclasses.replace(frame, entry=True)
