"""Python stacks read out of real cores, for every interpreter on the machine.

The cores are of tests/programs/scenarios.py (see its header), made once per interpreter per
session by tests/stackcases.py:

  multi      gcore of one process that holds every scenario at once, one per thread:
             MainThread   <module> -> first_func -> second_func -> third_func -> time.sleep
             sleeper      time.sleep
             lock-waiter  blocked on a threading.Lock the main thread holds
             busy-loop    a pure-Python loop (the GIL holder)
             recursion    300 frames of recurse()
             generator    inside a generator body driven by a for loop
             asyncio      (3.x) a task whose coroutines sleep synchronously
             methods      classmethod -> method -> function -> closure -> lambda
             unicode      a module at a non-ASCII path, non-ASCII function names (3.x)
             lines        functions below line 1000, calls spanning several lines
  crash      kernel core: "crasher" dies of SIGSEGV in ctypes.string_at three calls deep,
             MainThread and "sleeper" sleep
  subinterp  (3.12+) gcore: a thread runs code in a subinterpreter that sleeps there

Expected values come from the live process: every thread recorded its stack (file, f_lineno,
co_name, co_qualname and on 3.11+ the positions of the current instruction) just before it
blocked, and its thread id; the innermost line is the `# @MARKER` line it then blocked on. The
frames of our own programs are also checked against the markers, independently of the record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from corefactory import CoreUnavailable, Interpreter
from stackcases import (
    PROGRAM,
    RECURSION_DEPTH,
    UNICODE_DIR_NAME,
    UNICODE_FILE_NAME,
    UNICODE_THREAD_NAME,
    Frame,
    ScenarioCore,
    ScenarioCores,
    markers,
    parse_tracebacks,
)
from sysroot import on_host

SCENARIOS = str(PROGRAM)
PROGRAMS = PROGRAM.parent
SCN_ASYNC = str(PROGRAMS / "scn_async.py")
SCN_LINES = str(PROGRAMS / "scn_lines.py")
SCN_SUBINTERP = str(PROGRAMS / "scn_subinterp.py")

MULTI_THREADS = {
    "MainThread",
    "sleeper",
    "lock-waiter",
    "busy-loop",
    "recursion",
    "generator",
    "methods",
    UNICODE_THREAD_NAME,
    "lines",
}


# --------------------------------------------------------------------------------------------
# Cores, made once per interpreter and mode


@pytest.fixture
def multi(scenario_cores: ScenarioCores, interpreter: Interpreter) -> ScenarioCore:
    return scenario_cores.get(interpreter, "multi")


@pytest.fixture
def crash(scenario_cores: ScenarioCores, interpreter: Interpreter) -> ScenarioCore:
    return scenario_cores.get(interpreter, "crash")


@pytest.fixture
def subinterp(scenario_cores: ScenarioCores, interpreter: Interpreter) -> ScenarioCore:
    if interpreter.version[:2] < (3, 12):
        pytest.skip("subinterpreters need 3.12+")
    return scenario_cores.get(interpreter, "subinterp")


@pytest.fixture(params=["multi", "crash", "subinterp"])
def any_case(request, scenario_cores: ScenarioCores, interpreter: Interpreter) -> ScenarioCore:
    if request.param == "subinterp" and interpreter.version[:2] < (3, 12):
        pytest.skip("subinterpreters need 3.12+")
    return scenario_cores.get(interpreter, request.param)


@pytest.fixture(scope="session")
def text_report(run_triage):
    """text_report(core) -> stdout of `triage core CORE` (exit 0, nothing on stderr)."""
    cache: dict[str, str] = {}

    def run(core: str) -> str:
        if core not in cache:
            rc, out, err = run_triage("core", core)
            assert rc == 0, err
            assert err == ""
            cache[core] = out
        return cache[core]

    return run


# --------------------------------------------------------------------------------------------
# Helpers


def threads_of(report: dict, interpreter_id: int = 0) -> dict[int, dict]:
    """The report's threads of one interpreter by thread id (each tid once)."""
    threads = [t for t in report["threads"] if (t["interpreter_id"] or 0) == interpreter_id]
    by_tid = {t["tid"]: t for t in threads}
    assert len(by_tid) == len(threads), f"a thread id twice in interpreter {interpreter_id}"
    return by_tid


