"""The interpreter model of a dead process: interpreters, their threads and Python stacks."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field

from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.cpython.code import CodeReader
from triage.cpython.exceptions import ExceptionReader, PyException
from triage.cpython.fields import Field, Offsets, Optional
from triage.cpython.frames import FrameWalker, PyFrame
from triage.cpython.layout import Layout, MissingField
from triage.cpython.objects import ObjectReader
from triage.cpython.runtime import (
    PythonBinary,
    PythonNotFound,
    detect_version,
    find_python_binary,
    layout_for,
    runtime_address,
    supported_versions,
)
from triage.cpython.thread_names import thread_names
from triage.cpython.variables import VariableReader
from triage.cpython.version import PythonVersion
from triage.errors import READ_ERRORS, ReadError

MAX_THREADS = 100_000
MAX_INTERPRETERS = 1_000
Py_TPFLAGS_DICT_SUBCLASS = 1 << 29

_IS, _TS, _RT = "PyInterpreterState", "PyThreadState", "_PyRuntimeState"


class StateFields(Offsets):
    """Interpreters and their lists of thread states."""

    i_next = Field(_IS, "next", debug="interpreter_state.next")
    i_id = Optional(_IS, "id", debug="interpreter_state.id")
    i_threads = Field(_IS, "threads.head", "tstate_head", debug="interpreter_state.threads_head")
    i_modules = Field(_IS, "imports.modules", "modules", debug="interpreter_state.imports_modules")
    t_next = Field(_TS, "next", debug="thread_state.next")
    t_prev = Optional(_TS, "prev", debug="thread_state.prev")
    t_interp = Field(_TS, "interp", debug="thread_state.interp")
    t_thread_id = Field(_TS, "thread_id", debug="thread_state.thread_id")
    t_native = Optional(_TS, "native_thread_id", debug="thread_state.native_thread_id")


class RuntimeFields(Offsets):
    """The runtime's list of interpreters (3.7+) and its finalizing flag."""

    interpreters = Optional(_RT, "interpreters.head", debug="runtime_state.interpreters_head")
    finalizing = Optional(_RT, "_finalizing", "finalizing", debug="runtime_state.finalizing")


class InterpreterGilFields(Offsets, when=lambda m: m.gil == "interpreter"):
    """3.12+: each interpreter points to the GIL it uses."""

    gil = Field(_IS, "ceval.gil", debug="interpreter_state.ceval_gil")
    locked = Field("_gil_runtime_state", "locked")
    holder = Field("_gil_runtime_state", "last_holder")


class RuntimeGilFields(Offsets, when=lambda m: m.gil == "runtime"):
    """3.7-3.11: the runtime's current thread state holds the GIL."""

    current = Field(_RT, "gilstate.tstate_current")


class InterpreterGcFields(Offsets, when=lambda m: m.gc == "interpreter"):
    """3.9+: each interpreter's collector."""

    collecting = Field(_IS, "gc.collecting", debug="interpreter_state.gc+gc.collecting")


class RuntimeGcFields(Offsets, when=lambda m: m.gc == "runtime"):
    """3.7, 3.8: the runtime's collector."""

    collecting = Field(_RT, "gc.collecting")


@dataclass
class PyThread:
    """One Python thread state and its stack."""

    interpreter_id: int
    tstate: int
    thread_id: int
    tid: int | None
    frames: list[PyFrame] = field(default_factory=list)
    holds_gil: bool = False
    gc_collecting: bool = False
    name: str | None = None
    terminated: bool = False
    warnings: list[str] = field(default_factory=list)
    """What could not be read of the thread (its stack cut short, frames shown as ???)."""
    exceptions: list[PyException] = field(default_factory=list)
    """Raised, then handled innermost first, each followed by what it was raised from."""


@dataclass
class PythonState:
    """Everything read of the interpreter(s)."""

    version: PythonVersion
    binary: str
    layout_source: str
    threads: list[PyThread] = field(default_factory=list)
    finalizing: bool = False
    gc_collecting: bool = False
    warnings: list[str] = field(default_factory=list)
    vectorcall: bool = True
    """The interpreter calls through vectorcall (3.8+): native display rules depend on it."""
    last_exception: PyException | None = None
    """The main interpreter's `sys.last_exc` (or `sys.last_value`)."""


