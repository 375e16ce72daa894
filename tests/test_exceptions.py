"""The exceptions threads were raising or handling, and the process's last uncaught one, from
real cores of tests/programs/exceptions.py on every interpreter found:

* `handling`: the main thread aborts inside `except ValueError`, three calls deep, while
  other threads sleep inside nested except blocks, inside a generator handling one exception
  while its caller handles another, inside `except` of a class of the program raised with
  two arguments, and outside any (the kernel's core of SIGABRT);
* `raised`: a C function sets RuntimeError with PyErr_SetString and aborts before returning;
* `uncaught`: gdb stops the interpreter as it is about to print the main script's uncaught
  ValueError (PyErr_Print) and dumps it (host interpreters: gdb 13 cannot read sid's);
* `last`: the main script's uncaught ValueError was printed and an atexit function aborts;
* damaged copies of a core: what cannot be read is left out, the rest is still there.

Line numbers come from the program's source, never from the cores.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import corefactory
import pytest
from corefactory import CoreUnavailable, Interpreter

from triage.cpython.layout import load_layout

PROGRAM = corefactory.PROGRAMS_DIR / "exceptions.py"
SOURCE = PROGRAM.read_text().splitlines()

#: A C function that sets an exception the way C extensions do and aborts before returning
#: (the Python API found at run time: the library links nothing of Python's).
RAISING_C = """\
#include <dlfcn.h>
#include <stdlib.h>

typedef void (*set_string)(void *type, const char *message);