def python_frames(thread: dict) -> list[dict]:
    return [f for f in thread["frames"] if f["kind"] == "python"]


def where(frames: list[dict]) -> list[tuple[str, str, int | None]]:
    """(file, function, line) of each frame, files as this machine sees them (the programs of
    a chrooted sid interpreter are copies of tests/programs: `sysroot.on_host`)."""
    return [(on_host(f["file"]), f["function"], f["line"]) for f in frames]


def assert_stack(thread: dict, expected: list[Frame], version: tuple[int, ...]) -> None:
    """Every Python frame of `thread` is exactly the expected one: file, function, line, the
    qualname (3.11+; before, Class.method for methods, else None: what the live interpreter
    gave for the same rule) and the instruction's source position (3.11+)."""
    frames = python_frames(thread)
    assert where(frames) == [(e.file, e.function, e.line) for e in expected]
    modern = tuple(version[:2]) >= (3, 11)
    assert [f["qualname"] for f in frames] == [e.qualname for e in expected]
    if not modern:
        assert all(f["column"] is None for f in frames)
        assert all(f["end_line"] is None and f["end_column"] is None for f in frames)
        return
    got = [(f["line"], f["end_line"], f["column"], f["end_column"]) for f in frames]
    want = [e.position for e in expected]
    assert [g for g, w in zip(got, want, strict=True) if w is not None] == [
        w for w in want if w is not None
    ]


def tail(thread: dict, count: int) -> list[tuple[str, str, int | None]]:
    return where(python_frames(thread)[-count:])


def version_string(case: ScenarioCore) -> str:
    return ".".join(map(str, case.version))


# --------------------------------------------------------------------------------------------
# The multi core: every scenario's thread, exact thread ids


def test_threads_and_ids(multi: ScenarioCore, triage_json) -> None:
    report = triage_json(multi.path)
    assert report["error"] is None
    assert report["python_version"] == version_string(multi)
    names = MULTI_THREADS | ({"asyncio"} if multi.version[0] >= 3 else set())
    assert set(multi.tids) == names
    assert multi.tids["MainThread"] == multi.pid
    assert sorted(t["tid"] for t in report["threads"]) == sorted(multi.tids.values())
    # Thread names as the program named them, the non-ASCII one included.
    assert {t["tid"]: t["name"] for t in report["threads"]} == {
        tid: name for name, tid in multi.tids.items()
    }
    for thread in report["threads"]:
        assert thread["python"] is True
        assert thread["interpreter_id"] == 0
        # A gcore snapshot crashed nothing; the SIGQUIT that dumps a sid process (see
        # corefactory.snapshot) is taken by its main thread.
        assert thread["crashed"] is (multi.kind == "sigquit" and thread["tid"] == multi.pid)
        assert thread["gc_collecting"] is False


def test_nested_calls(multi: ScenarioCore, triage_json) -> None:
    """Scenario 1: <module> -> first_func -> second_func -> third_func, sleeping."""
    main = threads_of(triage_json(multi.path))[multi.tids["MainThread"]]
    assert_stack(main, multi.expected_stack("MainThread"), multi.version)
    m = markers(SCENARIOS)
    assert where(python_frames(main)) == [
        (SCENARIOS, "<module>", m["main_call"]),
        (SCENARIOS, "first_func", m["first_call"]),
        (SCENARIOS, "second_func", m["second_call"]),
        (SCENARIOS, "third_func", m["main_sleep"]),
    ]


def test_sleeping_and_blocked_threads(multi: ScenarioCore, triage_json) -> None:
    """Scenario 2: a sleeping thread and one blocked on the lock the main thread holds."""
    threads = threads_of(triage_json(multi.path))
    m = markers(SCENARIOS)
    for name, function, marker in [
        ("sleeper", "sleeper_main", "sleeper_sleep"),
        ("lock-waiter", "lock_main", "lock_acquire"),
    ]:
        thread = threads[multi.tids[name]]
        assert_stack(thread, multi.expected_stack(name), multi.version)
        assert tail(thread, 1) == [(SCENARIOS, function, m[marker])]
        assert thread["holds_gil"] is False
        assert thread["status"] == []


