"""Crash signatures (triage/signature.py, docs/signatures.md) on real cores of every interpreter.

The cores are of tests/programs/target.py (corefactory) and tests/programs/scenarios.py
(stackcases), made at test time. The program's root is tests/programs, so its frames read
`target:third_func`. `ctypes.string_at` is Python code in the standard library calling the C
function that faults, so a segv signature starts with `ctypes:string_at`.

No core has native frames yet (the engine reads Python stacks only): native normalisation,
plumbing skipping and abort/raise folding are tested on hand-built frames and reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import corefactory
import pytest
import sysroot
from corefactory import CoreCase, CoreUnavailable, Interpreter

from triage.engine import analyze_core
from triage.report import (
    CoreFileInfo,
    CoreReport,
    FrameReport,
    ProcessInfo,
    SignalInfo,
    Signature,
    SweepRecord,
    ThreadReport,
    adapter,
    from_json,
    to_json,
)
from triage.signature import (
    SIGNATURE_VERSION,
    Rules,
    compute_signature,
    is_meaningful,
    normalise_frame,
    program_root,
    resignature,
    signature_id,
)

PROGRAMS = str(corefactory.PROGRAMS_DIR)

CALL_CHAIN = ["target:third_func", "target:second_func", "target:first_func", "target:<module>"]
SEGV_FRAMES = ["ctypes:string_at", *CALL_CHAIN]
SEGV_TEXT = "SIGSEGV | ctypes:string_at | " + " | ".join(CALL_CHAIN)
#: The id of SEGV_TEXT, written out: ids are group keys kept in datasets, they must not drift.
SEGV_ID = "57aec32f1404"


def sha_id(text: str) -> str:
    """The id as docs/signatures.md defines it, computed here independently."""
    return hashlib.sha256(("v1\n" + text).encode("utf-8")).hexdigest()[:12]


def expected(text: str, frames: list[str], all_frames: list[str], thread: int | None) -> dict:
    reason = text.split(" | ", 1)[0]
    return {
        "text": text,
        "id": sha_id(text),
        "version": 1,
        "reason": reason,
        "frames": frames,
        "all_frames": all_frames,
        "thread": thread,
    }


def as_dict(sig: Signature | None) -> dict | None:
    return None if sig is None else dataclasses.asdict(sig)


def bootstrap_frames(version: tuple[int, ...]) -> list[str]:
    """threading's frames under a thread's target, most recent first, as each version names
    them (qualified: co_qualname on 3.11+, recovered through `self` before; 2.7's methods
    are private)."""
    if version[0] == 2:
        return [
            "threading:Thread.run",
            "threading:Thread.__bootstrap_inner",
            "threading:Thread.__bootstrap",
        ]
    return [
        "threading:Thread.run",
        "threading:Thread._bootstrap_inner",
        "threading:Thread._bootstrap",
    ]


@pytest.fixture(scope="module")
def reports():
    """analyze_core() of a core path, once per module."""
    cache: dict[str, CoreReport] = {}

    def get(path: str) -> CoreReport:
        if path not in cache:
            cache[path] = analyze_core(path, **sysroot.options_for(path))
            assert cache[path].error is None, cache[path].error
        return cache[path]

    return get


# --------------------------------------------------------------------------------------------
# (a) One crash site, one signature, whatever the Python version


def test_segv_signature_in_the_json_report(cores, interpreter: Interpreter, triage_json) -> None:
    case = cores.crash(interpreter, "segv")
    report = triage_json(case.path)
    assert report["signature"] == expected(SEGV_TEXT, SEGV_FRAMES, SEGV_FRAMES, case.main_tid)
    assert report["signature"]["id"] == SEGV_ID


def test_segv_signature_is_the_same_for_every_interpreter(
    cores, interpreters: list[Interpreter], reports
) -> None:
    if not interpreters:
        pytest.skip("no Python interpreter found")
    by_interp = {}
    for interp in interpreters:
        report = reports(cores.crash(interp, "segv").path)
        assert report.signature is not None
        by_interp[interp.id] = (report.signature.id, report.signature.text)
    assert set(by_interp.values()) == {(SEGV_ID, SEGV_TEXT)}, by_interp


def test_program_root_is_the_main_scripts_directory(cores, interpreter: Interpreter, reports):
    report = reports(cores.crash(interpreter, "segv").path)
    assert sysroot.on_host(program_root(report)) == PROGRAMS


def test_fleet_rules_applied_to_a_real_core(cores, interpreter: Interpreter, reports) -> None:
    case = cores.crash(interpreter, "segv")
    report = reports(case.path)
    sig = compute_signature(report, Rules(skip=("ctypes:*",)))
    text = "SIGSEGV | " + " | ".join(CALL_CHAIN)
    assert as_dict(sig) == expected(text, CALL_CHAIN, SEGV_FRAMES, case.main_tid)
    sig = compute_signature(report, Rules(frames=2))
    text = "SIGSEGV | ctypes:string_at | target:third_func"
    assert as_dict(sig) == expected(text, SEGV_FRAMES[:2], SEGV_FRAMES, case.main_tid)


# --------------------------------------------------------------------------------------------
# (b) Different crash sites and reasons, different signatures


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("segv", SEGV_TEXT),
        # the same call faulting at address 0: the same site, the same signature
        ("null", SEGV_TEXT),
        # os.abort() is C code called by third_func: no Python frame of its own
        ("abort", "SIGABRT | " + " | ".join(CALL_CHAIN)),
        ("sigbus", "SIGBUS | " + " | ".join(CALL_CHAIN)),
        ("sigquit", "SIGQUIT | " + " | ".join(CALL_CHAIN)),
    ],
)
def test_crash_kinds(cores, interpreter: Interpreter, reports, kind: str, text: str) -> None:
    case = cores.crash(interpreter, kind)
    report = reports(case.path)
    frames = text.split(" | ")[1:]
    assert as_dict(report.signature) == expected(text, frames, frames, case.main_tid)


def test_different_sites_and_reasons_differ(cores, interpreter: Interpreter, reports) -> None:
    ids = {
        kind: reports(cores.crash(interpreter, kind).path).signature.id
        for kind in ("segv", "null", "abort", "sigbus", "sigquit")
    }
    assert ids["segv"] == ids["null"] == SEGV_ID
    assert len({ids["segv"], ids["abort"], ids["sigbus"], ids["sigquit"]}) == 4, ids


def test_crash_in_a_worker_thread(scenario_cores, interpreter: Interpreter, reports) -> None:
    """The crashed thread is the one that took the signal, not the main thread."""
    case = scenario_cores.get(interpreter, "crash")
    report = reports(case.path)
    chain = ["scenarios:crash_inner", "scenarios:crash_middle", "scenarios:crash_outer"]
    frames = ["ctypes:string_at", *chain]
    all_frames = frames + bootstrap_frames(case.version)
    text = "SIGSEGV | " + " | ".join(frames)
    assert as_dict(report.signature) == expected(text, frames, all_frames, case.tids["crasher"])


# --------------------------------------------------------------------------------------------
# (c) Moving the crashing line within its function keeps the signature

PADDING = "    # lines added by tests/test_signatures.py\n\n    # comments and blank lines only\n\n"


def moved_program(directory: Path) -> Path:
    """target.py with four lines inserted at the top of third_func's body."""
    source = corefactory.TARGET_PROGRAM.read_text()
    head = "def third_func(action, address):\n"
    assert source.count(head) == 1
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "target.py"
    path.write_text(source.replace(head, head + PADDING))
    return path


