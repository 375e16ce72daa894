"""Cores of tests/programs/scenarios.py, for tests/test_stacks.py.

    case = make_scenario_core(interp, tmpdir, "multi")   # gcore of every scenario at once
    case = make_scenario_core(interp, tmpdir, "crash")   # kernel core: SIGSEGV in "crasher"
    case = make_scenario_core(interp, tmpdir, "subinterp")  # 3.12+: a thread in a subinterpreter
    case.tids["lock-waiter"]                             # native thread id, by thread name
    case.expected_stack("lines")                         # what the interpreter itself reported

The program prints one JSON line once every thread has recorded its stack (see its header);
this module waits until every thread really blocks where it said it would (state and syscall in
/proc), releases the threads that wait for a "go" byte on standard input (the busy loop, the
crasher), then dumps the process with gdb's ``gcore`` or lets the kernel dump it.

``markers(path)`` maps ``# @NAME`` comments in a program file to their line numbers.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import corefactory
import pytest
from corefactory import CoreUnavailable, Interpreter

PROGRAM = corefactory.PROGRAMS_DIR / "scenarios.py"
MODES = ("multi", "crash", "subinterp")

#: Threads that wait for one byte on stdin before they start (busy loop, segfault).
GO_THREADS = {"multi": "busy-loop", "crash": "crasher"}

#: The non-ASCII path of scenario 6: a 4-byte character (U+1F40D) in the directory name,
#: latin-1 and CJK characters in the file name. Made at test time, never committed.
UNICODE_DIR_NAME = "dïr_🐍"
UNICODE_FILE_NAME = "scn_ünïcode_模块.py"
#: The name scenarios.py gives the thread that runs that module (a non-ASCII thread name).
UNICODE_THREAD_NAME = "ünïcode-線"

RECURSION_DEPTH = 300

_MARKER = re.compile(r"#\s*@([A-Za-z_][\w-]*)\s*$")
_READ_SYSCALL = 0
_IN_PLACE_TIMEOUT = 30.0


@functools.cache
def markers(path: str | os.PathLike) -> dict[str, int]:
    """`# @NAME` markers of a program file -> line numbers (1-based)."""
    result: dict[str, int] = {}
    with open(path, encoding="utf-8") as stream:
        for number, text in enumerate(stream, 1):
            match = _MARKER.search(text)
            if match:
                if match.group(1) in result:
                    raise ValueError(f"marker @{match.group(1)} twice in {path}")
                result[match.group(1)] = number
    return result


@dataclasses.dataclass(frozen=True)
class Frame:
    """One Python frame as the interpreter reported it live (positions: 3.11+)."""

    file: str
    line: int
    function: str
    qualname: str | None = None
    position: tuple[int | None, ...] | None = None  # (line, end_line, column, end_column)


@dataclasses.dataclass
class ScenarioCore:
    """A core of scenarios.py and what the program reported of itself while alive."""

    path: str
    interpreter: Interpreter
    mode: str
    kind: str  # gcore, sigquit (a snapshot of a sid sysroot process) or crash
    pid: int
    ready: dict
    unicode_path: str  # the non-ASCII module file (mode multi)
    argv: list[str]

    @property
    def version(self) -> tuple[int, int, int]:
        return tuple(self.ready["version"])  # type: ignore[return-value]

    @property
    def tids(self) -> dict[str, int]:
        """Native thread id of every thread that recorded itself, by thread name."""
        return dict(self.ready["tids"])

    def expected_stack(self, name: str) -> list[Frame]:
        """The frames of thread `name` (outermost first) as a core of it must show them.

        The program recorded them live just before the thread blocked; the innermost frame
        then moved on to the line of its `# @MARKER`, whose position is not known live.
        For the crasher, the frame of ctypes.string_at (Python code calling the C function that
        faults) follows.
        """
        return self._stack(self.ready["stacks"][name])

    def subinterpreter_stack(self) -> list[Frame]:
        """The frames the subinterpreter's thread state shows (mode subinterp)."""
        return self._stack(self.ready["subinterpreter_stack"])

    def _stack(self, recorded: dict) -> list[Frame]:
        host = self.interpreter.host  # files as this machine sees them (sid: chrooted)
        frames = [
            Frame(host(f[0]), f[1], f[2], f[3], tuple(f[4]) if f[4] is not None else None)
            for f in recorded["frames"]
        ]
        positions = self.version >= (3, 11)
        last = frames[-1]
        line = markers(last.file)[recorded["innermost"]]
        position = blocking_call_position(last.file, line) if positions else None
        frames[-1] = dataclasses.replace(last, line=line, position=position)
        if recorded["innermost"] == "crash_call":
            file, line, function = self.ready["string_at"]
            qualname = function if positions else None
            readable = self.interpreter.readable(file)
            position = blocking_call_position(readable, line) if positions else None
            frames.append(Frame(host(file), line, function, qualname, position))
        return frames


