"""The report of one core: the JSON output and the Parquet row.

The models are typed stdlib dataclasses, validated, serialised and described (JSON Schema) by
pydantic through `adapter()`. They are not `BaseModel` subclasses on purpose: importing
pydantic's BaseModel costs 150-220 ms on our machines, more than PyStack's whole `pystack core`
run, and `triage core` in text mode never needs it. JSON output, Parquet rows and schema export
go through `adapter()`, which imports pydantic on first use. Field documentation is written as
attribute docstrings, which pydantic reads (`use_attribute_docstrings`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from triage.kinds import ErrorKind, SweepStatus

if TYPE_CHECKING:
    from pydantic import TypeAdapter
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object):
        """The marker only type checkers read (typing has it from 3.11 on)."""
        return lambda decorated: decorated


SCHEMA_VERSION = 1

Compression = Literal["none", "gzip", "zstd", "xz", "lz4"]
Origin = Literal["crash", "sent", "signal", "on_demand"]
VariableKind = Literal["argument", "local", "cell", "free"]
ExceptionState = Literal["raised", "handling", "context", "cause", "last"]
#: The origins at which the thread that took the signal died of its own doing: a fault, or a
#: signal the process sent itself (abort(), raise()); its native frames say where.
SELF_INFLICTED: tuple[Origin, ...] = ("crash", "signal")

_CONFIG = {"use_attribute_docstrings": True, "extra": "forbid"}

_Model = TypeVar("_Model")


@dataclass_transform(field_specifiers=(field,))
def model(cls: type[_Model]) -> type[_Model]:
    """Declare a report model: a slotted dataclass that pydantic validates with our config.
    Type checkers see it as the dataclass it makes (`dataclass_transform`), with its fields
    as the constructor's arguments."""
    cls.__pydantic_config__ = _CONFIG  # type: ignore[attr-defined]
    return dataclass(slots=True)(cls)


@model
class CoreFileInfo:
    """The core file as given: where, how big on disk, how it was compressed."""

    path: str
    """Path (or URL) of the core as given."""
    size: int = 0
    """Size in bytes of the file as given (the compressed size if compressed)."""
    compression: Compression = "none"
    """How the file was compressed, recognised by content."""
    uncompressed_size: int | None = None
    """Size in bytes of the ELF core itself."""


@model
class ProcessInfo:
    """What the kernel recorded of the process (NT_PRPSINFO)."""

    pid: int
    ppid: int
    sid: int
    pgrp: int
    uid: int
    gid: int
    state: str
    """Process state letter as in ps(1), e.g. 'R', 'S', 't'."""
    zombie: bool
    nice: int
    executable: str
    """Base name of the executable, at most 15 characters (pr_fname)."""
    arguments: str
    """Command line, truncated by the kernel at 80 bytes (pr_psargs)."""
    flags: int = 0


@model
class SignalInfo:
    """Why the core was made."""

    number: int
    """Signal number; 0 when the core names none."""
    name: str
    code: int
    """si_code: 0 SI_USER, -6 SI_TKILL, 0x80 SI_KERNEL, >0 a fault code."""
    origin: Origin
    """crash: a fault with an address; sent: by another process; signal: any other signal;
    on_demand: the process did not crash (gcore and the like)."""
    description: str
    """The sentence a person reads, as printed in text mode."""
    errno: int = 0
    sender_pid: int | None = None
    sender_uid: int | None = None
    fault_address: Annotated[int, "arrow:uint64"] | None = None


@model
class LocalVariable:
    """An argument or local variable of a Python frame (with --locals)."""

    name: str
    kind: VariableKind
    """"cell": a local that closures share; "free": a variable of an enclosing function."""
    value: str
    """A short repr: None, bools, numbers, str and bytes as Python shows them (cut at 120
    characters; ints beyond 384 bits as `<int of N bits>`), lists, tuples and dicts by their
    first 5 items, other objects as `<TYPE object at 0xADDRESS>`."""