class Interpreter:
    """Reads one CPython runtime out of core memory, given its binary and layout."""

    def __init__(self, memory: CoreMemory, binary: PythonBinary, layout: Layout) -> None:
        self.memory = memory
        self.binary = binary
        self.layout = layout
        self.objects = ObjectReader(memory, layout)
        self.codes = CodeReader(self.objects)
        self.walker = FrameWalker(self.objects, self.codes)
        self._variables: VariableReader | None = None
        self.model = self.objects.model
        f = self.objects.fields(StateFields)
        self.i_next, self.i_id, self.i_threads = f.i_next, f.i_id, f.i_threads
        self.i_modules = f.i_modules
        self.t_next, self.t_interp, self.t_prev = f.t_next, f.t_interp, f.t_prev
        self.t_thread_id, self.t_native = f.t_thread_id, f.t_native
        self.runtime_fields = self.objects.fields(RuntimeFields)
        self.runtime = runtime_address(binary)
        self.exceptions: ExceptionReader | None = None
        # A layout known only through debug offsets may lack their members: no exceptions.
        with contextlib.suppress(MissingField):
            self.exceptions = ExceptionReader(self.walker, self.variables)

    # -- validation -------------------------------------------------------------------

    def valid_interpreter(self, interp: int, *, strict: bool = False) -> bool:
        """A thread list whose first state points back (or, unless `strict`, no threads yet)
        and, when `strict`, a dict of modules too."""
        try:
            head = self.memory.u64(interp + self.i_threads)
            if head:
                if self.memory.u64(head + self.t_interp) != interp:
                    return False
                if self.t_prev is not None and self.memory.u64(head + self.t_prev) != 0:
                    return False  # the head of the list has no predecessor
            elif strict:
                return False
            if self.i_id is not None and not 0 <= self.memory.i64(interp + self.i_id) < 1 << 20:
                return False
        except ReadError:
            return False
        return self._modules_is_dict(interp) if strict or not head else True

    def _modules_is_dict(self, interp: int) -> bool:
        try:
            obj = self.memory.u64(interp + self.i_modules)
            if not obj:
                return False
            flags = self.memory.u64(self.objects.type_of(obj) + self.objects.tp_flags)
        except ReadError:
            return False
        return bool(flags & Py_TPFLAGS_DICT_SUBCLASS)

    # -- walking ----------------------------------------------------------------------

    def interpreters(self, exhaustive: bool = False) -> list[int]:
        """Every interpreter state, main interpreter last, as CPython links them."""
        for head in self.interpreter_heads():
            if self.valid_interpreter(head):
                return self._chain(head, self.i_next, MAX_INTERPRETERS)
        if self.layout.provisional:
            raise unvalidated(self.layout, "no interpreter state validates")
        found = self.scan_for_interpreter(exhaustive)
        if found:
            return self._chain(found, self.i_next, MAX_INTERPRETERS)
        raise PythonNotFound(
            "interpreter_not_found",
            f"found {self.binary.path} (Python {self.layout.version[0]}.{self.layout.version[1]}) "
            f"but no valid interpreter state"
            + ("" if exhaustive else "; try --exhaustive to search all of memory"),
        )

    def interpreter_heads(self) -> list[int]:
        """Candidate addresses of the first PyInterpreterState, most trusted first."""
        out = []
        at = self.runtime_fields.interpreters
        if self.runtime is not None and at is not None:
            with contextlib.suppress(ReadError):
                out.append(self.memory.u64(self.runtime + at))
        head_sym = self.binary.address("interp_head")
        if head_sym is not None:
            with contextlib.suppress(ReadError):
                out.append(self.memory.u64(head_sym))
        return [a for a in dict.fromkeys(out) if a]

    def scan_for_interpreter(self, exhaustive: bool) -> int | None:
        """Search writable memory for a pointer to something that validates as an interpreter:
        the binary's own data by default, all dumped memory with `exhaustive`."""
        regions = []
        for name in (".data", ".bss", ".PyRuntime"):
            sec = self.binary.section(name)
            if sec:
                regions.append(sec)
        if exhaustive:
            regions += [(s.vaddr, s.filesz) for s in self.memory.segments if s.filesz]
        tried: set[int] = set()
        for start, size in regions:
            try:
                blob = self.memory.read(start, size)
            except ReadError:
                continue
            for i in range(0, len(blob) - 7, 8):
                ptr = int.from_bytes(blob[i : i + 8], "little")
                if ptr < 0x10000 or ptr in tried or ptr & 7:
                    continue
                tried.add(ptr)
                if self.memory.segment_at(ptr) is None:
                    continue
                if self.valid_interpreter(ptr, strict=True):
                    return ptr
        return None

    def _chain(self, first: int, next_offset: int, limit: int) -> list[int]:
        out: list[int] = []
        seen: set[int] = set()
        node = first
        while node and node not in seen and len(out) < limit:
            seen.add(node)
            out.append(node)
            try:
                node = self.memory.u64(node + next_offset)
            except ReadError:
                break
        return out

    def thread_states(self, interp: int) -> list[int]:
        return self._chain(self.memory.u64(interp + self.i_threads), self.t_next, MAX_THREADS)

    def interpreter_id(self, interp: int) -> int:
        if self.i_id is None:
            return 0
        return self.memory.i64(interp + self.i_id)

    # -- GIL, GC, finalizing ----------------------------------------------------------

    def gil_holder(self, interp: int) -> int | None:
        """The thread state holding the GIL, if any can be told."""
        mem, where = self.memory, self.model.gil
        try:
            if where == "interpreter":
                f = self.objects.fields(InterpreterGilFields)
                gil = mem.u64(interp + f.gil)
                if not gil:
                    return None
                holder = mem.u64(gil + f.holder)
                return holder if mem.i32(gil + f.locked) and holder else None
            if where == "runtime" and self.runtime is not None:
                current = self.objects.fields(RuntimeGilFields).current
                return mem.u64(self.runtime + current) or None
            addr = self.binary.address("_PyThreadState_Current")
            if addr is not None:
                return mem.u64(addr) or None
        except ReadError:
            return None
        return None

    def gc_collecting(self, interp: int) -> bool:
        mem, where = self.memory, self.model.gc
        try:
            if where == "interpreter":
                collecting = self.objects.fields(InterpreterGcFields).collecting
                return mem.i32(interp + collecting) != 0
            if where == "runtime" and self.runtime is not None:
                collecting = self.objects.fields(RuntimeGcFields).collecting
                return mem.i32(self.runtime + collecting) != 0
            addr = self.binary.address("collecting")
            if addr is not None:
                return mem.i32(addr) != 0
        except ReadError:
            return False
        return False

    def variables(self) -> VariableReader:
        """The reader of frame variables (made on first use: only --locals needs it)."""
        if self._variables is None:
            self._variables = VariableReader(self.objects)
        return self._variables

    def finalizing(self) -> bool:
        mem, at = self.memory, self.runtime_fields.finalizing
        try:
            if self.runtime is not None and at is not None:
                return mem.u64(self.runtime + at) != 0
            addr = self.binary.address("_Py_Finalizing")
            if addr is not None:
                return mem.u64(addr) != 0
        except ReadError:
            return False
        return False