void raise_and_abort(const char *message) {
    set_string set = (set_string)dlsym(RTLD_DEFAULT, "PyErr_SetString");
    void **type = (void **)dlsym(RTLD_DEFAULT, "PyExc_RuntimeError");
    set(*type, message);
    abort();
}
"""

UNMAPPED = 0xDEAD0000  # an address no core of these programs maps


def line_of(text: str, function: str | None = None) -> int:
    """The number of the one line of the program (of `function`'s body, if given) that holds
    `text`."""
    numbered = list(enumerate(SOURCE, 1))
    if function is not None:
        start = next(n for n, line in numbered if line.startswith(f"def {function}("))
        end = next(
            (n for n, line in numbered[start:] if line and not line[0].isspace()), len(SOURCE)
        )
        numbered = numbered[start : end - 1]
    found = [number for number, line in numbered if text in line]
    assert len(found) == 1, (text, function, found)
    return found[0]


def shown(exception: dict) -> tuple:
    """(state, type, message, [(file, function, line), ...]) of a reported exception."""
    frames = [(f["file"], f["function"], f["line"]) for f in exception["frames"]]
    return exception["state"], exception["type"], exception["message"], frames


class Expected:
    """What the report must say of the program's exceptions, as run by one interpreter."""

    def __init__(self, interp: Interpreter) -> None:
        self.program = interp.see(PROGRAM)
        self.raise_value = self.at("raise_value", "raise ValueError(text)")

    def at(self, function: str, text: str) -> tuple[str, str, int]:
        """A frame of `function` at the line of its body that holds `text`."""
        body = None if function == "<module>" else function
        return self.program, function, line_of(text, body)

    def value_error(self, state: str, message: str, function: str, call: str) -> tuple:
        """A ValueError raised by raise_value(), called by `function` at `call`."""
        return state, "ValueError", message, [self.at(function, call), self.raise_value]


@pytest.fixture(scope="module")
def exception_cores(tmp_path_factory: pytest.TempPathFactory):
    """exception_cores(interp, mode, *args) -> the kernel core of exceptions.py MODE ARGS
    (made once per module and interpreter)."""
    made: dict[tuple, object] = {}

    def core(interp: Interpreter, mode: str, *args: str) -> str:
        key = (interp.id, mode)
        if key not in made:
            try:
                directory = tmp_path_factory.mktemp(f"exceptions-{mode}-{interp.id}")
                made[key] = corefactory.crash_program(
                    interp, directory, "exceptions.py", mode, *args
                )[0]
            except CoreUnavailable as exc:
                made[key] = exc
        found = made[key]
        if isinstance(found, CoreUnavailable):
            pytest.skip(str(found))
        return str(found)

    return core


def threads_by_name(report: dict) -> dict[str, dict]:
    return {t["name"]: t for t in report["threads"] if t["name"]}


# ------------------------------------------------------------------------------------------
# handling


def test_aborted_inside_an_except_block(
    interpreter: Interpreter, exception_cores, triage_json
) -> None:
    report = triage_json(exception_cores(interpreter, "handling"))
    (crashed,) = [t for t in report["threads"] if t["crashed"]]
    assert crashed["name"] == "MainThread"
    expected = Expected(interpreter)
    assert [shown(e) for e in crashed["exceptions"]] == [
        expected.value_error("handling", "bad value", "third", 'raise_value("bad value")')
    ]
    (exception,) = crashed["exceptions"]
    assert exception["address"] > 0
    assert report["last_exception"] is None


def test_nested_handlers(interpreter: Interpreter, exception_cores, triage_json) -> None:
    """An exception raised and caught inside another except block: the inner one is handled,
    the outer one is what it was raised while handling (its __context__)."""
    thread = threads_by_name(triage_json(exception_cores(interpreter, "handling")))["nested"]
    expected = Expected(interpreter)
    inner = ("handling", "TypeError", "inner", [expected.at("nested", 'raise TypeError("inner")')])
    if interpreter.version < (3,):
        # 2.7's thread state holds the innermost handled exception alone; exceptions keep no
        # __context__.
        assert [shown(e) for e in thread["exceptions"]] == [inner]
        return
    outer = expected.value_error("context", "outer", "nested", 'raise_value("outer")')
    assert [shown(e) for e in thread["exceptions"]] == [inner, outer]


def test_generator_handling_while_its_caller_handles(
    interpreter: Interpreter, exception_cores, triage_json
) -> None:
    """3.7+: the running generator's handled exception, then its caller's (one stack item
    each); 3.6 knows the caller's only as the __context__ of the generator's."""
    thread = threads_by_name(triage_json(exception_cores(interpreter, "handling")))["generator"]
    expected = Expected(interpreter)
    in_generator = expected.value_error(
        "handling", "in generator", "handling_generator", 'raise_value("in generator")'
    )
    caller = "handling" if interpreter.version >= (3, 7) else "context"
    key_error = (caller, "KeyError", "'missing'", [expected.at("generator", '{}["missing"]')])
    wanted = [in_generator] if interpreter.version < (3,) else [in_generator, key_error]
    assert [shown(e) for e in thread["exceptions"]] == wanted


def test_class_of_the_program_with_two_arguments(
    interpreter: Interpreter, exception_cores, triage_json
) -> None:
    thread = threads_by_name(triage_json(exception_cores(interpreter, "handling")))["custom"]
    expected = Expected(interpreter)
    # module.QualName; 2.7 classes have no __qualname__, only their name.
    name = "__main__.DiskFull" if interpreter.version < (3,) else "__main__.Errors.DiskFull"
    raised = expected.at("custom", 'raise Errors.DiskFull("/var", 28)')
    assert [shown(e) for e in thread["exceptions"]] == [
        ("handling", name, "('/var', 28)", [raised])
    ]


def test_thread_handling_nothing(interpreter: Interpreter, exception_cores, triage_json) -> None:
    thread = threads_by_name(triage_json(exception_cores(interpreter, "handling")))["idle"]
    assert thread["frames"]
    assert thread["exceptions"] == []


def test_text_shows_what_each_thread_handles(
    interpreter: Interpreter, exception_cores, run_triage
) -> None:
    rc, out, err = run_triage("core", exception_cores(interpreter, "handling"), "--no-color")
    assert rc == 0, err
    lines = out.splitlines()
    program = interpreter.see(PROGRAM)
    abort = line_of("os.abort()", "third")
    call, raised = line_of("raise_value(", "third"), line_of("raise ValueError(", "raise_value")
    newest = lines.index(f'    (Python) File "{program}", line {abort}, in third')
    assert lines[newest + 1 : newest + 7] == [
        "        os.abort()",
        "    Handling ValueError: bad value",
        f'      File "{program}", line {call}, in third',
        '        raise_value("bad value")',
        f'      File "{program}", line {raised}, in raise_value',
        "        raise ValueError(text)",
    ]
    assert not lines[newest + 7 :] or lines[newest + 7].startswith("Traceback for thread ")
    # A thread that handles nothing: its traceback ends with its newest frame's source line.
    idle = next(i for i, line in enumerate(lines) if " (idle) " in line)
    ends = [i for i in range(idle + 1, len(lines)) if lines[i].startswith("Traceback")]
    assert lines[(ends or [len(lines)])[0] - 1] == "        time.sleep(1000)"
    if interpreter.version >= (3,):
        at = lines.index("    Handling TypeError: inner")
        assert lines[at + 3] == "    While handling ValueError: outer"
    assert "Last uncaught exception" not in out


# ------------------------------------------------------------------------------------------
# raised, not yet caught


@pytest.fixture(scope="module")
def raising_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) to build the library that raises from C")
    directory = tmp_path_factory.mktemp("raising-library")
    (directory / "raise.c").write_text(RAISING_C)
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "raise.c", "-o", "libraise.so"], cwd=directory, check=True
    )
    return directory / "libraise.so"


