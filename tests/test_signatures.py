"""Crash signatures, version 2 (triage/signature/, docs/signatures.md), on real kernel cores
of every interpreter found: pyenv's, Debian's and the sid sysroot's.

The cores are of tests/programs/target.py (corefactory) and tests/programs/native_crash.py,
whose native crash sites are the suite's own C code compiled at test time
(tests/native_builds.py: crashlib.so loaded with ctypes, and the extension module crashext.so
built against each interpreter's headers). Both programs live in tests/programs, the
program's root, so their frames read `target:third_func`, `native_crash:reach`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
from pathlib import Path
from typing import ClassVar

import corefactory
import native_builds
import pytest
import sysroot
from corefactory import CoreUnavailable, Interpreter
from stackcases import parse_tracebacks

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
    resignature,
    signature_id,
    v2,
)
from triage.signature.normalise import native_frame, native_function

CALL_CHAIN = ["target:third_func", "target:second_func", "target:first_func", "target:<module>"]
MAIN = ["native_crash:main", "native_crash:<module>"]


def sha_id(text: str) -> str:
    """The id as docs/signatures.md defines it, computed here independently."""
    return hashlib.sha256(("v2\n" + text).encode("utf-8")).hexdigest()[:12]


def segv_site(version: tuple[int, ...]) -> list[str]:
    """Where `ctypes.string_at(address)` faults: in strlen(), called by _ctypes' string_at,
    except on 2.7, whose string_at tail-calls PyString_FromString (no frame of its own)."""
    caller = "python!PyString_FromString" if version[0] == 2 else "_ctypes.so!string_at"
    return ["libc.so!strlen", caller, "ctypes:string_at"]


def text_of(reason: str, frames: list[str]) -> str:
    return " | ".join([reason, *frames])


@pytest.fixture(scope="module")
def reports():
    """analyze_core() of a core path, once per module."""
    cache: dict[str, CoreReport] = {}

    def get(path: str, **options) -> CoreReport:
        key = f"{path}{sorted(options.items())}"
        if key not in cache:
            cache[key] = analyze_core(path, **sysroot.options_for(path), **options)
            assert cache[key].error is None, cache[key].error
        return cache[key]

    return get


class NativeCores:
    """Kernel cores of programs/native_crash.py MODE, made once per interpreter and mode."""

    SIGNALS: ClassVar[dict[str, signal.Signals]] = {
        "thread-abort": signal.SIGABRT,
        "thread-strlen": signal.SIGSEGV,
        "path-a": signal.SIGSEGV,
        "path-b": signal.SIGSEGV,
        "extension": signal.SIGSEGV,
        "faulthandler-path-a": signal.SIGSEGV,
    }

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dirs: dict[str, str] = {}
        self.made: dict[tuple[str, str], tuple[str, dict]] = {}

    def get(self, interp: Interpreter, mode: str) -> tuple[str, dict]:
        """(the core's path, the program's ready line: pid, main tid)."""
        key = (interp.id, mode)
        if key not in self.made:
            try:
                if interp.id not in self.dirs:
                    self.dirs[interp.id] = native_builds.crash_dir(interp, self.tmp)
                self.made[key] = corefactory.crash_program(
                    interp,
                    self.tmp / interp.id / mode,
                    "native_crash.py",
                    mode,
                    self.dirs[interp.id],
                    sig=self.SIGNALS[mode],
                )
            except CoreUnavailable as exc:
                pytest.skip(str(exc))
        return self.made[key]


@pytest.fixture(scope="module")
def native_cores(tmp_path_factory: pytest.TempPathFactory) -> NativeCores:
    return NativeCores(tmp_path_factory.mktemp("native-crash"))


def signature_of(native_cores: NativeCores, reports, interp: Interpreter, mode: str) -> Signature:
    path, _ready = native_cores.get(interp, mode)
    sig = reports(path).signature
    assert sig is not None
    return sig


def expected(text: str, frames: list[str], thread: int | None) -> dict:
    """The signature fields of `text` (all_frames are checked on their own)."""
    return {
        "text": text,
        "id": sha_id(text),
        "version": 2,
        "reason": text.split(" | ", 1)[0],
        "frames": frames,
        "thread": thread,
    }


def fields(sig: Signature | None) -> dict | None:
    if sig is None:
        return None
    data = dataclasses.asdict(sig)
    data.pop("all_frames")
    return data


# --------------------------------------------------------------------------------------------
# (a) A crash in C code reached from Python: the C site first, then its Python callers


def test_segv_in_c_called_from_python(
    cores, interpreter: Interpreter, reports, triage_json
) -> None:
    case = cores.crash(interpreter, "segv")
    frames = [*segv_site(interpreter.version), *CALL_CHAIN[:3]]
    want = expected(text_of("SIGSEGV", frames), frames, case.main_tid)
    assert fields(reports(case.path).signature) == want
    report = triage_json(case.path, *_lib_root(case.path))
    assert {k: v for k, v in report["signature"].items() if k != "all_frames"} == want
    # all_frames: every frame of the crashed thread, newest first, the plumbing included
    all_frames = report["signature"]["all_frames"]
    assert all_frames[0] == "libc.so!strlen"
    python = [f for f in all_frames if "!" not in f]
    assert python == ["ctypes:string_at", *CALL_CHAIN]
    assert len(all_frames) > len(python) + 10  # the interpreter's own frames below


def _lib_root(path: str) -> list[str]:
    root = sysroot.root_of(path)
    return ["--lib-search-root", root] if root else []


def test_segv_is_one_signature_for_every_python_3(
    cores, interpreters: list[Interpreter], reports
) -> None:
    threes = [i for i in interpreters if i.version[0] == 3]
    if len(threes) < 2:
        pytest.skip("fewer than two Python 3 interpreters found")
    texts = {i.id: reports(cores.crash(i, "segv").path).signature.text for i in threes}
    frames = [*segv_site((3,)), *CALL_CHAIN[:3]]
    assert set(texts.values()) == {text_of("SIGSEGV", frames)}, texts


def test_abort_is_folded_and_its_caller_is_the_site(
    cores, interpreter: Interpreter, reports
) -> None:
    """os.abort(): abort() and raise() leave the stack and name the reason; the site is
    abort's caller, os.abort's C function (2.7's posix_abort, an Argument Clinic wrapper and
    its _impl body since: one name)."""
    case = cores.crash(interpreter, "abort")
    frames = ["python!os_abort", *CALL_CHAIN]
    assert fields(reports(case.path).signature) == expected(
        text_of("SIGABRT (abort)", frames), frames, case.main_tid
    )


@pytest.mark.parametrize(("kind", "reason"), [("sigbus", "SIGBUS"), ("sigquit", "SIGQUIT")])
def test_signals_sent_by_another_process_sign_the_python_frames(
    cores, interpreter: Interpreter, reports, kind: str, reason: str
) -> None:
    """kill -BUS from outside: where the thread was in C (asleep) is not why it died."""
    case = cores.crash(interpreter, kind)
    report = reports(case.path)
    crashed = next(t for t in report.threads if t.crashed)
    assert crashed.python and not any(f.kind == "native" for f in crashed.frames)  # not read
    assert "Crashed" not in crashed.status  # killed where it was, not by its own doing
    assert fields(report.signature) == expected(
        text_of(reason, CALL_CHAIN), CALL_CHAIN, case.main_tid
    )


def test_signature_is_the_same_with_and_without_native(
    cores, preferred_interp: Interpreter, reports
) -> None:
    case = cores.crash(preferred_interp, "segv")
    assert reports(case.path).signature == reports(case.path, native=True).signature


def _site_and_below(report: CoreReport) -> tuple[list, list]:
    """The crashed thread's native frames newer than its newest Python frame, and its
    physical native frames older than that."""
    (thread,) = [t for t in report.threads if t.crashed]
    newest_first = list(reversed(thread.frames))
    python = next(i for i, f in enumerate(newest_first) if f.kind == "python")
    above = [f for f in newest_first[:python] if f.kind == "native"]
    below = [f for f in newest_first[python:] if f.kind == "native" and not f.inlined]
    return above, below


def test_without_native_the_crash_site_is_located_on_every_interpreter(
    cores, interpreter: Interpreter, reports
) -> None:
    """On every interpreter (the sysroot's too): without --native, the crash site's frames
    are those --native gives (names, files, lines, inlined calls), but the calls inlined
    into the eval-loop frame, which only --native reads; the frames below the newest Python
    frame are the same frames, named, without source location; the signature is the same,
    all of its frames included."""
    case = cores.crash(interpreter, "segv")
    quick, full = reports(case.path), reports(case.path, native=True)
    site, below = _site_and_below(quick)
    site_full, below_full = _site_and_below(full)
    physical = {f.address for f in site_full if not f.inlined}
    assert site and site == [f for f in site_full if f.address in physical]
    assert below and all((f.file, f.line) == ("???", None) for f in below)
    assert [(f.function, f.address) for f in below] == [(f.function, f.address) for f in below_full]
    assert quick.signature == full.signature


def test_without_native_the_crash_site_has_source_lines_and_the_interpreter_none(
    cores, preferred_interp: Interpreter, reports
) -> None:
    """Without --native, the crashed thread's native frames newer than its newest Python
    frame carry file and line (the crash site: _ctypes' C code); the interpreter's frames
    below keep name and address only (file ???), and --native locates them too."""
    case = cores.crash(preferred_interp, "segv")
    (site, below), (site_full, below_full) = (
        _site_and_below(reports(case.path)),
        _site_and_below(reports(case.path, native=True)),
    )
    ctypes_site = [f for f in site if "/_ctypes" in (f.library or "")]
    assert ctypes_site and all(f.file.endswith(".c") and f.line for f in ctypes_site)
    assert site == site_full
    assert below and all((f.file, f.line) == ("???", None) for f in below)
    assert [(f.function, f.address) for f in below] == [(f.function, f.address) for f in below_full]
    assert any(f.file != "???" for f in below_full if "libpython" in (f.library or ""))


# --------------------------------------------------------------------------------------------
# (b) Native threads: abort() and strlen(NULL), signed by their native frames


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        ("thread-abort", "SIGABRT (abort) | crashlib.so!abort_worker"),
        (
            "thread-strlen",
            "SIGSEGV | libc.so!strlen | crashlib.so!call_strlen | crashlib.so!strlen_worker",
        ),
    ],
)
def test_native_thread_crash(
    native_cores: NativeCores, interpreter: Interpreter, reports, mode: str, text: str
) -> None:
    path, ready = native_cores.get(interpreter, mode)
    report = reports(path)
    (crashed,) = [t for t in report.threads if t.crashed]
    assert not crashed.python and crashed.tid != ready["tids"][0]
    assert crashed.status == ["Crashed"]
    frames = text.split(" | ")[1:]
    assert fields(report.signature) == expected(text, frames, crashed.tid)
    # start_thread and clone3 were there, and skipped as plumbing
    assert {"libc.so!start_thread", "libc.so!__clone3"} <= set(report.signature.all_frames)


def test_native_thread_crashes_are_one_signature_each_across_interpreters(
    native_cores: NativeCores, interpreters: list[Interpreter], reports
) -> None:
    if len(interpreters) < 2:
        pytest.skip("fewer than two interpreters found")
    ids = {
        mode: {signature_of(native_cores, reports, i, mode).id for i in interpreters}
        for mode in ("thread-abort", "thread-strlen")
    }
    assert [len(found) for found in ids.values()] == [1, 1], ids
    assert ids["thread-abort"] != ids["thread-strlen"]


def test_one_c_function_from_two_python_paths(
    native_cores: NativeCores, interpreter: Interpreter, reports
) -> None:
    site = ["libc.so!strlen", "crashlib.so!call_strlen", "native_crash:reach"]
    signatures = {}
    for path_name in ("path_a", "path_b"):
        sig = signature_of(native_cores, reports, interpreter, path_name.replace("_", "-"))
        frames = [*site, f"native_crash:{path_name}", *MAIN]
        assert (sig.text, sig.frames) == (text_of("SIGSEGV", frames), frames)
        signatures[path_name] = sig.id
    assert signatures["path_a"] != signatures["path_b"]


def test_crash_in_a_c_extension(native_cores: NativeCores, interpreter: Interpreter, reports):
    sig = signature_of(native_cores, reports, interpreter, "extension")
    frames = ["crashext.so!crash_here", "crashext.so!crashext_segv", "native_crash:call_extension"]
    frames += MAIN
    assert (sig.text, sig.id) == (text_of("SIGSEGV", frames), sha_id(text_of("SIGSEGV", frames)))


def test_faulthandler_frames_are_not_the_crash(
    native_cores: NativeCores, interpreter: Interpreter, reports
) -> None:
    """With faulthandler on (pytest turns it on), the core is of its handler re-raising
    SIGSEGV: the handler's frames and the trampoline go, the crash below them stays."""
    if interpreter.version < (3, 3):
        pytest.skip(f"{interpreter.id} has no faulthandler")
    path, _ready = native_cores.get(interpreter, "faulthandler-path-a")
    report = reports(path)
    assert report.signal.origin == "signal"  # re-raised by the process on itself
    assert any(f.endswith("!__restore_rt") for f in report.signature.all_frames)
    plain = signature_of(native_cores, reports, interpreter, "path-a")
    assert (report.signature.text, report.signature.id) == (plain.text, plain.id)


# --------------------------------------------------------------------------------------------
# (c) What people see: the crashed thread first, [Crashed], its native frames if it has no
# Python frame


def test_text_shows_the_crashed_native_thread_first(
    native_cores: NativeCores, interpreter: Interpreter, run_triage
) -> None:
    path, ready = native_cores.get(interpreter, "thread-strlen")
    rc, text, err = run_triage("core", path, "--no-color", *_lib_root(path))
    assert rc == 0, err
    blocks = parse_tracebacks(text)
    first = blocks[0]
    assert first.tid != ready["tids"][0]
    assert first.status == ["Crashed"]
    natives = [line for line in first.lines if line.startswith("    (C) ")]
    functions = [line.split(", in ")[1].rsplit(" (", 1)[0] for line in natives]
    # oldest first: the thread's start in the C library, the test's library, strlen (its
    # variant for this CPU, whose name the signature folds)
    assert functions[:4] == ["__clone3", "start_thread", "strlen_worker", "call_strlen"]
    assert functions[4] in ("__strlen_avx2", "__strlen_evex", "__strlen_sse2"), functions
    assert len(functions) == 5
    # the Python main thread follows, without native frames (no --native)
    main = next(b for b in blocks if b.tid == ready["tids"][0])
    assert not [line for line in main.lines if line.startswith("    (C) ")]


def test_text_shows_the_crashed_python_thread_first(
    scenario_cores, interpreter: Interpreter, run_triage
) -> None:
    """scenarios.py crash: a thread named crasher faults, other threads run; it comes first
    and says Crashed; its C frames only with --native."""
    case = scenario_cores.get(interpreter, "crash")
    path = case.path
    rc, text, err = run_triage("core", path, "--no-color", *_lib_root(path))
    assert rc == 0, err
    blocks = parse_tracebacks(text)
    assert blocks[0].tid == case.tids["crasher"]
    assert blocks[0].status[0] == "Crashed"
    assert not any(line.startswith("    (C) ") for b in blocks for line in b.lines)
    rc, native, err = run_triage("core", path, "--no-color", "--native", *_lib_root(path))
    assert rc == 0, err
    first = parse_tracebacks(native)[0]
    assert first.tid == case.tids["crasher"]
    assert any(line.startswith("    (C) ") for line in first.lines)


# --------------------------------------------------------------------------------------------
# (d) The sweep signs as `triage core` does, with the fleet's rules


def test_sweep_row_signature_is_triage_cores(
    native_cores: NativeCores, preferred_interp: Interpreter, reports
) -> None:
    from triage.pipeline.config import Fleet
    from triage.pipeline.schema import record_to_dict
    from triage.pipeline.sources import list_sources
    from triage.pipeline.task import SweepInfo, analyze_object, close_processes

    path, _ready = native_cores.get(preferred_interp, "path-a")
    (obj,) = list(list_sources([path]))
    info = SweepInfo("sweep-1", "2026-12-01", time_limit=120)
    fleets = {
        "default": Fleet(name="default"),
        "web": Fleet(name="web", signature_frames=2, signature_skip=["crashlib.so!*"]),
    }
    try:
        rows = {name: analyze_object(obj, fleet, info) for name, fleet in fleets.items()}
    finally:
        close_processes()
    records = {name: adapter(SweepRecord).validate_python(row) for name, row in rows.items()}
    assert record_to_dict(records["default"]) == rows["default"]
    assert records["default"].status == "ok", records["default"].error_message
    assert records["default"].report.signature == reports(path).signature
    # The row stores the crashed thread's native frames (regroup recomputes from them).
    (crashed,) = [t for t in records["default"].report.threads if t.crashed]
    assert native_function(crashed.frames[-1].function) == "strlen"  # the newest frame
    web = records["web"].report.signature
    assert web.text == "SIGSEGV | libc.so!strlen | native_crash:reach | native_crash:path_a"


# --------------------------------------------------------------------------------------------
# (e) Rules, on hand-built frames


def native(function: str, library: str = "/usr/lib/x86_64-linux-gnu/libc.so.6") -> FrameReport:
    return FrameReport(kind="native", function=function, file="???", library=library)


def py(file: str, function: str, qualname: str | None = None) -> FrameReport:
    return FrameReport(kind="python", function=function, file=file, line=1, qualname=qualname)


LIBPY = "/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0"
EXT = "/srv/app/.venv/lib/python3.12/site-packages/fast/_native.cpython-312-x86_64-linux-gnu.so"


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (native("abort@GLIBC_2.2.5"), "libc.so!abort"),
        (native("memcpy@@GLIBC_2.14"), "libc.so!memcpy"),
        (native("__strlen_avx2"), "libc.so!strlen"),
        (native("__strlen_evex"), "libc.so!strlen"),
        (native("__strlen_sse2"), "libc.so!strlen"),
        (native("__memmove_avx_unaligned_erms"), "libc.so!memmove"),
        (native("__memset_avx2_unaligned_erms_rtm"), "libc.so!memset"),
        (native("__strchr_sse2_no_bsf"), "libc.so!strchr"),
        (native("__memcpy_chk_avx512_unaligned"), "libc.so!__memcpy_chk"),
        (native("__pthread_kill_implementation"), "libc.so!__pthread_kill_implementation"),
        (native("compress_block.constprop.0", EXT), "_native.so!compress_block"),
        (native("walk.isra.0.cold", EXT), "_native.so!walk"),
        (native("check.lto_priv.0", LIBPY), "python!check"),
        (
            native("_PyEval_EvalFrameDefault", "/usr/bin/python3.13"),
            "python!_PyEval_EvalFrameDefault",
        ),
        (native("main", "/root/.pyenv/versions/2.7.18/bin/python2.7"), "python!main"),
        (native("f", "/usr/lib/debug/libpython3.14d.so.1.0"), "python!f"),
        (
            native("std::vector<int>::at", "/usr/lib/libfoo.so.1.2.3"),
            "libfoo.so!std::vector<int>::at",
        ),
        (native("???", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"), "libstdc++.so!???"),
        (native("f", "/opt/x/foo.abi3.so"), "foo.so!f"),
        (native("f", "/opt/x/_m.cpython-36m-x86_64-linux-gnu.so"), "_m.so!f"),
        (native("???", ""), "???!???"),
    ],
)
def test_native_frames_are_library_and_function(frame: FrameReport, text: str) -> None:
    assert native_frame(frame) == text


def hand_report(reason: tuple[int, str, str], frames: list[FrameReport]) -> CoreReport:
    """Thread 100 (crashed unless on demand) with `frames`, outermost first."""
    number, name, origin = reason
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
        signal=SignalInfo(number=number, name=name, code=-6, origin=origin, description="hand"),
        threads=[ThreadReport(tid=100, crashed=origin != "on_demand", python=True, frames=frames)],
    )


MAIN_PY = py("/srv/app/main.py", "<module>", "<module>")
HANDLE = py("/srv/app/app/handlers.py", "handle", "Handler.handle")
ABRT = (6, "SIGABRT", "signal")
SEGV = (11, "SIGSEGV", "crash")


def sign(reason: tuple[int, str, str], stack: list[FrameReport], **rules) -> str:
    sig = compute_signature(hand_report(reason, stack), Rules(**rules))
    assert sig is not None and sig.id == sha_id(sig.text)
    return sig.text


def test_fatal_error_starts_the_signature_under_one_name() -> None:
    stack = [
        MAIN_PY,
        native("_PyEval_EvalFrameDefault", LIBPY),
        HANDLE,
        native("cfunction_vectorcall_O", LIBPY),
        native("check_invariants", EXT),
        native("_Py_FatalErrorFunc", LIBPY),
        native("fatal_error", LIBPY),
        native("fatal_error_exit", LIBPY),
        native("abort"),
        native("raise"),
        native("__pthread_kill_implementation"),
    ]
    # Py_FatalError is a prefix: not counted, so frames=2 still reaches handle
    assert sign(ABRT, stack, frames=2) == (
        "SIGABRT (abort) | python!Py_FatalError | _native.so!check_invariants | "
        "app.handlers:Handler.handle"
    )


def test_unnamed_c_library_frames_between_abort_frames_are_folded() -> None:
    stack = [MAIN_PY, native("do_it", EXT), native("abort"), native("???"), native("raise")]
    stack.append(native("???"))
    assert sign(ABRT, stack) == "SIGABRT (abort) | _native.so!do_it | main:<module>"


def test_a_crash_inside_a_signal_handler_is_kept() -> None:
    stack = [
        MAIN_PY,
        native("poll"),
        native("__restore_rt"),
        native("on_usr1", EXT),
        native("__strlen_avx2"),
    ]
    assert sign(SEGV, stack) == (
        "SIGSEGV | libc.so!strlen | _native.so!on_usr1 | libc.so!poll | main:<module>"
    )


def test_prefix_frames_do_not_count() -> None:
    stack = [MAIN_PY, HANDLE, native("parse", EXT), native("free"), native("_int_free")]
    stack.append(native("malloc_printerr"))
    stack += [native("__libc_message"), native("abort"), native("raise")]
    assert sign(ABRT, stack, frames=1) == (
        "SIGABRT (abort) | libc.so!malloc_printerr | libc.so!_int_free | libc.so!free | "
        "_native.so!parse"
    )


def test_test_runners_are_skipped_unless_the_fleet_keeps_them() -> None:
    site = "/srv/app/.venv/lib/python3.12/site-packages"
    stack = [
        py(f"{site}/_pytest/main.py", "main"),
        py(f"{site}/pluggy/_callers.py", "_multicall"),
        py(f"{site}/_pytest/python.py", "pytest_pyfunc_call"),
        py("/usr/lib/python3.12/unittest/case.py", "_callTestMethod", "TestCase._callTestMethod"),
        py("/srv/app/tests/test_x.py", "test_boom", "T.test_boom"),
        native("boom", EXT),
    ]
    # (no <module> frame: no program root, the test module by its base name)
    assert sign(SEGV, stack) == "SIGSEGV | _native.so!boom | test_x:T.test_boom"
    assert sign(SEGV, stack, frames=3, skip_test_runners=False) == (
        "SIGSEGV | _native.so!boom | test_x:T.test_boom | unittest.case:TestCase._callTestMethod"
    )


def test_fleet_skip_patterns_apply_to_both_kinds() -> None:
    stack = [MAIN_PY, HANDLE, native("parse", EXT), native("__strlen_avx2")]
    assert sign(SEGV, stack, skip=("_native.so!*", "app.*")) == (
        "SIGSEGV | libc.so!strlen | main:<module>"
    )


def test_on_demand_signs_python_frames_only() -> None:
    stack = [MAIN_PY, HANDLE, native("parse", EXT), native("abort")]
    report = hand_report((19, "SIGSTOP", "on_demand"), stack)
    report.threads[0].holds_gil = True
    sig = compute_signature(report)
    assert sig is not None
    assert sig.text == "on-demand | app.handlers:Handler.handle | main:<module>"


def test_resignature_from_all_frames(native_cores, preferred_interp: Interpreter, reports):
    path, _ready = native_cores.get(preferred_interp, "path-a")
    report = reports(path)
    sig = report.signature
    assert resignature(sig, Rules()) == sig
    for rules in (Rules(frames=2), Rules(skip=("native_crash:reach",)), Rules(frames=1)):
        assert resignature(sig, rules) == compute_signature(report, rules)
    with pytest.raises(ValueError, match="version-2 signature cannot be recomputed as version 1"):
        resignature(sig, Rules(version=1))


def test_rule_lists_are_well_formed() -> None:
    """Every list has a reason at its top and patterns of the kind it is about."""
    for path in sorted(v2.DATA.glob("*.txt")):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# "), path.name
        names = v2.pattern_list(path.stem)
        assert names, path.name
        if path.stem in ("skip-python", "skip-test-runners"):
            assert all(":" in p and "!" not in p for p in names), path.name
        elif path.stem != "renames":
            assert all("!" in p for p in names), path.name
    assert v2.renames()["python!_Py_FatalErrorFunc"] == "python!Py_FatalError"
    assert [rule.name for rule in v2.RULES] == [
        "drop-signal-handler",
        "fold-abort",
        "start-at-sentinel",
        "rename",
        "native-above-python",
        "skip",
        "collapse-repeats",
    ]


# --------------------------------------------------------------------------------------------
# Wiring


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


def test_rules_from_fleet() -> None:
    from triage.pipeline.config import DEFAULT_FLEET, Fleet

    assert Rules.from_fleet(DEFAULT_FLEET) == Rules(frames=5, skip=(), version=SIGNATURE_VERSION)
    fleet = Fleet(name="f", signature_frames=3, signature_skip=["numpy.*", "libfoo.so!*"])
    assert Rules.from_fleet(fleet, 1) == Rules(frames=3, skip=("numpy.*", "libfoo.so!*"), version=1)
    fleet = Fleet(name="ci", signature_skip_test_runners=False)
    assert Rules.from_fleet(fleet).skip_test_runners is False
    assert Rules(skip=["a", "b"]).skip == ("a", "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Rules(frames=0)
    with pytest.raises(TypeError, match="sequence"):
        Rules(skip="ctypes:*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version must be one of 1, 2"):
        Rules(version=3)


def test_signature_ids() -> None:
    assert SIGNATURE_VERSION == 2
    text = "SIGSEGV | libc.so!strlen"
    assert signature_id(text) == sha_id(text) == signature_id(text, 2)
    assert signature_id(text, 1) != signature_id(text)