@model
class FrameReport:
    """One frame of a thread's stack."""

    kind: Literal["python", "native"]
    function: str
    """co_name for Python frames; for native ones the function (the symbol, or DWARF's name
    of an inlined call), or ??? when unknown."""
    file: str
    """The source file (native frames: as the DWARF line table records it, ??? without
    debug information)."""
    line: int | None = None
    qualname: str | None = None
    """co_qualname (3.11+): Class.method, outer.<locals>.inner."""
    column: int | None = None
    """0-based start column (3.11+), as CPython records it."""
    end_line: int | None = None
    end_column: int | None = None
    locals: list[LocalVariable] | None = None
    """Arguments and local variables (Python frames, with --locals); None when not asked."""
    address: Annotated[int, "arrow:uint64"] | None = None
    """Instruction address (native frames, with --native): the return address but for the
    newest frame; the inlined calls at an address share it."""
    library: str | None = None
    """The mapped file the native frame's code is in (as the core names it)."""
    inlined: bool = False
    """A native call the compiler inlined into the function of the next frame."""
    hidden: bool = False
    """A native frame PyStack's display rules leave out (the interpreter's call machinery);
    the text output shows it with --native-unfiltered."""
    by_frame_pointer: bool = False
    """A native frame found through the frame pointer of the one below it, which no
    call-frame information described (a guess for code built without frame pointers)."""


@model
class ExceptionReport:
    """An exception a thread was raising or handling, or the process's last uncaught one."""

    type: str
    """Its class as Python's traceback names it: `ValueError`, `_ctypes.ArgumentError`, and
    `module.Qual.Name` for classes defined in Python (`__main__.AppError`; builtins left
    out)."""
    state: ExceptionState
    """raised: set and not yet caught (propagating through C, or in C code that has not
    returned yet); handling: being handled (in an except block, or a finally or with exit run
    by it); context: the exception the one before it in the list was raised while handling
    (its `__context__`; in nested except blocks, the outer one); cause: the one before's
    `__cause__` (`raise ... from`); last: the last uncaught exception the interpreter
    printed (`sys.last_exc`, `sys.last_value`)."""
    message: str | None = None
    """What `str(exc)` gives for the common cases: empty for no arguments, the argument's
    text for one str (its repr for KeyError; at most 1000 characters), other values and
    several arguments as --locals shows them (the arguments' tuple); None when unknown."""
    frames: list[FrameReport] = field(default_factory=list)
    """Its traceback (`__traceback__`): where it was raised, most recent call LAST."""
    address: Annotated[int, "arrow:uint64"] | None = None
    """The exception object; None for an exception set from C and not normalised yet (only
    its class and argument exist, <= 3.11)."""


@model
class ThreadReport:
    """One thread of the dead process, with its Python stack."""

    tid: int | None
    """Kernel thread id (as in NT_PRSTATUS); None when it could not be told."""
    crashed: bool = False
    """This thread took the signal that made the core."""
    name: str | None = None
    """The Python thread name (threading.Thread.name), when known."""
    interpreter_id: int | None = None
    """The interpreter the thread state belongs to (0: the main one); None: no Python."""
    python: bool = False
    """The thread has a Python thread state."""
    holds_gil: bool = False
    gc_collecting: bool = False
    status: list[str] = field(default_factory=list)
    """What the thread was doing, as printed: Thread terminated, Has the GIL, ..."""
    frames: list[FrameReport] = field(default_factory=list)
    """Frames, most recent call LAST, as printed."""
    exceptions: list[ExceptionReport] = field(default_factory=list)
    """The exceptions of the thread: the raised one first, then those it handles, innermost
    first (one for the thread, one for each running generator or coroutine), each followed
    by its cause or context; each exception once, at most 8."""


@model
class LibraryReport:
    """One file mapped into the process, and where it was found for analysis."""

    path: str
    """Path recorded in the core."""
    start: int
    """Lowest address mapped from this file."""
    found_path: str | None = None
    """The file on this machine used in its place, if any."""
    build_id: str | None = None
    """GNU build-id read from the core's memory."""
    found_build_id: str | None = None
    """GNU build-id of found_path."""
    build_id_matches: bool | None = None
    """Whether found_path is the very build that was loaded (None: not known)."""


@model
class Signature:
    """A crash reduced to what identifies it: the reason plus the top meaningful frames."""

    text: str
    """The signature as people read it: `SIGSEGV | pkg.mod:Class.method | native_func`."""
    id: str
    """A short stable hash of `text` (12 hex digits): the group key."""
    version: int
    """Version of the algorithm (docs/signatures.md); ids of different versions differ."""
    reason: str
    """The signal name, with abort/raise folded in (`SIGABRT (abort)`)."""
    frames: list[str] = field(default_factory=list)
    """The frames in `text`, most recent first."""
    all_frames: list[str] = field(default_factory=list)
    """Every frame of the thread(s) used, normalised, most recent first, before skipping:
    `triage regroup` recomputes signatures from these with new rules, without the cores."""
    thread: int | None = None
    """The tid of the thread the signature was taken from (None: several threads' tops)."""


