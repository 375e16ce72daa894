"""Python frames of one thread, newest first, for every frame representation CPython has had.

Which representation applies is the layout's `Model.frames`: a chain of `PyFrameObject` from
`PyThreadState.frame` (2.7-3.10), of `_PyInterpreterFrame` from `.cframe->current_frame`
(3.11, 3.12) or from `.current_frame` (3.13+). Each frame struct is read with one read.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

from triage.cpython.code import UNKNOWN, CodeInfo, CodeReader, unreadable_code
from triage.cpython.fields import Field, Offsets, Optional
from triage.cpython.objects import ObjectReader
from triage.cpython.qualnames import QualnameFinder
from triage.cpython.variables import Variable
from triage.errors import READ_ERRORS

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


@dataclass(slots=True)
class WalkResult:
    """A thread's frames, newest first, and what could not be read of its stack."""

    frames: list[PyFrame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class FrameObjectFields(Offsets, when=lambda m: m.frames == "frame_objects"):
    """2.7-3.10: the thread's newest PyFrameObject and its chain."""

    ts_frame = Field("PyThreadState", "frame")
    f_back = Field("PyFrameObject", "f_back")
    f_code = Field("PyFrameObject", "f_code")
    f_lasti = Field("PyFrameObject", "f_lasti")


class CFrameFields(Offsets, when=lambda m: m.frames == "cframe"):
    """3.11, 3.12: the newest interpreter frame, through the thread's _PyCFrame."""

    ts_cframe = Field("PyThreadState", "cframe")
    current = Field("_PyCFrame", "current_frame")


class ThreadFrameFields(Offsets, when=lambda m: m.frames == "thread_state"):
    """3.13+: the newest interpreter frame, in the thread state itself."""

    ts_current = Field("PyThreadState", "current_frame", debug="thread_state.current_frame")


class InterpreterFrameFields(Offsets, when=lambda m: m.frames != "frame_objects"):
    """3.11+ `_PyInterpreterFrame`s (`f_executable` is a `_PyStackRef` from 3.14)."""

    previous = Field("_PyInterpreterFrame", "previous", debug="interpreter_frame.previous")
    code = Field(
        "_PyInterpreterFrame", "f_executable", "f_code", debug="interpreter_frame.executable"
    )
    instr = Field(
        "_PyInterpreterFrame", "instr_ptr", "prev_instr", debug="interpreter_frame.instr_ptr"
    )
    owner = Optional("_PyInterpreterFrame", "owner", debug="interpreter_frame.owner")
    is_entry = Optional("_PyInterpreterFrame", "is_entry")


_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")


class FrameWalker:
    """Walks the frame stack of a thread state."""

    def __init__(self, objects: ObjectReader, codes: CodeReader) -> None:
        self.objects = objects
        self.memory = objects.memory
        self.codes = codes
        self.qualnames = QualnameFinder(objects)
        self.model = model = objects.model
        self.mode = model.frames
        # A provisional layout (a CPython newer than every table) proves itself frame by
        # frame: what is not a code object is an error there, not a frame to skip.
        self.strict = objects.layout.provisional
        if self.mode == "frame_objects":
            fo = objects.fields(FrameObjectFields)
            self.ts_frame, self.f_back, self.f_code = fo.ts_frame, fo.f_back, fo.f_code
            self.f_lasti = fo.f_lasti
            self.span = max(fo.f_back + 8, fo.f_code + 8, fo.f_lasti + 4)
            return
        if self.mode == "cframe":
            cf = objects.fields(CFrameFields)
            self.ts_cframe, self.cframe_current = cf.ts_cframe, cf.current
        else:
            self.ts_current = objects.fields(ThreadFrameFields).ts_current
        f = objects.fields(InterpreterFrameFields)
        self.previous, self.code, self.instr = f.previous, f.code, f.instr
        self.owner = f.owner if model.shim_owners else None
        self.is_entry = f.is_entry if model.entry_flag else None
        ends = [f.previous + 8, f.code + 8, f.instr + 8]
        ends += [at + 1 for at in (self.owner, self.is_entry) if at is not None]
        self.span = max(ends)  # the one read of each frame covers what is used of it

    def first_frame(self, tstate: int) -> int:
        if self.mode == "frame_objects":
            return self.memory.u64(tstate + self.ts_frame)
        if self.mode == "cframe":
            cframe = self.memory.u64(tstate + self.ts_cframe)
            return self.memory.u64(cframe + self.cframe_current) if cframe else 0
        return self.memory.u64(tstate + self.ts_current)

    def frames(self, tstate: int) -> WalkResult:
        """The thread's Python frames, newest first, and what could not be read of them: a
        frame whose code object is unreadable stays, as a placeholder (`unreadable_code`);
        a frame that cannot be read ends the walk, the newer frames kept. On a provisional
        layout both raise instead (they mean the borrowed layout is wrong)."""
        result = WalkResult()
        try:
            frame = self.first_frame(tstate)
        except READ_ERRORS as exc:
            if self.strict:
                raise
            result.problems.append(f"its newest frame cannot be found ({_why(exc)})")
            return result
        if self.mode == "frame_objects":
            self._frame_objects(frame, result)
        else:
            self._interpreter_frames(frame, result)
        return result

    def _read_frame(self, frame: int, result: WalkResult) -> bytes | None:
        """The bytes of one frame struct, or None (and a problem said) when unreadable."""
        try:
            return self.memory.read(frame, self.span)
        except READ_ERRORS as exc:
            if self.strict:
                raise
            result.problems.append(
                f"the frame at 0x{frame:x} cannot be read ({_why(exc)}); the "
                f"{len(result.frames)} newer frame(s) are shown, the older ones are lost"
            )
            return None

    def _code(self, address: int, frame: int, result: WalkResult) -> CodeInfo:
        """The frame's code object, or a placeholder (and a problem said) when unreadable."""
        try:
            return self.codes.read(address)
        except READ_ERRORS as exc:
            if self.strict:
                raise
            result.problems.append(
                f"the code object 0x{address:x} of the frame at 0x{frame:x} cannot be read "
                f"({_why(exc)}); the frame is shown as {UNKNOWN}"
            )
            return unreadable_code(address)

    def _frame_objects(self, frame: int, result: WalkResult) -> None:
        out = result.frames
        seen: set[int] = set()
        while frame and frame not in seen and len(out) < MAX_FRAMES:
            seen.add(frame)
            raw = self._read_frame(frame, result)
            if raw is None:
                return
            code = self._code(_U64.unpack_from(raw, self.f_code)[0], frame, result)
            lasti = _I32.unpack_from(raw, self.f_lasti)[0]
            qualname = self.qualnames.qualname(frame, code) if code.readable else None
            out.append(self._frame(frame, code, lasti, entry=True, qualname=qualname))
            frame = _U64.unpack_from(raw, self.f_back)[0]

    def _interpreter_frames(self, frame: int, result: WalkResult) -> None:
        out = result.frames
        seen: set[int] = set()
        untag = self.model.untag
        shims, owner_at, entry_at = self.model.shim_owners, self.owner, self.is_entry
        while frame and frame not in seen and len(out) < MAX_FRAMES:
            seen.add(frame)
            raw = self._read_frame(frame, result)
            if raw is None:
                break
            previous = _U64.unpack_from(raw, self.previous)[0]
            if owner_at is not None and raw[owner_at] in shims:
                # Not a Python frame: the eval loop's entry frame (the frames above it were
                # run by one C call of the eval loop).
                if out:
                    out[-1] = _as_entry(out[-1])
                frame = previous
                continue
            code = self._code(untag(_U64.unpack_from(raw, self.code)[0]), frame, result)
            instr = _U64.unpack_from(raw, self.instr)[0]
            index = (instr - code.code_start) // 2 if code.code_start else -1
            entry = entry_at is not None and raw[entry_at] != 0
            out.append(self._frame(frame, code, index, entry=entry))
            frame = previous
        if out:
            out[-1] = _as_entry(out[-1])

    def _frame(
        self, frame: int, code: CodeInfo, where: int, *, entry: bool, qualname: str | None = None
    ) -> PyFrame:
        if not code.readable:
            return PyFrame(frame, code, None, entry=entry)
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


def _why(exc: Exception) -> str:
    return getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"


def _as_entry(frame: PyFrame) -> PyFrame:
    if frame.entry:
        return frame
    return dataclasses.replace(frame, entry=True)