def test_moving_the_crashing_line_keeps_the_signature(
    cores, interpreter: Interpreter, reports, tmp_path: Path, monkeypatch
) -> None:
    original = reports(cores.crash(interpreter, "segv").path)
    program = moved_program(interpreter.workdir(tmp_path / "moved"))
    # make_crash runs corefactory.TARGET_PROGRAM: point it at the moved copy (a real program,
    # run for real; only the path changes).
    monkeypatch.setattr(corefactory, "TARGET_PROGRAM", program)
    try:
        case: CoreCase = corefactory.make_crash(interpreter, tmp_path, "segv", threads=2)
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    moved = analyze_core(case.path, **sysroot.options_for(case.path))
    assert moved.error is None
    assert sysroot.on_host(program_root(moved)) == str(program.parent)
    main = next(t for t in moved.threads if t.tid == case.main_tid)
    third = [f for f in main.frames if f.function == "third_func"]
    old_line = corefactory.program_lines()["third_func:ctypes.string_at"]
    assert [(sysroot.on_host(f.file), f.line) for f in third] == [(str(program), old_line + 4)]
    assert corefactory.program_lines(program)["third_func:ctypes.string_at"] == old_line + 4
    assert as_dict(moved.signature) == expected(SEGV_TEXT, SEGV_FRAMES, SEGV_FRAMES, case.main_tid)
    assert moved.signature.id == original.signature.id == SEGV_ID