@model
class ErrorInfo:
    """Why the analysis stopped."""

    kind: ErrorKind
    """Stable machine-readable kind, e.g. not_elf, truncated_core, wrong_executable: one of
    `triage.kinds.ErrorKind` (docs/errors.md says what each means)."""
    message: str
    """One line for a person: the problem and what to do."""


@model
class CoreReport:
    """Everything triage learnt from one core file."""

    core: CoreFileInfo
    schema_version: int = SCHEMA_VERSION
    triage_version: str = ""
    executable: str | None = None
    """The executable used for the analysis."""
    executable_source: Literal["core", "argument"] | None = None
    python_version: str | None = None
    """The CPython version of the process, as precise as the core tells ("3.12.1")."""
    python_binary: str | None = None
    """The file holding the interpreter (libpython or the executable), as recorded."""
    test: str | None = None
    """The test that was running (PYTEST_CURRENT_TEST in the process's environment)."""
    signature: Signature | None = None
    process: ProcessInfo | None = None
    signal: SignalInfo | None = None
    threads: list[ThreadReport] = field(default_factory=list)
    last_exception: ExceptionReport | None = None
    """The last uncaught exception the main interpreter printed (`sys.last_exc`,
    `sys.last_value`): an interactive session's, or the main script's when the process died
    after it (in an atexit function, a finaliser)."""
    libraries: list[LibraryReport] = field(default_factory=list)
    library_search_path: list[str] = field(default_factory=list)
    """Directories searched by file name, in order (from --lib-search-path/-root)."""
    missing_libraries: list[str] = field(default_factory=list)
    mismatched_libraries: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: ErrorInfo | None = None
    analysis_seconds: float | None = None


@functools.lru_cache(maxsize=8)
def adapter(model: type = CoreReport) -> TypeAdapter[Any]:
    """pydantic's validator and serialiser of a report model (CoreReport by default; the
    dataset row SweepRecord too), built once per model, on first use."""
    from pydantic import TypeAdapter

    return TypeAdapter(model)


def to_json(report: CoreReport, *, indent: int | None = 2) -> str:
    """The report as JSON text (what pydantic's dump_json gives, up to how a float is spelt),
    without pydantic: an out-of-memory is then a MemoryError, not an abort in its Rust core."""
    separators = (",", ":") if indent is None else None
    return json.dumps(to_plain(report), indent=indent, ensure_ascii=False, separators=separators)


def from_json(text: str | bytes) -> CoreReport:
    report: CoreReport = adapter().validate_json(text)
    return report


def to_plain(value: Any) -> Any:
    """A report model (or a list/dict of them) as plain JSON-compatible data, equal to what
    pydantic's `dump_python(mode="json")` gives (the models hold only str, int, float, bool,
    None, lists, str-keyed dicts and models), without importing pydantic: the sweep's
    analysis children and workers build dataset rows with it, one per core."""
    names = _FIELD_NAMES.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_plain(getattr(value, name)) for name in names}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@model
class Collection:
    """Where and how a core was collected (from the source, systemd-coredump, a sidecar)."""

    source_url: str
    """Where the core was read from (a path or an fsspec URL)."""
    fleet: str | None = None
    host: str | None = None
    comm: str | None = None
    """The process's command name as the collector recorded it."""
    exe: str | None = None
    uid: int | None = None
    pid: int | None = None
    signal: int | None = None
    timestamp: str | None = None
    """When the core was made (ISO 8601, UTC), as the collector recorded it."""
    size: int | None = None
    etag: str | None = None
    mtime: str | None = None
    """Last-modified time of the object or file (ISO 8601, UTC)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Any other collector metadata (systemd-coredump fields, sidecar keys, object metadata)."""


@model
class SweepRecord:
    """One row of the sweep dataset: a core's report with how and when it was analysed."""

    core_id: str
    """Deterministic identity of the core: hash of its URL and etag/size/mtime."""
    sweep_id: str
    sweep_date: str
    """YYYY-MM-DD of the sweep (a partition key)."""
    fleet: str
    """The fleet the core matched ("default" when none did; a partition key)."""
    status: SweepStatus
    """"ok", or the kind of error that stopped the analysis (docs/errors.md)."""
    collection: Collection
    report: CoreReport
    error_message: str | None = None
    analysis_seconds: float | None = None
    worker: str | None = None
    """The Dask worker that analysed it."""
