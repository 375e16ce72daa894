"""`triage core --native`: every thread's native stack, unwound with the modules' call-frame
information and merged with its Python frames, on a real gcore core of every interpreter
found. gdb (`thread apply all bt`, on the same core) is the reference for the native frames:
the same return addresses, in the same order, the eval-loop frames excepted (the Python
frames stand in their place)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from corefactory import Interpreter

from triage.native.unwind import debug_file

EVAL_LOOP = ("_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx")


def in_eval_loop(name: str) -> bool:
    """gdb's name of an eval-loop frame (Debian's 3.14 runs its loop in the split-off
    `_PyEval_EvalFrameDefault.cold`)."""
    return any(loop in name for loop in EVAL_LOOP)


def eval_loop_ranges(debug: str) -> list[range]:
    """The address ranges of the eval loop's functions in a (non-PIE) executable, from its
    separate debug file's symbol table, read with pyelftools alone. For the sid sysroot: the
    host's gdb 13 neither names these stripped binaries' functions from their debug files
    nor unwinds through them with that DWARF, so its frames are taken without debug files
    and their eval-loop frames told by address."""
    from elftools.elf.elffile import ELFFile

    with open(debug, "rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        return [
            range(sym["st_value"], sym["st_value"] + sym["st_size"])
            for sym in symtab.iter_symbols()
            if sym["st_info"]["type"] == "STT_FUNC" and in_eval_loop(sym.name)
        ]


# gdb's physical frames, by thread: it also lists inlined functions and the callers of tail
# calls (reconstructed from DWARF call sites), which have no frame of their own on the stack.
GDB_SCRIPT = """
import gdb
for thread in gdb.selected_inferior().threads():
    thread.switch()
    frame, out = gdb.newest_frame(), []
    while frame is not None:
        if frame.type() in (gdb.NORMAL_FRAME, gdb.SIGTRAMP_FRAME):
            out.append("%#x:%s" % (frame.pc(), frame.name() or "??"))
        frame = frame.older()
    print("THREAD %d %s" % (thread.ptid[1], " ".join(out)))
"""


GDB = ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set backtrace past-main on"]


def gdb_stacks(
    executable: str, core: str, script: Path, root: str | None = None
) -> dict[int, list[tuple[int, str]]]:
    """gdb's physical frames (address, function), newest first, by thread; with `root`, the
    libraries of that sysroot and no debug files (see eval_loop_ranges)."""
    script.write_text(GDB_SCRIPT)
    where = []
    if root is not None:
        where = ["-ex", f"set sysroot {root}", "-ex", "set debug-file-directory /nonexistent"]
    out = subprocess.run(
        [*GDB, *where, "-x", str(script), executable, core],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    stacks = {}
    for line in out.splitlines():
        if line.startswith("THREAD "):
            _, tid, *frames = line.split()
            stacks[int(tid)] = [(int(f.split(":")[0], 16), f.split(":", 1)[1]) for f in frames]
    return stacks


def test_native_frames_are_gdbs(interpreter: Interpreter, cores, triage_json, tmp_path) -> None:
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    case = cores.gcore(interpreter, threads=1)
    plain = triage_json(case.path)
    native = triage_json(case.path, "--native")
    executable = (
        interpreter.host(native["executable"])
        if interpreter.sysroot is None
        else interpreter.realpath
    )
    reference = gdb_stacks(executable, case.path, tmp_path / "frames.py", interpreter.sysroot)
    loop: list[range] = []
    if interpreter.sysroot is not None:
        exe = next(lib for lib in native["libraries"] if lib["path"] == native["executable"])
        # Release builds: the -dbg package's debug file; debug builds are not stripped.
        debug = debug_file(exe["build_id"], (interpreter.sysroot,)) or interpreter.realpath
        loop = eval_loop_ranges(debug)
        assert loop
    assert sorted(reference) == sorted(case.tids)
    for thread, before in zip(native["threads"], plain["threads"], strict=True):
        frames = thread["frames"][::-1]  # newest first, as gdb lists them
        ours = [f["address"] for f in frames if f["kind"] == "native"]
        theirs = [
            a
            for a, name in reference[thread["tid"]]
            if not in_eval_loop(name) and not any(a - 1 in r for r in loop)
        ]
        assert ours == theirs, thread["tid"]
        assert not [f for f in frames if f["kind"] == "native" and in_eval_loop(f["function"])]
        # The Python frames are those of the plain analysis, in the same order.
        python = [f for f in thread["frames"] if f["kind"] == "python"]
        assert python == before["frames"]
        assert all(f["address"] is None for f in python)
    # The newest frame of the main thread is where it sleeps, in the C library.
    (main,) = [t for t in native["threads"] if t["tid"] == case.main_tid]
    assert main["frames"][-1]["kind"] == "native"
    assert main["frames"][-1]["file"].rsplit("/", 1)[-1].startswith("libc")
    # Every thread's native and Python frames lined up (no "do not line up" warning).
    assert native["warnings"] == plain["warnings"] == []
    # Signatures are the Python frames' with or without --native.
    assert native["signature"] == plain["signature"]
    # With the C library's separate debug file on this machine, its static functions
    # (start_thread, ...) are named too.
    (libc,) = [lib for lib in native["libraries"] if "/libc.so" in lib["path"]]
    if debug_file(libc["build_id"], (interpreter.sysroot,) if interpreter.sysroot else ()):
        in_libc = [
            f["function"]
            for t in native["threads"]
            for f in t["frames"]
            if f["kind"] == "native" and f["file"] == libc["path"]
        ]
        assert in_libc and "???" not in in_libc


def test_native_text(preferred_interp: Interpreter, cores, run_triage) -> None:
    case = cores.gcore(preferred_interp, threads=1)
    rc, out, err = run_triage("core", case.path, "--native", "--no-color")
    assert rc == 0, err
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("    (Python) "))
    assert re.fullmatch(r"    \(C\) \S+ \(lib\S+\)", lines[first - 1]), lines[first - 1]
    assert re.fullmatch(r"    \(C\) \S+ \(libc[.\w-]*\)", lines[-1]) or any(
        re.fullmatch(r"    \(C\) \S+ \(libc[.\w-]*\)", line) for line in lines
    )


def test_merge_recognises_every_kind_of_eval_loop_frame() -> None:
    """The merge rule on function names as builds show them: the loop itself, the part gcc
    splits off it (Debian's 3.14: `_PyEval_EvalFrameDefault.cold`), 2.7's, and a tail-calling
    build's instruction functions, one eval-loop call however many of them are adjacent."""
    from triage.native.merge import merge

    python = ["sleep_in_python", "caller", "module"]
    entries = [False, True, True]  # two eval-loop calls: [sleep_in_python, caller], [module]
    for loop in (
        ["_PyEval_EvalFrameDefault"],
        ["_PyEval_EvalFrameDefault.cold"],
        ["PyEval_EvalFrameEx"],
        ["_TAIL_CALL_CALL_BUILTIN_O", "_PyEval_EvalFrameDefault"],
        ["_TAIL_CALL_CALL"],
    ):
        native = ["time_sleep", *loop, "_PyFunction_Vectorcall", *loop, "PyEval_EvalCode"]
        merged = merge(native, native, python, entries)
        assert merged == [
            "time_sleep",
            "sleep_in_python",
            "caller",
            "_PyFunction_Vectorcall",
            "module",
            "PyEval_EvalCode",
        ], loop
    # Runs and eval-loop calls that do not pair up: no merge (the caller warns).
    assert (
        merge(["_PyEval_EvalFrameDefault"], ["_PyEval_EvalFrameDefault"], python, entries) is None
    )
