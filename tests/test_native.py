"""`triage core --native`: every thread's native stack, unwound with the modules' call-frame
information, named and placed in the source with their DWARF, merged with its Python frames,
on real cores of every interpreter found.

References, on the same cores: gdb (its Python API, frame by frame) for the native frames'
addresses, source files, lines and inlined calls (the eval-loop frames excepted: the Python
frames stand in their place); `pystack core --native` for what is shown, line for line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corefactory import Interpreter
from stackcases import UNICODE_THREAD_NAME, parse_tracebacks
from sysroot import on_host

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
        if frame.type() in (gdb.NORMAL_FRAME, gdb.SIGTRAMP_FRAME, gdb.INLINE_FRAME):
            sal = frame.find_sal()
            where = sal.symtab.filename if sal.symtab else "???"
            out.append("%#x|%s|%s|%d|%d" % (frame.pc(), frame.name() or "??", where, sal.line,
                       frame.type() == gdb.INLINE_FRAME))
        frame = frame.older()
    print("THREAD %d %s" % (thread.ptid[1], "\\t".join(out)))
"""


GDB = ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set backtrace past-main on"]


def elfutils_position(report: dict, address: int, inlined: bool) -> tuple[str, int]:
    """The file and line `eu-addr2line` (elfutils) gives for a caller frame's address (pc - 1)
    in the library that holds it (its debug file where there is one); for an address with
    inlined calls, the innermost's. elfutils prints files behind the unit's directory."""
    tool = shutil.which("eu-addr2line")
    if tool is None:
        pytest.skip("eu-addr2line (elfutils) is not installed: gdb and triage disagree on a line")
    library = max(
        (lib for lib in report["libraries"] if lib["start"] <= address),
        key=lambda lib: lib["start"],
    )
    from triage.coredump.symbols import load_symbols

    local = library["found_path"]
    bias = load_symbols(local).load_bias(library["start"])
    where = debug_file(library["build_id"]) or local
    out = subprocess.run(
        [tool, "-i", "-e", where, hex(address - 1 - bias)], capture_output=True, text=True
    ).stdout.split()
    file, line = out[0 if inlined else -1].rsplit(":", 2)[:2]
    return file, int(line)


def gdb_stacks(
    executable: str, core: str, script: Path, root: str | None = None
) -> dict[int, list[tuple[int, str, str, int, bool]]]:
    """gdb's frames (address, function, file, line, inlined), newest first, by thread; with
    `root`, the libraries of that sysroot and no debug files (see eval_loop_ranges)."""
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
            _, tid, rest = [*line.split(" ", 2), ""][:3]
            frames = []
            for item in rest.split("\t") if rest else []:
                pc, name, file, number, inlined = item.split("|")
                frames.append((int(pc, 16), name, file, int(number), inlined == "1"))
            stacks[int(tid)] = frames
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
    compared = 0
    for thread, before in zip(native["threads"], plain["threads"], strict=True):
        frames = thread["frames"][::-1]  # newest first, as gdb lists them
        entries = [f for f in frames if f["kind"] == "native"]
        physical = [f["address"] for f in entries if not f["inlined"]]
        gdb = reference[thread["tid"]]
        # The eval loop's frames gave way to Python's (calls inlined at their addresses stay).
        gdb = [
            g for g in gdb if g[4] or not (in_eval_loop(g[1]) or any(g[0] - 1 in r for r in loop))
        ]
        assert physical == [g[0] for g in gdb if not g[4]], thread["tid"]
        assert not [f for f in entries if in_eval_loop(f["function"]) and not f["inlined"]]
        if interpreter.sysroot is None:
            # Source positions and inlined calls, entry for entry (gdb names physical frames
            # by their DWARF name, triage and PyStack by their symbol: names compared for the
            # inlined calls only).
            ours = [(f["address"], f["file"], f["line"] or 0, f["inlined"]) for f in entries]
            theirs = [(g[0], g[2], g[3], g[4]) for g in gdb]
            assert len(ours) == len(theirs), thread["tid"]
            for mine, gdbs in zip(ours, theirs, strict=True):
                if mine != gdbs:
                    # gdb 13 sometimes gives a caller frame another line (or file) than its
                    # line table's row for the call (3.6's call_function); elfutils, PyStack's
                    # library, and binutils read the row: then the position must be elfutils'.
                    assert (mine[0], mine[3]) == (gdbs[0], gdbs[3]), thread["tid"]
                    file, line = elfutils_position(native, mine[0], mine[3])
                    assert file.endswith("/" + mine[1].removeprefix("./")), (mine, file)
                    assert line == mine[2], (mine, line)
            assert [f["function"] for f in entries if f["inlined"]] == [g[1] for g in gdb if g[4]]
            assert [f["function"] for f in entries if f["inlined"]] == [g[1] for g in gdb if g[4]]
            compared += len(entries)
        # The Python frames are those of the plain analysis, in the same order (no thread
        # here died of its own doing: without --native, none is unwound).
        python = [f for f in thread["frames"] if f["kind"] == "python"]
        assert python == before["frames"]
        assert all(f["address"] is None for f in python)
    assert compared >= 20 or interpreter.sysroot is not None
    # The newest frame of the main thread is where it sleeps, in the C library.
    (main,) = [t for t in native["threads"] if t["tid"] == case.main_tid]
    assert main["frames"][-1]["kind"] == "native"
    assert main["frames"][-1]["library"].rsplit("/", 1)[-1] == "libc.so.6"
    # Every thread's native and Python frames lined up (no "do not line up" warning).
    assert native["warnings"] == plain["warnings"] == []
    # Signatures are the Python frames' with or without --native.
    assert native["signature"] == plain["signature"]
    # With the C library's separate debug file on this machine, its static functions
    # (start_thread, ...) are named too.
    (libc,) = [lib for lib in native["libraries"] if "/libc.so" in lib["path"]]
    libc_names = {"libc.so.6", libc["path"].rsplit("/", 1)[-1]}  # the link map's, the file's
    if debug_file(libc["build_id"], (interpreter.sysroot,) if interpreter.sysroot else ()):
        in_libc = [
            f["function"]
            for t in native["threads"]
            for f in t["frames"]
            if f["kind"] == "native" and f["library"].rsplit("/", 1)[-1] in libc_names
        ]
        assert in_libc and "???" not in in_libc