def test_busy_thread(multi: ScenarioCore, triage_json) -> None:
    """Scenario 2: the busy thread is inside its loop; every frame above it is exact."""
    busy = threads_of(triage_json(multi.path))[multi.tids["busy-loop"]]
    expected = multi.expected_stack("busy-loop")
    frames = python_frames(busy)
    assert len(frames) == len(expected)
    outer = dict(busy, frames=busy["frames"][: len(busy["frames"]) - 1])
    assert_stack(outer, expected[:-1], multi.version)
    innermost = frames[-1]
    m = markers(SCENARIOS)
    assert (on_host(innermost["file"]), innermost["function"]) == (SCENARIOS, "busy_main")
    assert m["busy_first"] <= innermost["line"] <= m["busy_last"]
    assert innermost["qualname"] == ("busy_main" if multi.version >= (3, 11) else None)


def test_gil_holder(multi: ScenarioCore, triage_json, text_report) -> None:
    """Scenario 2: every thread but the busy one sleeps with the GIL released, so the GIL is
    held by the busy thread or (between two of its bytecodes) by nobody."""
    report = triage_json(multi.path)
    holders = [t for t in report["threads"] if t["holds_gil"]]
    assert len(holders) <= 1
    text = {t.tid: t for t in parse_tracebacks(text_report(multi.path))}
    for thread in report["threads"]:
        if thread["holds_gil"]:
            assert thread["tid"] == multi.tids["busy-loop"]
            assert thread["status"] == ["Has the GIL"]
            assert "Has the GIL" in text[thread["tid"]].status
            assert "[Has the GIL]" in text[thread["tid"]].header
            line = python_frames(thread)[-1]["line"]
            m = markers(SCENARIOS)
            assert m["busy_first"] <= line <= m["busy_last"]
        else:
            assert thread["status"] == []
            assert text[thread["tid"]].status == []


def test_recursion(multi: ScenarioCore, triage_json) -> None:
    """Scenario 3: exactly 300 frames of recurse(), the first 299 at the recursive call."""
    thread = threads_of(triage_json(multi.path))[multi.tids["recursion"]]
    assert_stack(thread, multi.expected_stack("recursion"), multi.version)
    frames = where(python_frames(thread))
    m = markers(SCENARIOS)
    recursive = [f for f in frames if f[1] == "recurse"]
    assert len(recursive) == RECURSION_DEPTH == 300
    assert frames[-RECURSION_DEPTH - 1 :] == [
        (SCENARIOS, "recursion_main", m["recursion_call"]),
        *[(SCENARIOS, "recurse", m["recurse_call"])] * (RECURSION_DEPTH - 1),
        (SCENARIOS, "recurse", m["recurse_sleep"]),
    ]


def test_generator(multi: ScenarioCore, triage_json) -> None:
    """Scenario 4: a generator's body, under the for loop that drives it."""
    thread = threads_of(triage_json(multi.path))[multi.tids["generator"]]
    assert_stack(thread, multi.expected_stack("generator"), multi.version)
    m = markers(SCENARIOS)
    assert tail(thread, 2) == [
        (SCENARIOS, "generator_main", m["gen_for"]),
        (SCENARIOS, "produce", m["gen_sleep"]),
    ]


