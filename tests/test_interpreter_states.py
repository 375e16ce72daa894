"""The interpreter's state as the report gives it, from real cores of
tests/programs/interpreter_states.py on every interpreter found: a core taken inside a garbage
collection (the collecting thread holds the GIL and says `Garbage collecting`), and one taken
while the interpreter shuts down (a warning says the stacks may be empty)."""

from __future__ import annotations

import corefactory
import pytest
from corefactory import CoreUnavailable, Interpreter

SHUTTING_DOWN = "The interpreter was shutting down when the core was made; stacks may be empty"


def _core(interp: Interpreter, tmp_path, mode: str) -> str:
    try:
        return str(
            corefactory.gcore_program(
                interp, tmp_path, "interpreter_states.py", mode, asleep=mode != "gc"
            )
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))


def test_inside_a_garbage_collection(interpreter: Interpreter, tmp_path, triage_json) -> None:
    if interpreter.version < (3, 3):
        pytest.skip(f"gc.callbacks (the way in) needs 3.3+, not {interpreter.id}")
    report = triage_json(_core(interpreter, tmp_path, "gc"))
    (thread,) = report["threads"]
    assert thread["gc_collecting"] is True and thread["holds_gil"] is True
    assert thread["status"] == ["Has the GIL", "Garbage collecting"]
    python = [f["function"] for f in thread["frames"] if f["kind"] == "python"]
    assert python[-2:] == ["<module>", "in_collection"]
    assert SHUTTING_DOWN not in report["warnings"]


def test_inside_interpreter_shutdown(interpreter: Interpreter, tmp_path, triage_json) -> None:
    if interpreter.version < (3,):
        pytest.skip(
            "Python 2.7 keeps no finalizing flag to read (only pythonrun.c's static `initialized`)"
        )
    report = triage_json(_core(interpreter, tmp_path, "exit"))
    assert report["warnings"] == [SHUTTING_DOWN]
    (thread,) = report["threads"]
    # (a sid core is the kernel's, of SIGQUIT: that thread's native frames are there too)
    assert [f["function"] for f in thread["frames"] if f["kind"] == "python"] == ["__del__"]
    assert thread["gc_collecting"] is False