# --------------------------------------------------------------------------------------------
# (d) On-demand cores


def test_on_demand_without_gil_holder_uses_every_threads_top(
    cores, interpreter: Interpreter, reports
) -> None:
    """gcore of target.py: every thread sleeps in time.sleep (no GIL holder). The tops are
    third_func (main) and worker_sleep (both workers, deduplicated), sorted."""
    if interpreter.sysroot is not None:
        pytest.skip(sysroot.NO_GCORE)
    case = cores.gcore(interpreter)
    report = reports(case.path)
    assert report.signal.origin == "on_demand" and report.signal.name == "SIGSTOP"
    assert not any(t.holds_gil for t in report.threads)
    tops = ["target:third_func", "target:worker_sleep"]
    assert as_dict(report.signature) == expected(
        "on-demand | " + " | ".join(tops), tops, tops, None
    )


def test_on_demand_uses_the_gil_holder(scenario_cores, interpreter: Interpreter, reports) -> None:
    """gcore of scenarios.py multi: the busy-loop thread holds the GIL; the others sleep."""
    if interpreter.sysroot is not None:
        pytest.skip(sysroot.NO_GCORE)
    case = scenario_cores.get(interpreter, "multi")
    report = reports(case.path)
    holders = [t.tid for t in report.threads if t.holds_gil]
    assert holders == [case.tids["busy-loop"]]
    all_frames = ["scenarios:busy_main", *bootstrap_frames(case.version)]
    assert as_dict(report.signature) == expected(
        "on-demand | scenarios:busy_main", ["scenarios:busy_main"], all_frames, holders[0]
    )


# --------------------------------------------------------------------------------------------
# Wiring: analyze_core without Python, bad input, the sweep task with a fleet's rules


def test_without_python_the_signature_is_the_reason(cores, preferred_interp: Interpreter):
    case = cores.crash(preferred_interp, "segv")
    report = analyze_core(case.path, python=False)
    assert report.error is None
    assert as_dict(report.signature) == expected("SIGSEGV", [], [], case.main_tid)


def test_no_signature_when_the_analysis_failed_before_threads(tmp_path: Path) -> None:
    path = tmp_path / "not-a-core"
    path.write_bytes(b"this is not an ELF file\n" * 10)
    report = analyze_core(str(path))
    assert report.error is not None and report.threads == []
    assert report.signature is None
    assert compute_signature(report) is None


def test_signature_survives_the_json_round_trip(cores, preferred_interp: Interpreter, reports):
    report = reports(cores.crash(preferred_interp, "segv").path)
    assert from_json(to_json(report)).signature == report.signature