def test_asyncio(multi: ScenarioCore, triage_json) -> None:
    """Scenario 4: coroutines of an asyncio task, under the event loop's frames."""
    if multi.version[0] < 3:
        pytest.skip("asyncio needs Python 3 (2.7 has none)")
    thread = threads_of(triage_json(multi.path))[multi.tids["asyncio"]]
    assert_stack(thread, multi.expected_stack("asyncio"), multi.version)
    frames = where(python_frames(thread))
    m, a = markers(SCENARIOS), markers(SCN_ASYNC)
    run = "asyncio_run" if multi.version >= (3, 7) else "asyncio_run36"
    start = frames.index((SCENARIOS, "asyncio_thread_main", m["asyncio_call"]))
    assert frames[start + 1] == (SCN_ASYNC, "asyncio_main", a[run])
    assert frames[-2:] == [
        (SCN_ASYNC, "coro_outer", a["coro_await"]),
        (SCN_ASYNC, "coro_inner", a["coro_sleep"]),
    ]
    plumbing = [function for _file, function, _line in frames[start + 2 : -2]]
    expected = ["run_until_complete", "run_forever", "_run_once", "_run"]
    if multi.version >= (3, 7):
        expected = ["run", *expected]  # asyncio.run()
    position = 0
    for function in plumbing:  # `expected` in order, possibly with more frames between
        if position < len(expected) and function == expected[position]:
            position += 1
    assert position == len(expected), plumbing
    assert plumbing[-1] == "_run"  # Handle._run runs the task's step (C) which runs the coro
    asyncio_dir = os.sep + "asyncio" + os.sep
    assert all(asyncio_dir in file for file, _f, _l in frames[start + 2 : -2])


def test_methods_closures_lambdas(multi: ScenarioCore, triage_json, text_report) -> None:
    """Scenario 5: qualnames on 3.11+ (Worker.run, outer.<locals>.inner, ...); before 3.11
    methods still get Class.method (found through self/cls), other functions co_name."""
    thread = threads_of(triage_json(multi.path))[multi.tids["methods"]]
    assert_stack(thread, multi.expected_stack("methods"), multi.version)
    m = markers(SCENARIOS)
    assert tail(thread, 5) == [
        (SCENARIOS, "start", m["classmethod_call"]),
        (SCENARIOS, "run", m["method_call"]),
        (SCENARIOS, "outer", m["outer_call"]),
        (SCENARIOS, "inner", m["inner_call"]),
        (SCENARIOS, "<lambda>", m["lambda_sleep"]),
    ]
    qualnames = [f["qualname"] for f in python_frames(thread)[-5:]]
    if multi.version >= (3, 11):
        shown = [
            "Worker.start",
            "Worker.run",
            "outer",
            "outer.<locals>.inner",
            "outer.<locals>.inner.<locals>.<lambda>",
        ]
        assert qualnames == shown
    else:
        assert qualnames == ["Worker.start", "Worker.run", None, None, None]
        shown = ["Worker.start", "Worker.run", "outer", "inner", "<lambda>"]
    text = {t.tid: t for t in parse_tracebacks(text_report(multi.path))}
    assert [f[2] for f in text[multi.tids["methods"]].frames[-5:]] == shown


def test_non_ascii_names(multi: ScenarioCore, triage_json, text_report) -> None:
    """Scenario 6: a module at a non-ASCII path (1-, 2- and 4-byte characters) and, on 3.x,
    functions named with latin-1 and CJK letters."""
    thread = threads_of(triage_json(multi.path))[multi.tids[UNICODE_THREAD_NAME]]
    assert_stack(thread, multi.expected_stack(UNICODE_THREAD_NAME), multi.version)
    path = multi.unicode_path
    assert path.endswith(os.sep + UNICODE_DIR_NAME + os.sep + UNICODE_FILE_NAME)
    assert "dïr_🐍" in path and "scn_ünïcode_模块.py" in path
    if multi.version[0] >= 3:
        names = ["entry", "café", "naïve_ünïcode_函数"]
    else:
        names = ["entry", "cafe", "naive_unicode_func"]
    u = markers(path)
    assert tail(thread, 4) == [
        (SCENARIOS, "unicode_main", markers(SCENARIOS)["unicode_call"]),
        (path, names[0], u["unicode_entry_call"]),
        (path, names[1], u["unicode_cafe_call"]),
        (path, names[2], u["unicode_sleep"]),
    ]
    if multi.version >= (3, 11):
        assert [f["qualname"] for f in python_frames(thread)[-3:]] == names
    text = {t.tid: t for t in parse_tracebacks(text_report(multi.path))}
    assert [
        (on_host(f), n, fn) for f, n, fn in text[multi.tids[UNICODE_THREAD_NAME]].frames[-3:]
    ] == [
        (path, u["unicode_entry_call"], names[0]),
        (path, u["unicode_cafe_call"], names[1]),
        (path, u["unicode_sleep"], names[2]),
    ]


