"""Signature version 1 (triage/signature/v1.py, frozen; docs/signatures.md) on real cores of
every interpreter: the ids datasets grouped by version 1 hold must not drift, so these are the
texts and ids version 1 always gave.

The cores are of tests/programs/target.py (corefactory) and tests/programs/scenarios.py
(stackcases), made at test time. The program's root is tests/programs, so its frames read
`target:third_func`. `ctypes.string_at` is Python code in the standard library calling the C
function that faults, so a segv signature starts with `ctypes:string_at`. Version 1 reads
Python frames only (it ran when the engine gave no native frames).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import corefactory
import pytest
import sysroot
from corefactory import CoreCase, CoreUnavailable, Interpreter

from triage import signature
from triage.engine import analyze_core
from triage.report import (
    CoreReport,
    FrameReport,
    Signature,
)
from triage.signature import Rules, program_root
from triage.signature.normalise import python_frame
from triage.signature.v1 import VERSION, is_meaningful

V1 = Rules(version=1)


def v1(report: CoreReport) -> Signature | None:
    """The report's version-1 signature."""
    return signature.compute_signature(report, V1)


def compute_signature(report: CoreReport, rules: Rules = V1) -> Signature | None:
    return signature.compute_signature(report, dataclasses.replace(rules, version=1))


def resignature(sig: Signature, rules: Rules, reason: str | None = None) -> Signature:
    return signature.resignature(sig, dataclasses.replace(rules, version=1), reason)


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


def test_segv_signature_is_the_same_for_every_interpreter(
    cores, interpreters: list[Interpreter], reports
) -> None:
    if not interpreters:
        pytest.skip("no Python interpreter found")
    by_interp = {}
    for interp in interpreters:
        sig = v1(reports(cores.crash(interp, "segv").path))
        assert sig is not None
        by_interp[interp.id] = (sig.id, sig.text)
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
    assert as_dict(v1(report)) == expected(text, frames, frames, case.main_tid)


def test_different_sites_and_reasons_differ(cores, interpreter: Interpreter, reports) -> None:
    ids = {
        kind: v1(reports(cores.crash(interpreter, kind).path)).id
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
    assert as_dict(v1(report)) == expected(text, frames, all_frames, case.tids["crasher"])


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
    assert as_dict(v1(moved)) == expected(SEGV_TEXT, SEGV_FRAMES, SEGV_FRAMES, case.main_tid)
    assert v1(moved).id == v1(original).id == SEGV_ID


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
    assert as_dict(v1(report)) == expected("on-demand | " + " | ".join(tops), tops, tops, None)


def test_on_demand_uses_the_gil_holder(scenario_cores, interpreter: Interpreter, reports) -> None:
    """gcore of scenarios.py multi: the busy-loop thread holds the GIL; the others sleep."""
    if interpreter.sysroot is not None:
        pytest.skip(sysroot.NO_GCORE)
    case = scenario_cores.get(interpreter, "multi")
    report = reports(case.path)
    holders = [t.tid for t in report.threads if t.holds_gil]
    assert holders == [case.tids["busy-loop"]]
    all_frames = ["scenarios:busy_main", *bootstrap_frames(case.version)]
    assert as_dict(v1(report)) == expected(
        "on-demand | scenarios:busy_main", ["scenarios:busy_main"], all_frames, holders[0]
    )


# --------------------------------------------------------------------------------------------
# Wiring: analyze_core without Python, bad input, the sweep task with a fleet's rules


def test_without_python_the_signature_is_the_reason(cores, preferred_interp: Interpreter):
    case = cores.crash(preferred_interp, "segv")
    report = analyze_core(case.path, python=False)
    assert report.error is None
    assert as_dict(v1(report)) == expected("SIGSEGV", [], [], case.main_tid)


# --------------------------------------------------------------------------------------------
# (e) Normalising frames


def py(file: str, function: str, qualname: str | None = None) -> FrameReport:
    return FrameReport(kind="python", function=function, file=file, line=1, qualname=qualname)


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
    ],
)
def test_normalise_python_frame(frame: FrameReport, root: str | None, text: str) -> None:
    assert python_frame(frame, root) == text


# --------------------------------------------------------------------------------------------
# (e) Skipping


@pytest.mark.parametrize(
    "frame",
    [
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
        "mymod:main",
        "app:abort",
        "signal:raise_signal",
    ],
)
def test_meaningful_frames(frame: str) -> None:
    assert is_meaningful(frame, Rules())


def test_fleet_skip_patterns() -> None:
    rules = Rules(skip=("numpy.*", "libfoo.so", "app.util:retry*"))
    assert not is_meaningful("numpy.core._methods:_sum", rules)
    assert not is_meaningful("app.util:retry_call", rules)
    assert is_meaningful("app.util:parse", rules)
    assert is_meaningful("numpy_extra:f", rules)  # fnmatch is on the whole frame, case kept
    assert is_meaningful("Numpy.x:f", rules)


# --------------------------------------------------------------------------------------------
# Native frames are not version 1's


def test_native_frames_leave_version_1_unchanged(cores, preferred_interp: Interpreter) -> None:
    """The crashed thread's native frames (every report has them now) and --native's change
    nothing: version 1 is what it was when the engine had no native frames."""
    case = cores.crash(preferred_interp, "segv")
    plain = analyze_core(case.path, **sysroot.options_for(case.path), crashed_native=False)
    full = analyze_core(case.path, **sysroot.options_for(case.path), native=True)
    crashed = next(t for t in full.threads if t.crashed)
    assert any(f.kind == "native" for f in crashed.frames)
    assert not any(f.kind == "native" for t in plain.threads for f in t.frames)
    expect = expected(SEGV_TEXT, SEGV_FRAMES, SEGV_FRAMES, case.main_tid)
    assert as_dict(v1(plain)) == as_dict(v1(full)) == expect


# --------------------------------------------------------------------------------------------
# (e) resignature: new rules from all_frames alone


def test_resignature_of_a_real_core(cores, preferred_interp: Interpreter, reports) -> None:
    case = cores.crash(preferred_interp, "segv")
    report = reports(case.path)
    sig = v1(report)
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
    sig = v1(reports(cores.gcore(preferred_interp).path))
    assert sig is not None and sig.thread is None
    new = resignature(sig, Rules(skip=("target:worker_*",)), "on-demand")
    assert as_dict(new) == expected(
        "on-demand | target:third_func",
        ["target:third_func"],
        ["target:third_func", "target:worker_sleep"],
        None,
    )


def test_signature_ids() -> None:
    assert VERSION == 1
    assert signature.signature_id(SEGV_TEXT, 1) == SEGV_ID == sha_id(SEGV_TEXT)
    assert signature.signature_id("SIGSEGV", 1) == sha_id("SIGSEGV")
    assert signature.signature_id("SIGSEGV", 2) != signature.signature_id("SIGSEGV", 1)