# --------------------------------------------------------------------------------------------
# Processes


def _argv(interp: Interpreter, mode: str, unicode_dir: str) -> list[str]:
    return [interp.path, interp.see(PROGRAM), mode, interp.see(unicode_dir)]


def _start(interp: Interpreter, argv: list[str], cwd: str, core_limit: bool) -> subprocess.Popen:
    """corefactory's starter, with a pipe on stdin (the program waits for a "go" byte)."""
    return corefactory._start(interp, argv, cwd, core_limit, stdin=subprocess.PIPE)


def _states(pid: int, tids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
    return {tid: corefactory._thread_state(pid, tid) for tid in tids}


def wait_in_place(
    pid: int,
    sleeping: Sequence[int],
    reading: Sequence[int] = (),
    timeout: float = _IN_PLACE_TIMEOUT,
) -> None:
    """Wait until every thread of `sleeping` blocks in a sleep/lock syscall and every thread of
    `reading` blocks in read(), for three polls in a row (a thread that waits a moment for the
    GIL also sits in futex())."""
    deadline = time.monotonic() + timeout
    stable = 0
    states: dict[int, tuple[str, int | None]] = {}
    while time.monotonic() < deadline:
        states = _states(pid, [*sleeping, *reading])
        ok = all(
            state == "S" and (sc is None or sc in corefactory._SLEEP_SYSCALLS)
            for tid, (state, sc) in states.items()
            if tid in sleeping
        ) and all(
            state == "S" and sc in (None, _READ_SYSCALL)
            for tid, (state, sc) in states.items()
            if tid in reading
        )
        stable = stable + 1 if ok else 0
        if stable >= 3:
            return
        time.sleep(0.02)
    raise RuntimeError(f"threads of pid {pid} did not block in place: (state, syscall) {states}")


wait_busy = corefactory.wait_busy


gcore = corefactory.gcore


def _prepare_unicode_module(interp: Interpreter, workdir: Path) -> Path:
    directory = workdir / UNICODE_DIR_NAME
    directory.mkdir()
    source = "scn_unicode2.py" if interp.version[0] == 2 else "scn_unicode3.py"
    target = directory / UNICODE_FILE_NAME
    shutil.copyfile(corefactory.PROGRAMS_DIR / source, target)
    return target


def make_scenario_core(interp: Interpreter, tmpdir: str | os.PathLike, mode: str) -> ScenarioCore:
    """Run scenarios.py MODE, wait until every thread is in place, and make its core."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if mode == "subinterp" and interp.version[:2] < (3, 12):
        raise CoreUnavailable("subinterpreters need 3.12+")
    crash = mode == "crash"
    if crash:
        corefactory.kernel_writes_cores()
    elif interp.sysroot is None and shutil.which("gcore") is None:
        raise CoreUnavailable("gcore (from gdb) is not installed")
    workdir = Path(tmpdir) / f"{mode}-{interp.id}"
    if interp.sysroot is None:
        workdir.mkdir(parents=True)
    else:
        workdir = interp.workdir(workdir)
    unicode_path = _prepare_unicode_module(interp, workdir)
    argv = _argv(interp, mode, str(unicode_path.parent))
    proc = _start(interp, argv, cwd=str(workdir), core_limit=crash or interp.sysroot is not None)
    try:
        ready = corefactory._read_ready_line(proc, argv)
        pid = ready["pid"]
        tids = ready["tids"]
        go = GO_THREADS.get(mode)
        sleeping = [tid for name, tid in tids.items() if name != go]
        wait_in_place(pid, sleeping, [tids[go]] if go else [])
        if go is not None:
            assert proc.stdin is not None
            proc.stdin.write(b"g")
            proc.stdin.flush()
        kind = "crash"
        if crash:
            path = corefactory.wait_for_core(proc, pid, argv, workdir, signal.SIGSEGV)
        else:
            if go is not None:
                wait_busy(pid, tids[go])
            path, kind = corefactory.snapshot(
                interp, proc, pid, workdir / f"core-{interp.id}-{mode}"
            )
    finally:
        corefactory._kill(proc)
    return ScenarioCore(
        path=str(path),
        interpreter=interp,
        mode=mode,
        kind=kind,
        pid=pid,
        ready=ready,
        unicode_path=str(unicode_path),
        argv=argv,
    )


def make_non_python_core(tmpdir: str | os.PathLike) -> str:
    """A gcore core of `sleep 1000`: a process without any Python in it."""
    sleep = shutil.which("sleep")
    if sleep is None:
        raise CoreUnavailable("no sleep(1) executable on this machine")
    workdir = Path(tmpdir)
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sleep, "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=workdir
    )
    try:
        wait_in_place(proc.pid, [proc.pid])
        path = gcore(proc.pid, workdir / "core-sleep")
    finally:
        corefactory._kill(proc)
    return str(path)


class ScenarioCores:
    """Cores of scenarios.py, made at most once per session; failures are remembered."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[tuple[str, str], ScenarioCore | BaseException] = {}
        self._non_python: str | BaseException | None = None

    def get(self, interp: Interpreter, mode: str) -> ScenarioCore:
        key = (interp.id, mode)
        if key not in self._made:
            try:
                self._made[key] = make_scenario_core(interp, self.root, mode)
            except Exception as exc:  # remembered: one failure, not one per test
                self._made[key] = exc
        made = self._made[key]
        if isinstance(made, CoreUnavailable):
            pytest.skip(str(made))
        if isinstance(made, BaseException):
            raise made
        return made

    def non_python(self) -> str:
        if self._non_python is None:
            try:
                self._non_python = make_non_python_core(self.root / "non-python")
            except Exception as exc:
                self._non_python = exc
        if isinstance(self._non_python, CoreUnavailable):
            pytest.skip(str(self._non_python))
        if isinstance(self._non_python, BaseException):
            raise self._non_python
        return self._non_python


# --------------------------------------------------------------------------------------------
# Text output (triage's and PyStack's share the shape)


@dataclasses.dataclass
class TextThread:
    """One `Traceback for thread ...` block (or an empty-stack line) of a text report."""

    tid: int
    name: str | None
    status: list[str]
    header: str
    group: str | None  # "In the main interpreter" / "In interpreter N" heading above it
    frames: list[tuple[str, int | None, str]] = dataclasses.field(default_factory=list)
    sources: list[str | None] = dataclasses.field(default_factory=list)
    lines: list[str] = dataclasses.field(default_factory=list)  # every line of the block


_HEADER = re.compile(
    r"^Traceback for thread (\d+)(?: \((.*)\))? \[(.*)\] \(most recent call last\):$"
)
_EMPTY = re.compile(r"^The frame stack for thread (\d+)(?: \((.*)\))? is empty$")
_FRAME = re.compile(r'^    \(Python\) File "(.*)", line (\d+|\?), in (.*)$')
_NATIVE = re.compile(r"^    \(C\) ")
_SOURCE = re.compile(r"^        (\S.*)$")
_GROUP = re.compile(r"^(In the main interpreter|In interpreter \d+)$")


def parse_tracebacks(text: str) -> list[TextThread]:
    """Every thread block of a text report, in order. Lines outside blocks are skipped."""
    threads: list[TextThread] = []
    current: TextThread | None = None
    group: str | None = None
    for line in text.splitlines():
        if match := _GROUP.match(line):
            group, current = match.group(1), None
        elif match := _HEADER.match(line):
            status = [s for s in match.group(3).split(", ") if s]
            current = TextThread(int(match.group(1)), match.group(2), status, line, group)
            current.lines.append(line)
            threads.append(current)
        elif match := _EMPTY.match(line):
            threads.append(TextThread(int(match.group(1)), match.group(2), [], line, group, []))
            threads[-1].lines.append(line)
            current = None
        elif current is not None and (match := _FRAME.match(line)):
            number = None if match.group(2) == "?" else int(match.group(2))
            current.frames.append((match.group(1), number, match.group(3)))
            current.sources.append(None)
            current.lines.append(line)
        elif current is not None and current.frames and (match := _SOURCE.match(line)):
            current.sources[-1] = match.group(1)
            current.lines.append(line)
        elif current is not None and _NATIVE.match(line):
            current.lines.append(line)
        else:
            current = None
    return threads


# --------------------------------------------------------------------------------------------
# Source positions (3.11+)

#: The calls the scenario threads block (or crash) in, as written in the programs.
BLOCKING_CALLS = frozenset(
    {
        "time.sleep",
        "ctx.lock.acquire",
        "ctypes.string_at",
        "_string_at",
        "interpreters.run_string",
    }
)


@functools.cache
def _calls_by_line(path: str) -> dict[int, list[ast.Call]]:
    try:
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    calls: dict[int, list[ast.Call]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            calls.setdefault(node.lineno, []).append(node)
    return calls


def blocking_call_position(path: str, line: int) -> tuple[int, int, int, int] | None:
    """(line, end_line, column, end_column) of the one blocking call starting on `line`, as
    CPython 3.11+ records the position of the CALL instruction (columns in UTF-8 bytes)."""
    found = [
        call
        for call in _calls_by_line(path).get(line, [])
        if ast.unparse(call.func) in BLOCKING_CALLS
    ]
    if len(found) != 1:
        return None
    call = found[0]
    assert call.end_lineno is not None and call.end_col_offset is not None
    return (call.lineno, call.end_lineno, call.col_offset, call.end_col_offset)