def test_long_files_and_multiline_calls(multi: ScenarioCore, triage_json) -> None:
    """Scenario 7: lines above 1000, and calls spanning several lines reported on the line the
    interpreter itself reports (which differs between versions)."""
    thread = threads_of(triage_json(multi.path))[multi.tids["lines"]]
    expected = multi.expected_stack("lines")
    assert_stack(thread, expected, multi.version)
    frames = python_frames(thread)[-3:]
    assert [(on_host(f["file"]), f["function"]) for f in frames] == [
        (SCN_LINES, "lines_entry"),
        (SCN_LINES, "lines_middle"),
        (SCN_LINES, "lines_nap"),
    ]
    m = markers(SCN_LINES)
    assert all(f["line"] > 1000 for f in frames)
    assert m["lines_entry_first"] <= frames[0]["line"] <= m["lines_entry_last"]
    assert m["lines_middle_first"] <= frames[1]["line"] <= m["lines_middle_last"]
    assert frames[2]["line"] == m["lines_sleep"]
    if multi.version >= (3, 11):
        # The call's own position: from its first line to its closing parenthesis.
        assert (frames[0]["line"], frames[0]["end_line"]) == (
            m["lines_entry_first"],
            m["lines_entry_last"],
        )
        assert frames[1]["line"] == m["lines_middle_first"]


def test_text_report(any_case: ScenarioCore, triage_json, text_report) -> None:
    """The text report shows every thread as the JSON does: header with its status, each
    frame as `(Python) File "F", line N, in QUALNAME_OR_NAME` and the source line under it."""
    case = any_case
    report = triage_json(case.path)
    blocks = parse_tracebacks(text_report(case.path))
    interpreters = {t["interpreter_id"] for t in report["threads"]}
    assert len(blocks) == len(report["threads"])
    for thread, block in zip(_in_text_order(report["threads"]), blocks, strict=True):
        assert block.tid == thread["tid"]
        name = f" ({thread['name']})" if thread["name"] else ""
        status = ", ".join(thread["status"])
        expected = [
            f"Traceback for thread {thread['tid']}{name} [{status}] (most recent call last):"
        ]
        for frame in python_frames(thread):
            function = frame["qualname"] or frame["function"]
            expected.append(
                f'    (Python) File "{frame["file"]}", line {frame["line"]}, in {function}'
            )
            source = _source_line(case.interpreter.readable(frame["file"]), frame["line"])
            if source:
                expected.append("        " + source)
        assert block.lines == expected
        if len(interpreters) == 1:
            assert block.group is None
        elif thread["interpreter_id"] == 0:
            assert block.group == "In the main interpreter"
        else:
            assert block.group == f"In interpreter {thread['interpreter_id']}"


def _in_text_order(threads: list[dict]) -> list[dict]:
    """Threads grouped by interpreter (main first), in report order within a group."""
    return sorted(threads, key=lambda t: t["interpreter_id"] or 0)


def _source_line(path: str, line: int) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    if not 1 <= line <= len(lines):
        return None
    return lines[line - 1].strip() or None


def test_thread_names(any_case: ScenarioCore, triage_json, text_report) -> None:
    """Python thread names (threading.Thread(name=...)) of the main interpreter's threads."""
    case = any_case
    report = triage_json(case.path)
    if all(t["name"] is None for t in report["threads"]):
        pytest.skip("thread names not implemented")
    threads = threads_of(report)
    text = {(b.group, b.tid): b for b in parse_tracebacks(text_report(case.path))}
    group = "In the main interpreter" if case.mode == "subinterp" else None
    for name, tid in case.tids.items():
        assert threads[tid]["name"] == name
        assert text[(group, tid)].name == name


# --------------------------------------------------------------------------------------------
# Scenario 9: a crash


