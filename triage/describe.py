"""The interpreter model turned into report fields: threads, statuses and frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from triage.cpython.exceptions import PyException
from triage.cpython.frames import MAX_FRAMES, PyFrame
from triage.cpython.interpreter import PythonState, PyThread
from triage.report import (
    SELF_INFLICTED,
    CoreReport,
    ExceptionReport,
    FrameReport,
    LocalVariable,
    ThreadReport,
)

if TYPE_CHECKING:
    from triage.native.stacks import NativeEntry, ThreadStacks

STATUS_CRASHED = "Crashed"
STATUS_TERMINATED = "Thread terminated"
STATUS_GIL = "Has the GIL"
STATUS_GC = "Garbage collecting"


def frame_report(frame: PyFrame) -> FrameReport:
    code = frame.code
    return FrameReport(
        kind="python",
        function=code.name,
        qualname=frame.qualname,
        file=code.filename,
        line=frame.line,
        column=frame.column,
        end_line=frame.end_line,
        end_column=frame.end_column,
        locals=None
        if frame.variables is None
        else [LocalVariable(v.name, v.kind, v.value) for v in frame.variables],
    )


def exception_report(exc: PyException) -> ExceptionReport:
    return ExceptionReport(
        type=exc.type_name,
        state=exc.state,
        message=exc.message,
        frames=[frame_report(f) for f in exc.frames],
        address=exc.address,
    )


def native_report(entry: NativeEntry) -> FrameReport:
    return FrameReport(
        kind="native",
        function=entry.function,
        file=entry.file,
        line=entry.line,
        address=entry.address,
        library=entry.library,
        inlined=entry.inlined,
        hidden=entry.hidden,
        by_frame_pointer=entry.by_frame_pointer,
    )


def _report_frame(frame: Any) -> FrameReport:
    return frame_report(frame) if isinstance(frame, PyFrame) else native_report(frame)


def statuses(thread: PyThread) -> list[str]:
    out = []
    if thread.terminated:
        out.append(STATUS_TERMINATED)
    if thread.holds_gil:
        out.append(STATUS_GIL)
    if thread.gc_collecting:
        out.append(STATUS_GC)
    return out


def describe_python(report: CoreReport, state: PythonState) -> dict[int, ThreadReport]:
    """Merge the Python threads into the report's threads (matched by kernel tid), each with
    its Python frames; returns each thread state's row, by id() of the state."""
    report.python_version = str(state.version)
    report.python_binary = state.binary
    report.warnings.extend(state.warnings)
    if state.last_exception is not None:
        report.last_exception = exception_report(state.last_exception)
    by_tid = {t.tid: t for t in report.threads}
    rows: dict[int, ThreadReport] = {}
    for thread in state.threads:
        row = by_tid.get(thread.tid) if thread.tid is not None else None
        if row is None or row.python:
            # A thread of its own, or one more thread state of an OS thread that runs code in
            # several interpreters (a subinterpreter called from it): one row per state.
            crashed = row.crashed if row is not None else False
            row = ThreadReport(tid=thread.tid, crashed=crashed)
            report.threads.append(row)
        row.python = True
        row.name = thread.name
        row.interpreter_id = thread.interpreter_id
        row.holds_gil = thread.holds_gil
        row.gc_collecting = thread.gc_collecting
        row.status = statuses(thread)
        row.frames = [frame_report(f) for f in reversed(thread.frames)]
        row.exceptions = [exception_report(e) for e in thread.exceptions]
        rows[id(thread)] = row
        if len(thread.frames) >= MAX_FRAMES:
            report.warnings.append(
                f"thread {thread.tid}: the stack is deeper than {MAX_FRAMES} frames; "
                f"only the newest {MAX_FRAMES} are shown"
            )
        report.warnings += [f"thread {thread.tid}: {w}" for w in thread.warnings]
    return rows


def describe_native(
    report: CoreReport, native: ThreadStacks[Any], rows: dict[int, ThreadReport]
) -> None:
    """What the native stacks add to the report's threads: each thread state's row (`rows`,
    from describe_python) gets its merged Python and native frames, threads no interpreter
    knows their native frames; the statuses native frames tell, the unwinding's warnings."""
    for key, frames in native.merged.items():
        if key in rows:
            rows[key].frames = [_report_frame(f) for f in frames]
    for row in report.threads:
        if row.tid is None:
            continue
        row.status += [s for s in native.status.get(row.tid, []) if s not in row.status]
        if not row.python and row.tid in native.native_only:
            row.frames = [native_report(e) for e in native.native_only[row.tid]]
    report.warnings.extend(native.warnings)


def mark_crashed(report: CoreReport) -> None:
    """The thread that died of its own doing (a fault, abort()) says so first in its status.
    One that another process's signal killed (`crashed` too) was just where it landed."""
    if report.signal is None or report.signal.origin not in SELF_INFLICTED:
        return
    for row in report.threads:
        if row.crashed and STATUS_CRASHED not in row.status:
            row.status.insert(0, STATUS_CRASHED)
