"""What only native frames tell, from real cores of tests/programs/native_states.py and
interpreter_states.py on every interpreter found:

* a thread the interpreter does not know (created by pthread_create through ctypes) is shown
  by --native-all, with its native frames, and only then;
* threads spinning in Python wait for the GIL in take_gil: `Waiting for the GIL`;
* a thread stopped by gdb as it enters drop_gil says `Dropping the GIL`;
* a thread inside a garbage collection has the collector's function on its native stack, and
  says `Garbage collecting` once (the interpreter's flag and the frames agree).
"""

from __future__ import annotations

import corefactory
import pytest
from corefactory import CoreUnavailable, Interpreter
from stackcases import parse_tracebacks

from triage.coredump.symbols import load_symbols
from triage.native.unwind import debug_file


def _named(report: dict, library: str, interpreter: Interpreter) -> bool:
    """Whether the static functions of a mapped file can be named here: it keeps its symbol
    table, or its separate debug file is on this machine or in the interpreter's sysroot."""
    (lib,) = [x for x in report["libraries"] if x["path"].rsplit("/", 1)[-1].startswith(library)]
    roots = (interpreter.sysroot,) if interpreter.sysroot else ()
    if debug_file(lib["build_id"], roots):
        return True
    return ".symtab" in load_symbols(lib["found_path"]).sections


def _core(interp: Interpreter, tmp_path, *args: str, asleep: bool = True) -> str:
    try:
        return str(
            corefactory.gcore_program(interp, tmp_path, "native_states.py", *args, asleep=asleep)
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))


def test_native_all_shows_threads_python_does_not_know(
    interpreter: Interpreter, tmp_path, triage_json, run_triage
) -> None:
    core = _core(interpreter, tmp_path, "native-thread")
    report = triage_json(core, "--native")
    unknown = [t for t in report["threads"] if not t["python"]]
    assert len(unknown) == 1
    (native,) = unknown
    functions = [f["function"] for f in native["frames"] if f["kind"] == "native"]
    assert all(f["kind"] == "native" for f in native["frames"])
    # Oldest first: the thread's start (a static function of libc), then libc's sleep.
    if _named(report, "libc.so", interpreter):
        assert any(name.startswith(("start_thread", "__clone")) for name in functions[:3])
    assert any("sleep" in name for name in functions[-4:]), functions
    rc, text, err = run_triage("core", core, "--native-all", "--no-color")
    assert rc == 0, err
    blocks = {b.tid: b for b in parse_tracebacks(text)}
    assert native["tid"] in blocks
    assert blocks[native["tid"]].frames == []  # native frames only
    assert len([line for line in blocks[native["tid"]].lines if line.startswith("    (C) ")]) >= 3
    rc, text, err = run_triage("core", core, "--native", "--no-color")
    assert rc == 0, err
    assert native["tid"] not in {b.tid for b in parse_tracebacks(text)}


def test_threads_waiting_for_the_gil(interpreter: Interpreter, tmp_path, triage_json) -> None:
    if interpreter.version < (3, 2):
        pytest.skip(f"{interpreter.id}'s GIL is a plain lock: no take_gil to wait in")
    core = _core(interpreter, tmp_path, "gil", "3", asleep=False)
    report = triage_json(core, "--native")
    binary = (report["python_binary"] or "").rsplit("/", 1)[-1]
    if not _named(report, binary, interpreter):
        pytest.skip(f"{binary} is stripped and its debug file is not here: take_gil is unnamed")
    spinning = [t for t in report["threads"] if t["python"] and t["name"] != "MainThread"]
    assert len(spinning) == 3
    waiting = [t for t in spinning if "Waiting for the GIL" in t["status"]]
    holders = [t for t in report["threads"] if t["holds_gil"]]
    assert len(holders) <= 1
    assert waiting, [t["status"] for t in spinning]
    for thread in waiting:
        native = [f["function"] for f in thread["frames"] if f["kind"] == "native"]
        assert any(name.split(".")[0] == "take_gil" for name in native), native
        assert thread["status"].count("Waiting for the GIL") == 1
    plain = triage_json(core)
    assert not any("Waiting for the GIL" in t["status"] for t in plain["threads"])


def test_thread_dropping_the_gil(interpreter: Interpreter, tmp_path, triage_json) -> None:
    if interpreter.version < (3, 2):
        pytest.skip(f"{interpreter.id}'s GIL is a plain lock: no drop_gil to be in")
    try:
        core, tid = corefactory.gcore_at_breakpoint(
            interpreter, tmp_path, "drop_gil", "native_states.py", "gil", "3"
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    report = triage_json(str(core), "--native")
    dropping = [t for t in report["threads"] if "Dropping the GIL" in t["status"]]
    assert [t["tid"] for t in dropping] == [tid]
    (thread,) = dropping
    assert thread["frames"][-1]["kind"] == "native"
    assert thread["frames"][-1]["function"].split(".")[0] == "drop_gil"  # Debian: .lto_priv.0
    assert thread["status"].count("Dropping the GIL") == 1
    holders = [t["tid"] for t in report["threads"] if t["holds_gil"]]
    if interpreter.version >= (3, 12):
        # The GIL itself (locked, last_holder) says who holds it: still the thread dropping it.
        assert holders == [tid]
    else:
        # Before 3.12 the holder is the runtime's current thread state, which is set to NULL
        # just before drop_gil: no thread has the GIL (PyStack says the same).
        assert holders == []
    # Without --native: the thread gdb stopped took the core's signal (SIGTRAP), so its
    # native stack is unwound all the same, and says the same.
    plain = triage_json(str(core))
    assert plain["signal"]["name"] == "SIGTRAP"
    assert [t["tid"] for t in plain["threads"] if "Dropping the GIL" in t["status"]] == [tid]


def test_garbage_collecting_from_native_frames(
    interpreter: Interpreter, tmp_path, triage_json
) -> None:
    if interpreter.version < (3, 3):
        pytest.skip(f"gc.callbacks (the way in) needs 3.3+, not {interpreter.id}")
    try:
        core = corefactory.gcore_program(
            interpreter, tmp_path, "interpreter_states.py", "gc", asleep=False
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    report = triage_json(str(core), "--native")
    binary = (report["python_binary"] or "").rsplit("/", 1)[-1]
    if not _named(report, binary, interpreter):
        pytest.skip(f"{binary} is stripped and its debug file is not here: the GC is unnamed")
    (thread,) = report["threads"]
    native = [f["function"] for f in thread["frames"] if f["kind"] == "native"]
    gc_functions = {"collect", "collect_with_callback", "collect_generations"}
    collector = [n for n in native if n.split(".")[0] in gc_functions or "gc_collect" in n]
    assert collector, native
    assert thread["status"] == ["Has the GIL", "Garbage collecting"]