def test_crash(crash: ScenarioCore, triage_json) -> None:
    """The thread that faulted is the crashed one, with its frames down to ctypes.string_at."""
    report = triage_json(crash.path)
    assert report["error"] is None
    assert report["python_version"] == version_string(crash)
    assert report["signal"]["name"] == "SIGSEGV"
    assert report["signal"]["fault_address"] == 0x75BCD15
    assert set(crash.tids) == {"MainThread", "sleeper", "crasher"}
    threads = threads_of(report)
    assert sorted(threads) == sorted(crash.tids.values())
    crashed = [t["tid"] for t in report["threads"] if t["crashed"]]
    assert crashed == [crash.tids["crasher"]]
    for name, tid in crash.tids.items():
        assert_stack(threads[tid], crash.expected_stack(name), crash.version)
    m = markers(SCENARIOS)
    crasher = threads[crash.tids["crasher"]]
    file, line, _function = crash.ready["string_at"]
    assert tail(crasher, 4) == [
        (SCENARIOS, "crash_outer", m["crash_outer_call"]),
        (SCENARIOS, "crash_middle", m["crash_middle_call"]),
        (SCENARIOS, "crash_inner", m["crash_call"]),
        (file, "string_at", line),
    ]
    assert file.endswith(os.sep + os.path.join("ctypes", "__init__.py"))
    # ctypes calls string_at's C function with the GIL held (a PYFUNCTYPE): the crasher has it.
    assert crasher["holds_gil"] is True
    assert crasher["status"] == ["Crashed", "Has the GIL"]
    for name in ("MainThread", "sleeper"):
        assert threads[crash.tids[name]]["status"] == []


# --------------------------------------------------------------------------------------------
# Scenario 8: subinterpreters


def test_subinterpreter(subinterp: ScenarioCore, triage_json) -> None:
    report = triage_json(subinterp.path)
    assert report["error"] is None
    sub_id = subinterp.ready["subinterpreter_id"]
    assert sub_id != 0
    host = subinterp.tids["subinterp"]
    assert subinterp.ready["subinterpreter_stack"]["tid"] == host
    main_threads = threads_of(report, 0)
    assert sorted(main_threads) == sorted(subinterp.tids.values())
    for name, tid in subinterp.tids.items():
        assert_stack(main_threads[tid], subinterp.expected_stack(name), subinterp.version)
    sub_threads = threads_of(report, sub_id)
    assert list(sub_threads) == [host]
    assert {t["interpreter_id"] for t in report["threads"]} == {0, sub_id}
    assert_stack(sub_threads[host], subinterp.subinterpreter_stack(), subinterp.version)
    code = subinterp.ready["subinterpreter_code"].splitlines()
    code_line = 1 + next(i for i, text in enumerate(code) if text.startswith("scn_subinterp."))
    s = markers(SCN_SUBINTERP)
    script = subinterp.subinterpreter_stack()[0].file  # what the live interpreter named it
    assert script == ("<script>" if subinterp.version >= (3, 14) else "<string>")
    assert where(python_frames(sub_threads[host])) == [
        (script, "<module>", code_line),
        (SCN_SUBINTERP, "sub_main", s["sub_call"]),
        (SCN_SUBINTERP, "sub_sleep", s["sub_sleep"]),
    ]
    m = markers(SCENARIOS)
    assert tail(main_threads[host], 1) == [(SCENARIOS, "subinterp_main", m["subinterp_run"])]


def test_subinterpreter_text_groups(subinterp: ScenarioCore, text_report) -> None:
    text = text_report(subinterp.path)
    sub_id = subinterp.ready["subinterpreter_id"]
    lines = text.splitlines()
    assert lines.count("In the main interpreter") == 1
    assert lines.count(f"In interpreter {sub_id}") == 1
    assert lines.index("In the main interpreter") < lines.index(f"In interpreter {sub_id}")
    blocks = parse_tracebacks(text)
    host = subinterp.tids["subinterp"]
    assert [(b.group, b.tid) for b in blocks] == [
        ("In the main interpreter", subinterp.tids["MainThread"]),
        ("In the main interpreter", host),
        (f"In interpreter {sub_id}", host),
    ]
    file, line, function = blocks[2].frames[-1]
    assert (on_host(file), line, function) == (
        SCN_SUBINTERP,
        markers(SCN_SUBINTERP)["sub_sleep"],
        "sub_sleep",
    )