def test_native_text(preferred_interp: Interpreter, cores, run_triage) -> None:
    """The text shows native frames as PyStack does, the machinery hidden by default, all of
    it with --native-unfiltered, only the frames after the last Python one with --native-last."""
    case = cores.gcore(preferred_interp, threads=1)
    rc, out, err = run_triage("core", case.path, "--native", "--no-color")
    assert rc == 0, err
    lines = out.splitlines()
    c_lines = [line for line in lines if line.startswith("    (C) ")]
    assert c_lines and all(_C_LINE.match(line) for line in c_lines)
    assert any(line.endswith(" (inlined) (libpython3.12.so.1.0)") for line in c_lines)
    assert not any(" in _Py" in line or "vectorcall" in line.lower() for line in c_lines)
    rc, every, err = run_triage("core", case.path, "--native-unfiltered", "--no-color")
    assert rc == 0, err
    hidden = [
        line for line in every.splitlines() if line.startswith("    (C) ") and " in _Py" in line
    ]
    assert hidden
    rc, last, err = run_triage("core", case.path, "--native-last", "--no-color")
    assert rc == 0, err
    for block in parse_tracebacks(last):
        kinds = [line[5:6] for line in block.lines[1:] if line.startswith("    (")]
        assert "C" not in kinds[: len(kinds) - kinds[::-1].index("P")] if "P" in kinds else True
        assert kinds[-1] == "C"  # each thread sleeps in the C library, after its Python


_C_LINE = re.compile(r'^    \(C\) File "(.*)", line (\d+), in (.*) \((\S+)\)$')
_PY_LINE = re.compile(r'^    \(Python\) File "(.*)", line (\d+), in ')


_NO_MERGE = "* - Unable to merge native stack due to insufficient native information - *"


def _unmerged(text: str) -> set[int]:
    """Threads for which PyStack says it could not merge the native stack."""
    out, tid = set(), None
    for line in text.splitlines():
        if line.startswith("Traceback for thread "):
            tid = int(line.split()[3])
        elif line.strip() == _NO_MERGE and tid is not None:
            out.add(tid)
    return out


def _soname(library: str) -> str:
    """libffi.so.8.5.0 -> libffi.so.8: the link map's name and the file's, alike."""
    match = re.match(r"(.*\.so(?:\.\d+)?)", library)
    return match.group(1) if match else library


_HEADER = re.compile(r"^Traceback for thread (\d+)")
_INTERPRETER = re.compile(r"^\s*In (?:the main interpreter|interpreter (\d+))")


def _libc(rows: list[tuple]) -> list[tuple]:
    return [row for row in rows if row[0] == "C" and row[4] == "libc.so.6"]


def _without_libc(rows: list[tuple]) -> list[tuple]:
    return [row for row in rows if not (row[0] == "C" and row[4] == "libc.so.6")]