def test_raised_in_c_when_it_aborts(
    interpreter: Interpreter, raising_library: Path, tmp_path: Path, exception_cores, triage_json
) -> None:
    """Set with PyErr_SetString and not yet caught: unnormalised up to 3.11 (a class and a
    str, no exception object yet), an exception object from 3.12; no traceback either way."""
    library = interpreter.workdir(tmp_path / "library") / raising_library.name
    shutil.copy(raising_library, library)
    report = triage_json(exception_cores(interpreter, "raised", interpreter.see(library)))
    (crashed,) = [t for t in report["threads"] if t["crashed"]]
    assert [shown(e) for e in crashed["exceptions"]] == [("raised", "RuntimeError", "set by C", [])]
    normalised = crashed["exceptions"][0]["address"] is not None
    assert normalised == (interpreter.version >= (3, 12))


def test_raised_as_the_interpreter_prints_it(
    interpreter: Interpreter, tmp_path: Path, triage_json
) -> None:
    """The main script's uncaught ValueError, still set when PyErr_Print is entered, with the
    traceback it propagated through."""
    try:
        core, tid = corefactory.gcore_at_breakpoint(
            interpreter, tmp_path, "PyErr_Print", "exceptions.py", "uncaught"
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    report = triage_json(str(core))
    (thread,) = [t for t in report["threads"] if t["tid"] == tid]
    expected = Expected(interpreter)
    call = expected.at("<module>", 'fail("uncaught")')
    fail = expected.at("fail", "raise ValueError(text)")
    assert [shown(e) for e in thread["exceptions"]] == [
        ("raised", "ValueError", "uncaught", [call, fail])
    ]
    assert report["last_exception"] is None  # not printed yet


# ------------------------------------------------------------------------------------------
# the last uncaught exception


def test_last_uncaught_exception(
    interpreter: Interpreter, exception_cores, triage_json, run_triage
) -> None:
    core = exception_cores(interpreter, "last")
    report = triage_json(core)
    expected = Expected(interpreter)
    call = expected.at("<module>", 'fail("last one")')
    fail = expected.at("fail", "raise ValueError(text)")
    assert shown(report["last_exception"]) == ("last", "ValueError", "last one", [call, fail])
    (crashed,) = [t for t in report["threads"] if t["crashed"]]
    python = [f for f in crashed["frames"] if f["kind"] == "python"]  # (abort()'s above)
    assert python[-1]["function"] == "abort_at_exit"
    assert crashed["exceptions"] == []

    rc, out, err = run_triage("core", core, "--no-color")
    assert rc == 0, err
    program = interpreter.see(PROGRAM)
    assert out.endswith(
        "\n\nLast uncaught exception: ValueError: last one\n"
        f'  File "{program}", line {call[2]}, in <module>\n'
        '    fail("last one")\n'
        f'  File "{program}", line {fail[2]}, in fail\n'
        "    raise ValueError(text)\n"
    )


# ------------------------------------------------------------------------------------------
# damaged memory


def _load_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(vaddr, file offset, size in the file) of each PT_LOAD of an ELF64 core."""
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for index in range(phnum):
        at = phoff + index * phentsize
        p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", data, at)
        if p_type == 1 and filesz:
            out.append((vaddr, offset, filesz))
    return out


class CoreBytes:
    """A core's bytes, addressed as the process's memory."""

    def __init__(self, path: str) -> None:
        self.data = bytearray(Path(path).read_bytes())
        self.segments = _load_segments(self.data)

    def at(self, address: int) -> int:
        for vaddr, offset, size in self.segments:
            if vaddr <= address < vaddr + size:
                return offset + address - vaddr
        raise AssertionError(f"{address:#x} is not in the core")

    def u64(self, address: int) -> int:
        return struct.unpack_from("<Q", self.data, self.at(address))[0]

    def put(self, address: int, value: int) -> None:
        struct.pack_into("<Q", self.data, self.at(address), value)


@pytest.mark.parametrize(
    ("damage", "left"),
    [
        ("args", "message unknown"),
        ("tb_next", "the newest frame lost"),
        ("traceback", "no frames"),
        ("ob_type", "the exception left out"),
    ],
)
def test_damaged_exception(
    damage: str,
    left: str,
    preferred_interp: Interpreter,
    exception_cores,
    triage_json,
    tmp_path: Path,
) -> None:
    """A pointer of the main thread's exception overwritten with an unmapped address in a
    copy of the core: the rest of the report is as before, without a warning or an error."""
    original = exception_cores(preferred_interp, "handling")
    good = triage_json(original)
    (crashed,) = [t for t in good["threads"] if t["crashed"]]
    (exception,) = crashed["exceptions"]
    layout = load_layout(*preferred_interp.version[:2])
    core = CoreBytes(original)
    address = exception["address"]
    traceback = core.u64(address + layout.offset("PyBaseExceptionObject", "traceback"))
    where = {
        "args": address + layout.offset("PyBaseExceptionObject", "args"),
        "traceback": address + layout.offset("PyBaseExceptionObject", "traceback"),
        "tb_next": traceback + layout.offset("PyTracebackObject", "tb_next"),
        "ob_type": address + layout.offset("PyObject", "ob_type"),
    }[damage]
    core.put(where, UNMAPPED)
    damaged = tmp_path / "core"
    damaged.write_bytes(core.data)

    report = triage_json(str(damaged))
    assert report["error"] is None
    assert report["warnings"] == good["warnings"]
    rows = [t for t in report["threads"] if t["crashed"]]
    assert [t["frames"] for t in rows] == [crashed["frames"]]
    exceptions = rows[0]["exceptions"]
    expected = dict(exception)
    if damage == "args":
        expected["message"] = None
    elif damage == "tb_next":
        expected["frames"] = exception["frames"][:1]
    elif damage == "traceback":
        expected["frames"] = []
    assert exceptions == ([] if damage == "ob_type" else [expected]), left
    others = {t["name"]: t["exceptions"] for t in report["threads"] if not t["crashed"]}
    assert others == {t["name"]: t["exceptions"] for t in good["threads"] if not t["crashed"]}