def unvalidated(layout: Layout, why: str) -> PythonNotFound:
    """The error for a CPython newer than every table whose debug offsets led nowhere."""
    major, minor = layout.version
    return PythonNotFound(
        "unsupported_python_version",
        f"Python {major}.{minor} is newer than every layout table and the structures its "
        f"_Py_DebugOffsets describe do not validate: {why} (supported: {supported_versions()})",
    )


def pthread_tid_offset(memory: CoreMemory, pthread_ids: list[int], tids: set[int]) -> int | None:
    """Where glibc's `struct pthread` keeps the kernel tid: the offset at which the most
    pthread_t values point to a known thread id (found once per core)."""
    votes: Counter[int] = Counter()
    for pt in pthread_ids:
        blob = b""
        for span in (0x1000, 0x800, 0x400):
            try:
                blob = memory.read(pt, span)
                break
            except ReadError:
                continue
        for off in range(0, len(blob) - 3, 4):
            if int.from_bytes(blob[off : off + 4], "little") in tids:
                votes[off] += 1
    if not votes:
        return None
    return votes.most_common(1)[0][0]


def read_python(
    memory: CoreMemory,
    images: list[LoadedImage],
    files: dict[str, str],
    executable_mapping: str | None,
    core_tids: list[int],
    *,
    build_ids: dict[str, str] | None = None,
    exhaustive: bool = False,
    variables: bool = False,
) -> PythonState:
    """Read every interpreter and thread; raises PythonNotFound when there is no Python.

    `files` maps recorded paths to local files; `build_ids` their verified build-ids (caching);
    `variables`: read each frame's arguments and locals too.
    """
    binary = find_python_binary(images, files, executable_mapping, build_ids)
    if binary is None:
        missing = [
            i.path
            for i in images
            if i.path not in files and re.match(r"(lib)?python\d", i.path.rsplit("/", 1)[-1])
        ]
        if missing:
            raise PythonNotFound(
                "python_binary_not_found",
                f"the process ran {missing[0]}, which is not on this machine; point "
                f"--lib-search-path or --lib-search-root at a copy of it (or pass the executable)",
            )
        raise PythonNotFound(
            "not_python",
            "no CPython found in the core: neither a libpython nor an executable exporting "
            "Py_Initialize was mapped (or found on this machine); if the libraries live "
            "elsewhere pass --lib-search-path/--lib-search-root or the executable",
        )
    ver = detect_version(memory, binary)
    layout, notes = layout_for(memory, binary, ver)
    interp = Interpreter(memory, binary, layout)
    state = PythonState(ver, binary.path, layout.derived_from, warnings=notes)
    state.vectorcall = interp.model.vectorcall
    tidset = set(core_tids)
    pending: list[PyThread] = []
    exceptions = interp.exceptions
    istate = 0
    for istate in interp.interpreters(exhaustive):
        iid = interp.interpreter_id(istate)
        holder = interp.gil_holder(istate)
        collecting = interp.gc_collecting(istate)
        state.gc_collecting |= collecting
        names = thread_names(interp, istate)
        for ts in interp.thread_states(istate):
            try:
                thread = PyThread(iid, ts, memory.u64(ts + interp.t_thread_id), None)
                if interp.t_native is not None:
                    thread.tid = memory.i32(ts + interp.t_native) or None
            except ReadError as exc:
                if layout.provisional:
                    raise unvalidated(layout, exc.message) from exc
                state.warnings.append(
                    f"the thread state at 0x{ts:x} cannot be read ({exc.message}); "
                    f"its thread's Python stack is left out"
                )
                continue
            thread.name = names.get(thread.thread_id)
            thread.holds_gil = holder == ts
            thread.gc_collecting = collecting and thread.holds_gil
            try:
                walk = interp.walker.frames(ts)
            except READ_ERRORS as exc:  # only on a provisional layout
                why = getattr(exc, "message", str(exc))
                raise unvalidated(layout, f"a frame does not validate ({why})") from exc
            thread.frames = walk.frames
            thread.warnings += walk.problems
            if variables:
                _read_variables(interp, thread)
            if exceptions is not None:
                thread.exceptions = exceptions.thread_exceptions(ts)
            pending.append(thread)
    if exceptions is not None and istate:  # the main interpreter is the last one
        state.last_exception = exceptions.last_exception(istate)
    if interp.t_native is None:
        offset = pthread_tid_offset(memory, [t.thread_id for t in pending], tidset)
        for t in pending:
            if offset is not None:
                try:
                    t.tid = memory.i32(t.thread_id + offset)
                except ReadError:
                    t.tid = None
    for t in pending:
        t.terminated = t.tid is not None and t.tid not in tidset
    state.threads = pending
    state.finalizing = interp.finalizing()
    if state.finalizing:
        state.warnings.append(
            "The interpreter was shutting down when the core was made; stacks may be empty"
        )
    return state


def _read_variables(interp: Interpreter, thread: PyThread) -> None:
    """Fill each frame's variables; a frame whose slots cannot be read gets none (empty)."""
    reader = interp.variables()
    for i, frame in enumerate(thread.frames):
        if not frame.code.readable:
            continue
        try:
            found = reader.variables(frame.address, frame.code)
        except READ_ERRORS:
            found = []
        thread.frames[i] = dataclasses.replace(frame, variables=found)