def _shown(text: str, on_host, sysroot: bool = False) -> dict[tuple[int, int], list[tuple]]:
    """Per (thread id, interpreter id), its stack lines: C frames whole, Python frames by
    file and line (the function names differ on purpose: triage shows qualified names).
    Both layouts of subinterpreters are read: PyStack's sections in a thread's traceback
    (`  In interpreter 1 []`), triage's tracebacks under an interpreter's heading.
    For cores of the sid sysroot, libraries by soname: PyStack names the file it found there
    (libffi.so.8.5.0) where triage, as gdb and PyStack on the crashed machine, names what
    the process loaded (libffi.so.8)."""
    out: dict[tuple[int, int], list[tuple]] = {}
    tid, heading, interpreter = None, 0, 0
    for line in text.replace(_NO_MERGE, "").splitlines():
        if match := _HEADER.match(line):
            tid, interpreter = int(match.group(1)), heading
            out.setdefault((tid, interpreter), [])
        elif match := _INTERPRETER.match(line):
            if line.startswith("  ") and tid is not None:  # PyStack's section of a thread
                interpreter = int(match.group(1) or 0)
                out.setdefault((tid, interpreter), [])
            else:  # triage's heading above the tracebacks of an interpreter
                heading = int(match.group(1) or 0)
        elif tid is None:
            continue
        elif match := _C_LINE.match(line):
            file, number, function, library = match.groups()
            if sysroot:  # (a frame with neither symbol nor lines names its library)
                file = _soname(file) if function == "???" else file
                library = _soname(library)
            out[tid, interpreter].append(("C", file, number, function, library))
        elif match := _PY_LINE.match(line):
            out[tid, interpreter].append(("Python", on_host(match.group(1)), int(match.group(2))))
    return out


@pytest.mark.parametrize("mode", ["multi", "crash", "subinterp"])
def test_native_as_pystack_shows_it(
    mode: str, scenario_cores, interpreter: Interpreter, run_triage, tmp_path
) -> None:
    """`triage core --native` shows every thread's native frames as `pystack core --native`
    does, line for line: file, line, function (inlined calls marked), library; the hidden
    call machinery left out; the Python frames in the same places."""
    pystack = shutil.which("pystack") or str(Path(sys.executable).parent / "pystack")
    if not os.path.exists(pystack):
        pytest.skip("pystack is not installed (pip install pystack)")
    if mode == "subinterp" and interpreter.version < (3, 12):
        pytest.skip("subinterpreters need 3.12+")
    case = scenario_cores.get(interpreter, mode)
    extra = [interpreter.realpath, *interpreter.triage_args] if interpreter.sysroot else []
    result = subprocess.run(
        [pystack, "core", "--native", "--no-color", case.path, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 and "not supported" in (result.stdout + result.stderr).lower():
        pytest.skip(f"PyStack does not support {interpreter.id}")
    assert result.returncode == 0, result.stderr
    rc, out, err = run_triage("core", case.path, "--native", "--no-color")
    assert rc == 0, err
    sid = interpreter.sysroot is not None
    theirs, ours = _shown(result.stdout, on_host, sid), _shown(out, on_host, sid)
    assert sorted(theirs) == sorted(ours)
    unmerged = _unmerged(result.stdout)
    compared = 0
    for (tid, interpreter_id), rows in ours.items():
        name = next(n for n, t in case.tids.items() if t == tid)
        if name == UNICODE_THREAD_NAME and case.version[0] >= 3:
            continue  # PyStack stops at the first frame with a non-ASCII name (DOMAIN 5)
        if tid in unmerged:
            continue  # PyStack shows no native frames there: nothing to compare with
        pystacks = theirs[tid, interpreter_id]
        if sid:
            # PyStack reads no debug file from a sysroot: the sid C library's frames (its
            # symbols and lines in libc6-dbg there) it names by exported symbols at best, and
            # has none of their inlined calls. Compared apart: as many or more of ours.
            assert len(_libc(rows)) >= len(_libc(pystacks)), (name, rows, pystacks)
            rows, pystacks = _without_libc(rows), _without_libc(pystacks)
        assert rows == pystacks, (name, interpreter_id)
        compared += sum(1 for row in rows if row[0] == "C")
    if not compared and unmerged:
        pytest.skip(
            f"pystack core --native merges no thread of this {interpreter.id} core (it says: "
            f"{_NO_MERGE!r}); triage's own are checked against gdb (test_native_frames_are_gdbs)"
        )
    assert compared >= 10