# --------------------------------------------------------------------------------------------
# Scenario 10: the same stacks as PyStack


@pytest.fixture(scope="session")
def pystack() -> str:
    found = shutil.which("pystack") or shutil.which("pystack", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.skip("pystack is not installed (pip install pystack)")
    return found


@pytest.mark.parametrize("mode", ["multi", "crash"])
def test_same_stacks_as_pystack(
    mode: str, scenario_cores: ScenarioCores, interpreter: Interpreter, pystack: str, triage_json
) -> None:
    """`pystack core` on the same core shows the same (file, line, co_name) for every thread.

    Not compared: the ünïcode-線 thread on 3.x, where PyStack stops at the first frame with a
    non-ASCII string (a known PyStack bug, DOMAIN.md section 5).
    """
    case = scenario_cores.get(interpreter, mode)
    sysroot_args = []
    if interpreter.sysroot is not None:  # PyStack wants the executable then
        sysroot_args = [interpreter.realpath, "--lib-search-root", interpreter.sysroot]
    result = subprocess.run(
        [pystack, "core", "--no-color", case.path, *sysroot_args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0 and "not supported" in (result.stderr + result.stdout).lower():
        pytest.skip(f"PyStack does not support Python {version_string(case)}")
    assert result.returncode == 0, result.stderr
    theirs = {block.tid: block for block in parse_tracebacks(result.stdout)}
    ours = threads_of(triage_json(case.path))
    assert sorted(theirs) == sorted(ours)
    compared = 0
    for name, tid in case.tids.items():
        if name == UNICODE_THREAD_NAME and case.version[0] >= 3:
            continue
        mine = [(f["file"], f["line"], f["function"]) for f in python_frames(ours[tid])]
        if interpreter.sysroot is not None:
            theirs[tid].frames = [(on_host(f), n, fn) for f, n, fn in theirs[tid].frames]
            mine = [(on_host(f), n, fn) for f, n, fn in mine]
        assert theirs[tid].frames == mine, name
        compared += 1
    assert compared >= 3


# --------------------------------------------------------------------------------------------
# The error path: no Python in the core


def test_not_python_json(scenario_cores: ScenarioCores, run_triage) -> None:
    core = scenario_cores.non_python()
    rc, out, err = run_triage("core", core, "--format", "json")
    assert rc == 1
    assert len(err.splitlines()) == 1 and "no CPython found" in err, err
    report = json.loads(out)
    assert report["error"]["kind"] == "not_python"
    assert "no CPython found" in report["error"]["message"]
    assert report["python_version"] is None
    assert all(not t["python"] and t["frames"] == [] for t in report["threads"])


def test_not_python_text(scenario_cores: ScenarioCores, run_triage) -> None:
    core = scenario_cores.non_python()
    rc, out, err = run_triage("core", core)
    assert rc == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("triage: error: no CPython found in the core")
    assert "Traceback" not in out


def test_stack_deeper_than_the_frame_limit_says_so(cores, preferred_interp, tmp_path, triage_json):
    """Runaway recursion: the newest MAX_FRAMES frames are shown, and a warning says the
    stack goes deeper (never a silent cut)."""
    import corefactory

    from triage.cpython.frames import MAX_FRAMES

    try:
        path = corefactory.make_deep_stacks_core(preferred_interp, tmp_path, 1, MAX_FRAMES + 50)
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    report = triage_json(str(path))
    (thread,) = report["threads"]
    frames = thread["frames"]
    assert len(frames) == MAX_FRAMES
    assert [f["function"] for f in frames[-2:]] == ["down", "bottom"]  # the newest kept
    assert {f["function"] for f in frames[:-1]} == {"down"}
    assert report["warnings"] == [
        f"thread {thread['tid']}: the stack is deeper than {MAX_FRAMES} frames; "
        f"only the newest {MAX_FRAMES} are shown"
    ]