def test_sweep_task_uses_the_fleets_rules(cores, preferred_interp: Interpreter) -> None:
    from triage.pipeline.config import Fleet
    from triage.pipeline.schema import record_to_dict
    from triage.pipeline.sources import list_sources
    from triage.pipeline.task import SweepInfo, analyze_object, close_processes

    case = cores.crash(preferred_interp, "segv")
    (obj,) = list(list_sources([case.path]))
    fleet = Fleet(name="ci", signature_frames=2, signature_skip=["ctypes:*"])
    try:
        row = analyze_object(obj, fleet, SweepInfo("sweep-1", "2024-06-01", time_limit=120))
    finally:
        close_processes()
    # The task's row is a SweepRecord as plain data: pydantic takes it as one, unchanged.
    record = adapter(SweepRecord).validate_python(row)
    assert record_to_dict(record) == row
    assert record.status == "ok", record.error_message
    text = "SIGSEGV | target:third_func | target:second_func"
    assert as_dict(record.report.signature) == expected(
        text, CALL_CHAIN[:2], SEGV_FRAMES, case.main_tid
    )


def test_rules_from_fleet() -> None:
    from triage.pipeline.config import DEFAULT_FLEET, Fleet

    assert Rules.from_fleet(DEFAULT_FLEET) == Rules(frames=5, skip=())
    fleet = Fleet(name="f", signature_frames=3, signature_skip=["numpy.*", "libfoo.so"])
    assert Rules.from_fleet(fleet) == Rules(frames=3, skip=("numpy.*", "libfoo.so"))
    assert Rules(skip=["a", "b"]).skip == ("a", "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Rules(frames=0)
    with pytest.raises(TypeError, match="sequence"):
        Rules(skip="ctypes:*")  # type: ignore[arg-type]


def test_signature_module_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, triage.signature; "
        "print(sorted(m for m in ('pyarrow', 'duckdb', 'dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------
# (e) Normalising frames


def py(file: str, function: str, qualname: str | None = None) -> FrameReport:
    return FrameReport(kind="python", function=function, file=file, line=1, qualname=qualname)


def native(function: str, file: str = "/usr/lib/x86_64-linux-gnu/libc.so.6") -> FrameReport:
    return FrameReport(kind="native", function=function, file=file)


@pytest.mark.parametrize(
    ("frame", "root", "text"),
    [
        # site-packages / dist-packages: dotted below it, __init__ dropped
        (
            py("/venv/lib/python3.12/site-packages/numpy/core/_methods.py", "_sum", "_sum"),
            None,
            "numpy.core._methods:_sum",
        ),
        (
            py("/usr/lib/python3/dist-packages/requests/__init__.py", "get"),
            None,
            "requests:get",
        ),
        (
            py("/srv/app/.venv/lib/python3.11/site-packages/attr/_make.py", "attrs"),
            "/srv/app",  # site-packages wins over the program's root
            "attr._make:attrs",
        ),
        (
            py("/usr/lib/python3.12/site-packages/foo-1.0-py3.12.egg/foo/bar.py", "f"),
            None,
            "foo.bar:f",
        ),
        # the standard library: lib/pythonX.Y, lib/python3, lib64, Lib
        (
            py("/usr/lib/python3.11/json/decoder.py", "raw_decode", "JSONDecoder.raw_decode"),
            None,
            "json.decoder:JSONDecoder.raw_decode",
        ),
        (
            py("/root/.pyenv/versions/2.7.18/lib/python2.7/threading.py", "__bootstrap"),
            None,
            "threading:__bootstrap",
        ),
        (py("/usr/lib64/python3.9/asyncio/events.py", "_run"), None, "asyncio.events:_run"),
        (py("/usr/lib/python3/json/__init__.py", "loads"), None, "json:loads"),
        (py("/opt/cpython/Lib/threading.py", "run", "Thread.run"), None, "threading:Thread.run"),
        (py("/opt/py/lib/python3.13t/queue.py", "get", "Queue.get"), None, "queue:Queue.get"),
        # the program's root
        (py("/srv/app/pkg/worker.py", "run", "Worker.run"), "/srv/app", "pkg.worker:Worker.run"),
        (py("/srv/app/pkg/__init__.py", "<module>"), "/srv/app", "pkg:<module>"),
        (py("/srv/app/main.py", "<module>"), "/srv/app", "main:<module>"),
        (py("/srv/application/x.py", "f"), "/srv/app", "x:f"),  # not below /srv/app
        (py("tools/x.py", "f"), "", "tools.x:f"),  # the script was run by a relative name
        # elsewhere: the base name
        (py("/tmp/plugins/plugin.py", "hook"), "/srv/app", "plugin:hook"),
        (py("/tmp/plugins/plugin.py", "hook"), None, "plugin:hook"),
        (py("/tmp/plugins/pkg/__init__.py", "hook"), None, "pkg:hook"),
        # not paths: as given
        (py("<string>", "<module>"), "/srv/app", "<string>:<module>"),
        (
            py("<frozen importlib._bootstrap>", "_call_with_frames_removed"),
            None,
            "<frozen importlib._bootstrap>:_call_with_frames_removed",
        ),
        (py("<frozen runpy>", "_run_code"), None, "<frozen runpy>:_run_code"),
        # names: qualname when known, without anything up to the last <locals>.
        (py("/srv/app/m.py", "inner", "outer.<locals>.inner"), "/srv/app", "m:inner"),
        (py("/srv/app/m.py", "<lambda>", "W.start.<locals>.<lambda>"), "/srv/app", "m:<lambda>"),
        (py("/srv/app/m.py", "meth", "f.<locals>.C.meth"), "/srv/app", "m:C.meth"),
        (py("/srv/app/m.py", "inner"), "/srv/app", "m:inner"),
        # native frames: no version or clone suffixes; the library when the symbol is unknown
        (native("PyObject_Call"), None, "PyObject_Call"),
        (native("abort@GLIBC_2.2.5"), None, "abort"),
        (native("memcpy@@GLIBC_2.14"), None, "memcpy"),
        (native("compress_block.constprop.0"), None, "compress_block"),
        (native("decode.isra.0"), None, "decode"),
        (native("parse.part.0"), None, "parse"),
        (native("handle_error.cold"), None, "handle_error"),
        (native("check.lto_priv.0"), None, "check"),
        (native("walk.isra.0.cold"), None, "walk"),
        (native("std::vector<int>::at"), None, "std::vector<int>::at"),
        (native("???"), None, "libc.so"),
        (native("???", "/opt/py/lib/libpython3.12.so.1.0"), None, "libpython3.12.so"),
        (native("???", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"), None, "libstdc++.so"),
        (
            native("???", "/srv/app/ext/_fast.cpython-312-x86_64-linux-gnu.so"),
            None,
            "_fast.cpython-312-x86_64-linux-gnu.so",
        ),
        (native("???", "/usr/bin/python3.12"), None, "python3.12"),
    ],
)
def test_normalise_frame(frame: FrameReport, root: str | None, text: str) -> None:
    assert normalise_frame(frame, root) == text


# --------------------------------------------------------------------------------------------
# (e) Skipping


@pytest.mark.parametrize(
    "frame",
    [
        # CPython plumbing and the C runtime (native frames)
        "_PyEval_EvalFrameDefault",
        "_PyObject_MakeTpCall",
        "PyEval_EvalCode",
        "PyObject_Vectorcall",
        "_PyFunction_Vectorcall",
        "method_vectorcall_O",
        "PyObject_Call",
        "PyObject_CallObject",
        "call_function",
        "fast_function",
        "function_code_fastcall",
        "cfunction_call",
        "cfunction_vectorcall_FASTCALL",
        "slot_tp_call",
        "PyCFunction_Call",
        "_start",
        "__libc_start_main",
        "__libc_start_main_impl",
        "__libc_start_call_main",
        "main",
        "Py_RunMain",
        "Py_BytesMain",
        "pymain_run_python",
        "start_thread",
        "clone",
        "clone3",
        "__clone",
        "__clone3",
        "thread_run",
        "pythread_wrapper",
        "__restore_rt",
        "<signal handler called>",
        # thread bootstrap, every spelling, and runpy
        "threading:Thread._bootstrap",
        "threading:Thread._bootstrap_inner",
        "threading:Thread.run",
        "threading:__bootstrap",
        "threading:__bootstrap_inner",
        "threading:_bootstrap",
        "threading:_bootstrap_inner",
        "threading:run",
        "runpy:_run_module_as_main",
        "runpy:_run_code",
        "<frozen runpy>:_run_module_as_main",
        # abort()/raise(): folded into the reason, never frames
        "abort",
        "__GI_abort",
        "__GI___abort",
        "raise",
        "__GI_raise",
        "gsignal",
        "pthread_kill",
        "__pthread_kill_implementation",
        "__pthread_kill_internal",
    ],
)
def test_skipped_frames(frame: str) -> None:
    assert not is_meaningful(frame, Rules())


@pytest.mark.parametrize(
    "frame",
    [
        "target:third_func",
        "ctypes:string_at",
        "threading:Thread.join",  # only the bootstrap frames of threading are skipped
        "threading:Condition.wait",
        # native patterns are for native frames: Python frames that look like them stay
        "mymod:main",
        "clone_tools:copy",
        "pkg.vectorcall_helpers:call_function",
        "app:abort",
        "app:raise_error",
        "signal:raise_signal",
        # native frames outside the lists
        "memcpy",
        "libfoo.so",
        "std::vector<int>::at",
        "_Z3foov",
    ],
)
def test_meaningful_frames(frame: str) -> None:
    assert is_meaningful(frame, Rules())


def test_fleet_skip_patterns() -> None:
    rules = Rules(skip=("numpy.*", "libfoo.so", "app.util:retry*"))
    assert not is_meaningful("numpy.core._methods:_sum", rules)
    assert not is_meaningful("libfoo.so", rules)
    assert not is_meaningful("app.util:retry_call", rules)
    assert is_meaningful("app.util:parse", rules)
    assert is_meaningful("numpy_extra:f", rules)  # fnmatch is on the whole frame, case kept
    assert is_meaningful("Numpy.x:f", rules)


# --------------------------------------------------------------------------------------------
# (e) Folding abort/raise, on hand-built reports (the engine has no native frames yet)


def hand_report(signal: tuple[int, str, str], frames: list[FrameReport]) -> CoreReport:
    """A one-process report: main thread 100 (crashed unless on demand) with `frames`
    (outermost first), and a worker 101 sleeping in app.jobs."""
    number, name, origin = signal
    return CoreReport(
        core=CoreFileInfo(path="hand-built"),
        process=ProcessInfo(
            pid=100,
            ppid=1,
            sid=100,
            pgrp=100,
            uid=0,
            gid=0,
            state="R",
            zombie=False,
            nice=0,
            executable="python3.12",
            arguments="python3.12 /srv/app/main.py",
        ),
        signal=SignalInfo(
            number=number,
            name=name,
            code=-6,
            origin=origin,
            description="hand-built",
        ),
        threads=[
            ThreadReport(tid=100, crashed=origin != "on_demand", python=True, frames=frames),
            ThreadReport(
                tid=101,
                python=True,
                frames=[
                    py("/usr/lib/python3.12/threading.py", "_bootstrap", "Thread._bootstrap"),
                    py("/usr/lib/python3.12/threading.py", "run", "Thread.run"),
                    py("/srv/app/app/jobs.py", "poll", "Queue.poll"),
                    native("clock_nanosleep@GLIBC_2.17"),
                ],
            ),
        ],
    )


LIBPY = "/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0"

ABORT_STACK = [  # outermost first, as reports list frames
    native("_start", "/usr/bin/python3.12"),
    native("__libc_start_main_impl"),
    native("main", "/usr/bin/python3.12"),
    native("Py_BytesMain", LIBPY),
    native("Py_RunMain", LIBPY),
    native("pymain_run_python.constprop.0", LIBPY),
    py("/srv/app/main.py", "<module>", "<module>"),
    native("_PyEval_EvalFrameDefault", LIBPY),
    py("/srv/app/app/handlers.py", "handle", "Handler.handle"),
    native("_PyEval_EvalFrameDefault", LIBPY),
    native("PyObject_Vectorcall", LIBPY),
    native("cfunction_call", LIBPY),
    native("check_invariants.isra.0", "/srv/app/ext/_native.cpython-312-x86_64-linux-gnu.so"),
    native("???", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
    native("__GI_abort"),
    native("__GI_raise"),
    native("__pthread_kill_internal"),
    native("__pthread_kill_implementation"),
]

ABORT_ALL = [
    "__pthread_kill_implementation",
    "__pthread_kill_internal",
    "__GI_raise",
    "__GI_abort",
    "libfoo.so",
    "check_invariants",
    "cfunction_call",
    "PyObject_Vectorcall",
    "_PyEval_EvalFrameDefault",
    "app.handlers:Handler.handle",
    "_PyEval_EvalFrameDefault",
    "main:<module>",
    "pymain_run_python",
    "Py_RunMain",
    "Py_BytesMain",
    "main",
    "__libc_start_main_impl",
    "_start",
]
ABORT_FRAMES = ["libfoo.so", "check_invariants", "app.handlers:Handler.handle", "main:<module>"]
ABORT_TEXT = "SIGABRT (abort) | " + " | ".join(ABORT_FRAMES)


def test_abort_frames_fold_into_the_reason() -> None:
    report = hand_report((6, "SIGABRT", "signal"), ABORT_STACK)
    assert program_root(report) == "/srv/app"
    assert as_dict(compute_signature(report)) == expected(ABORT_TEXT, ABORT_FRAMES, ABORT_ALL, 100)


def test_raise_without_abort_folds_as_raise() -> None:
    stack = [
        py("/srv/app/main.py", "<module>", "<module>"),
        native("os_kill_impl", LIBPY),
        native("raise@GLIBC_2.2.5"),
        native("pthread_kill@@GLIBC_2.34"),
        native("__pthread_kill_implementation.constprop.0"),
    ]
    sig = compute_signature(hand_report((11, "SIGSEGV", "signal"), stack))
    all_frames = [
        "__pthread_kill_implementation",
        "pthread_kill",
        "raise",
        "os_kill_impl",
        "main:<module>",
    ]
    text = "SIGSEGV (raise) | os_kill_impl | main:<module>"
    assert as_dict(sig) == expected(text, ["os_kill_impl", "main:<module>"], all_frames, 100)


def test_signal_trampoline_frames_are_skipped() -> None:
    stack = [
        py("/srv/app/main.py", "<module>", "<module>"),
        native("faulty_write", "/usr/lib/libfoo.so.1"),
        native("<signal handler called>", ""),
        native("__restore_rt"),
        native("faulthandler_fatal_error", LIBPY),
    ]
    sig = compute_signature(hand_report((11, "SIGSEGV", "crash"), stack))
    assert sig is not None
    assert sig.text == "SIGSEGV | faulthandler_fatal_error | faulty_write | main:<module>"


def test_on_demand_reason_ignores_the_signal_name_and_folds_nothing() -> None:
    report = hand_report((19, "SIGSTOP", "on_demand"), ABORT_STACK)
    tops = ["clock_nanosleep", "libfoo.so"]  # each thread's top meaningful frame, sorted
    assert as_dict(compute_signature(report)) == expected(
        "on-demand | " + " | ".join(tops), tops, tops, None
    )
    report.threads[1].holds_gil = True
    all_frames = [
        "clock_nanosleep",
        "app.jobs:Queue.poll",
        "threading:Thread.run",
        "threading:Thread._bootstrap",
    ]
    assert as_dict(compute_signature(report)) == expected(
        "on-demand | clock_nanosleep | app.jobs:Queue.poll",
        ["clock_nanosleep", "app.jobs:Queue.poll"],
        all_frames,
        101,
    )


def test_no_crashed_thread_falls_back_to_the_gil_holder_then_the_tops() -> None:
    report = hand_report((11, "SIGSEGV", "crash"), ABORT_STACK[:9])
    report.threads[0].crashed = False
    tops = ["app.handlers:Handler.handle", "clock_nanosleep"]  # the worker's top is native
    assert as_dict(compute_signature(report)) == expected(
        "SIGSEGV | " + " | ".join(tops), tops, tops, None
    )
    report.threads[0].holds_gil = True
    frames = ["app.handlers:Handler.handle", "main:<module>"]
    sig = compute_signature(report)
    assert sig is not None and sig.thread == 100 and sig.text == "SIGSEGV | " + " | ".join(frames)


# --------------------------------------------------------------------------------------------
# (e) resignature: new rules from all_frames alone


def test_resignature_of_a_real_core(cores, preferred_interp: Interpreter, reports) -> None:
    case = cores.crash(preferred_interp, "segv")
    report = reports(case.path)
    sig = report.signature
    assert sig is not None
    assert resignature(sig, Rules(), "SIGSEGV") == sig
    assert resignature(sig, Rules()) == sig

    two = resignature(sig, Rules(frames=2), "SIGSEGV")
    text = "SIGSEGV | ctypes:string_at | target:third_func"
    assert as_dict(two) == expected(text, SEGV_FRAMES[:2], SEGV_FRAMES, case.main_tid)
    assert two.id == "d2ba8ec48a78" == sha_id(text)

    skipped = resignature(sig, Rules(frames=2, skip=("ctypes:*",)), "SIGSEGV")
    text = "SIGSEGV | target:third_func | target:second_func"
    assert as_dict(skipped) == expected(text, CALL_CHAIN[:2], SEGV_FRAMES, case.main_tid)
    assert skipped.id == "d7694dc47ea1" == sha_id(text)

    # the same as computing from the report with those rules
    for rules in (Rules(frames=2), Rules(frames=2, skip=("ctypes:*",)), Rules(skip=("target:*",))):
        assert resignature(sig, rules, "SIGSEGV") == compute_signature(report, rules)
    assert resignature(sig, Rules(skip=("target:*",)), "SIGSEGV").text == (
        "SIGSEGV | ctypes:string_at"
    )


def test_resignature_of_tops(cores, preferred_interp: Interpreter, reports) -> None:
    sig = reports(cores.gcore(preferred_interp).path).signature
    assert sig is not None and sig.thread is None
    new = resignature(sig, Rules(skip=("target:worker_*",)), "on-demand")
    assert as_dict(new) == expected(
        "on-demand | target:third_func",
        ["target:third_func"],
        ["target:third_func", "target:worker_sleep"],
        None,
    )


def test_resignature_refolds_and_does_not_fold_twice() -> None:
    sig = compute_signature(hand_report((6, "SIGABRT", "signal"), ABORT_STACK))
    assert sig is not None
    for reason in ("SIGABRT", "SIGABRT (abort)", None):
        new = resignature(sig, Rules(frames=1), reason)
        assert as_dict(new) == expected(
            "SIGABRT (abort) | libfoo.so", ["libfoo.so"], ABORT_ALL, 100
        )
    new = resignature(sig, Rules(frames=2, skip=("libfoo.so", "check_*")), "SIGABRT")
    assert new.text == "SIGABRT (abort) | app.handlers:Handler.handle | main:<module>"
    assert new.id == sha_id(new.text)


def test_signature_ids() -> None:
    assert SIGNATURE_VERSION == 1
    assert signature_id(SEGV_TEXT) == SEGV_ID == sha_id(SEGV_TEXT)
    assert signature_id("SIGSEGV") == sha_id("SIGSEGV")
    assert signature_id("SIGSEGV", version=2) != signature_id("SIGSEGV")
