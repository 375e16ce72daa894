"""Damaged and hostile input, on real cores made during the test: what can be read is kept,
what cannot is said (a warning, or the one-line error), never a traceback or a hang.

* a frame in the middle of a stack that cannot be read, a code object that cannot be read
  (copies of a real core with one pointer overwritten);
* readers that give partial results catch unreadable memory and unexpected objects, never a
  misspelt layout member;
* truncated cores (a kernel core cut at several points);
* a core bigger than the address space the process may use (RLIMIT_AS), compressed cores
  that decompress to more than a maximum or than the temporary directory can hold (a
  kernel core of a process with a big mapping it never touched, which compresses to little).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import corefactory
import pytest
from conftest import triage_env
from corefactory import CoreCase, CoreUnavailable

from triage.coredump.corefile import parse_core
from triage.coredump.executable import find_executable
from triage.coredump.images import loaded_images
from triage.coredump.memory import CoreMemory
from triage.coredump.source import open_core
from triage.cpython import runtime
from triage.cpython.interpreter import Interpreter, read_python
from triage.errors import READ_ERRORS, AddressError, UnexpectedObject

UNMAPPED = 0xDEAD0000  # an address no core of these programs maps


@dataclass
class MainStack:
    """The main thread's Python frames in a core as triage reads them, newest first, and
    where in each frame struct the pointers to the older frame and to the code object are."""

    tid: int
    frames: list[int]
    codes: list[int]
    back: int
    code: int


def main_stack(case: CoreCase) -> MainStack:
    root = case.interpreter.sysroot or ""
    with open_core(case.path) as opened:
        core = parse_core(opened)
        images = loaded_images(core.mappings)
        files = {i.path: root + i.path for i in images if os.path.isfile(root + i.path)}
        memory = CoreMemory(core, files)
        exe = find_executable(core, memory, None)
        tids = [t.tid for t in core.threads]
        state = read_python(memory, images, files, exe.mapping_path, tids)
        binary = runtime.find_python_binary(images, files, exe.mapping_path)
        assert binary is not None
        layout, _notes = runtime.layout_for(memory, binary, runtime.detect_version(memory, binary))
        walker = Interpreter(memory, binary, layout).walker
        memory.close()
    (main,) = [t for t in state.threads if t.tid == case.main_tid]
    frame_objects = walker.mode == "frame_objects"
    return MainStack(
        main.tid,
        [f.address for f in main.frames],
        [f.code.address for f in main.frames],
        walker.f_back if frame_objects else walker.previous,
        walker.f_code if frame_objects else walker.code,
    )


def patched(source: str, dest: Path, address: int, value: int) -> str:
    """A copy of the core at `source` with the 8 bytes at `address` (of the dead process's
    memory) set to `value`."""
    data = bytearray(Path(source).read_bytes())
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        p_type, _f, offset, vaddr, _p, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + index * phentsize
        )
        if p_type == 1 and vaddr <= address < vaddr + filesz:
            struct.pack_into("<Q", data, offset + address - vaddr, value)
            dest.write_bytes(data)
            return str(dest)
    raise AssertionError(f"{address:#x} is not in the core")


def main_thread(report: dict, tid: int) -> dict:
    (thread,) = [t for t in report["threads"] if t["tid"] == tid]
    return thread


# ------------------------------------------------------------------------------------------
# Frame walks


def test_unreadable_frame_keeps_the_newer_frames(
    gcore_case: CoreCase, triage_json, tmp_path: Path
) -> None:
    """The main thread's second frame (second_func) points to an older frame that cannot be
    read: the two newest frames are kept, and a warning says what was lost."""
    args = gcore_case.interpreter.triage_args
    good = triage_json(gcore_case.path, *args)
    stack = main_stack(gcore_case)
    damaged = patched(gcore_case.path, tmp_path / "core", stack.frames[1] + stack.back, UNMAPPED)
    report = triage_json(damaged, *args)
    assert report["error"] is None
    frames = main_thread(good, stack.tid)["frames"]
    assert [f["function"] for f in frames[-4:]] == [
        "<module>",
        "first_func",
        "second_func",
        "third_func",
    ]
    assert main_thread(report, stack.tid)["frames"] == frames[-2:]
    (warning,) = [w for w in report["warnings"] if w not in good["warnings"]]
    assert warning.startswith(
        f"thread {stack.tid}: the frame at 0x{UNMAPPED:x} cannot be read (address 0x"
    )
    assert warning.endswith("); the 2 newer frame(s) are shown, the older ones are lost")
    others = [t for t in report["threads"] if t["tid"] != stack.tid]
    assert others == [t for t in good["threads"] if t["tid"] != stack.tid]


def test_unreadable_code_object_is_a_placeholder(
    gcore_case: CoreCase, triage_json, tmp_path: Path
) -> None:
    """The code object of the main thread's third frame (first_func) cannot be read: the frame
    stays, as ??? without a line, between its neighbours; a warning names it."""
    args = gcore_case.interpreter.triage_args
    good = triage_json(gcore_case.path, *args)
    stack = main_stack(gcore_case)
    damaged = patched(gcore_case.path, tmp_path / "core", stack.frames[2] + stack.code, UNMAPPED)
    report = triage_json(damaged, *args)
    assert report["error"] is None
    expected = main_thread(good, stack.tid)["frames"]
    where = len(expected) - 3
    assert expected[where]["function"] == "first_func"
    expected[where] = {
        **{key: None for key in expected[where]},
        "kind": "python",
        "function": "???",
        "file": "???",
        "inlined": False,
        "hidden": False,
        "by_frame_pointer": False,
    }
    assert main_thread(report, stack.tid)["frames"] == expected
    (warning,) = [w for w in report["warnings"] if w not in good["warnings"]]
    assert warning.startswith(
        f"thread {stack.tid}: the code object 0x{UNMAPPED:x} of the frame at "
        f"0x{stack.frames[2]:x} cannot be read (address 0x"
    )
    assert warning.endswith("); the frame is shown as ???")


# ------------------------------------------------------------------------------------------
# The error model


def test_read_errors_are_not_lookup_errors() -> None:
    """Unreadable memory and unexpected objects are what readers with partial results catch;
    a KeyError (a layout member triage does not have) or an IndexError is not among them."""
    assert not issubclass(AddressError, LookupError)
    assert not issubclass(UnexpectedObject, LookupError)
    assert issubclass(AddressError, READ_ERRORS) and issubclass(UnexpectedObject, READ_ERRORS)
    assert not any(issubclass(error, READ_ERRORS) for error in (KeyError, IndexError))


def test_misspelt_layout_member_is_a_bug_not_damage(
    monkeypatch: pytest.MonkeyPatch, cores, preferred_interp
) -> None:
    """A reader that declares a member no layout has (a typo) fails the analysis as a bug of
    triage; before, the thread names' reader took the KeyError for unreadable memory and the
    report silently lost every thread name."""
    from triage import engine
    from triage.cpython import fields, thread_names
    from triage.cpython.fields import Field, Offsets

    case = cores.gcore(preferred_interp)
    assert engine.analyze_core(case.path).threads[0].name == "MainThread"
    # Declarations register themselves: this one only in a copy of the registry.
    monkeypatch.setattr(fields, "_REGISTRY", list(fields._REGISTRY))

    class Misspelt(Offsets):
        md_dict = Field("PyModuleObject", "md_dcit")

    monkeypatch.setattr(thread_names, "ModuleFields", Misspelt)
    report = engine.analyze_core(case.path)
    assert report.error is not None
    assert report.error.kind == "internal_error"
    assert "md_dcit" in report.error.message


# ------------------------------------------------------------------------------------------
# Truncated cores


def core_layout(path: str) -> tuple[int, list[tuple[int, int, int]], dict[int, int]]:
    """(where the notes end, each dumped segment's (vaddr, file offset, size), each thread's
    stack pointer by tid) of a core, as triage reads them."""
    with open_core(path) as opened:
        core = parse_core(opened)
        data = opened.data
        (phoff,) = struct.unpack_from("<Q", data[:64], 0x20)
        phnum = struct.unpack_from("<H", data[:64], 0x38)[0]
        headers = data[phoff : phoff + 56 * phnum]
        notes_end = max(
            offset + filesz
            for p_type, _f, offset, _v, _p, filesz, _m, _a in struct.iter_unpack(
                "<IIQQQQQQ", headers
            )
            if p_type == 4
        )
        segments = [(s.vaddr, s.offset, s.filesz) for s in core.segments if s.filesz]
        stacks = {t.tid: t.registers["rsp"] for t in core.threads}
    return notes_end, segments, stacks


def cut(source: str, dest: Path, size: int) -> str:
    with open(source, "rb") as stream:
        dest.write_bytes(stream.read(size))
    return str(dest)


def python_frames(thread: dict) -> list[dict]:
    return [f for f in thread["frames"] if f["kind"] == "python"]


def test_truncated_core_keeps_what_survived(
    interpreter, cores, triage_json, run_triage, tmp_path: Path
) -> None:
    """A kernel core cut where the main thread's stack starts (the kernel writes it last):
    the worker threads keep their whole Python stacks, the main thread what the rest of
    memory holds of it, a warning says its stack was cut off, and the error stays
    truncated_core (its message last on stderr, after the warnings, exit status 1)."""
    case = cores.crash(interpreter, "segv")
    args = interpreter.triage_args
    good = triage_json(case.path, *args)
    notes_end, segments, stacks = core_layout(case.path)
    main_sp = stacks[case.main_tid]
    (offset,) = [o for v, o, n in segments if v <= main_sp < v + n]
    assert offset > notes_end
    damaged = cut(case.path, tmp_path / "core", offset)

    report = triage_json(damaged, *args, expect_rc=1)
    assert report["error"]["kind"] == "truncated_core"
    assert report["error"]["message"].startswith(f"core file {damaged} is truncated: ")
    assert report["process"] == good["process"]
    assert report["signal"] == good["signal"]
    workers = [t for t in good["threads"] if t["tid"] != case.main_tid]
    assert len(workers) == case.threads
    for thread in workers:
        (same,) = [t for t in report["threads"] if t["tid"] == thread["tid"]]
        assert python_frames(same) == python_frames(thread)
        assert same["name"] == thread["name"]
    (main,) = [t for t in report["threads"] if t["tid"] == case.main_tid]
    (before,) = [t for t in good["threads"] if t["tid"] == case.main_tid]
    # The Python frames of 3.11 and 3.12 are reached through the C stack (_PyCFrame); other
    # versions keep them in the heap or the thread state's data stack.
    through_c_stack = (3, 11) <= interpreter.version[:2] <= (3, 12)
    assert python_frames(main) == ([] if through_c_stack else python_frames(before))
    assert (
        f"thread {case.main_tid}: its stack memory at 0x{main_sp:x} was cut off the "
        f"truncated core file; its native frames, and the Python frames linked through them "
        f"(3.11+), cannot be read: this thread's stacks may be incomplete"
    ) in report["warnings"]

    rc, out, err = run_triage("core", damaged, *args, "--no-color")
    assert rc == 1
    assert "Traceback (most recent call last)" not in out + err
    *warnings, line = err.splitlines()
    assert warnings == ["WARNING: " + w for w in report["warnings"]]
    assert line == "triage: error: " + report["error"]["message"]
    assert "Traceback for thread" in out


@pytest.mark.parametrize("where", ["notes", "first-segment"])
def test_core_cut_after_its_notes(
    where: str, cores, preferred_interp, triage_json, tmp_path: Path
) -> None:
    """A kernel core of which only the notes (and the first segment) are left: the process,
    the signal and the threads are reported; no Python stack, each thread's missing stack
    said; the error is truncated_core."""
    case = cores.crash(preferred_interp, "segv")
    notes_end, segments, stacks = core_layout(case.path)
    size = notes_end if where == "notes" else segments[0][1] + segments[0][2]
    report = triage_json(cut(case.path, tmp_path / "core", size), expect_rc=1)
    good = triage_json(case.path)
    assert report["error"]["kind"] == "truncated_core"
    assert report["process"] == good["process"]
    assert report["signal"] == good["signal"]
    assert sorted(t["tid"] for t in report["threads"]) == sorted(case.tids)
    assert all(python_frames(t) == [] for t in report["threads"])
    for tid, sp in stacks.items():
        assert any(
            w.startswith(f"thread {tid}: its stack memory at 0x{sp:x} was cut off the ")
            for w in report["warnings"]
        ), report["warnings"]


# ------------------------------------------------------------------------------------------
# Big cores

BIG_MIB = 256  # the never-touched mapping of the big core: its core has some 265 MB


@pytest.fixture(scope="module")
def big_core(preferred_interp, tmp_path_factory: pytest.TempPathFactory):
    """A kernel core of tests/programs/odd_process.py big: a 256 MiB mapping of zeros."""
    directory = tmp_path_factory.mktemp("big")
    try:
        path, _ready = corefactory.crash_program(
            preferred_interp, directory, "odd_process.py", "big", str(BIG_MIB)
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def zstd_of(source: str, dest: Path, *, declare: bool) -> str:
    """`source` compressed with zstd, its frame declaring the content size or not (a stream
    compressed on the fly does not)."""
    import zstandard

    size = os.path.getsize(source)
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=declare)
    with (
        open(source, "rb") as src,
        open(dest, "wb") as raw,
        compressor.stream_writer(raw, size=size if declare else -1, closefd=False) as out,
    ):
        shutil.copyfileobj(src, out, 1 << 20)
    return str(dest)


def run_limited(*args: str, address_space: int | None = None, env=None):
    """`python -m triage ARGS` as bytes, with RLIMIT_AS set to `address_space` in the child:
    (exit status, stdout, stderr)."""

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    result = subprocess.run(
        [sys.executable, "-m", "triage", *args],
        capture_output=True,
        env=triage_env(env),
        timeout=300,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit,
    )
    return result.returncode, result.stdout, result.stderr


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "analysis_seconds"}


def test_core_bigger_than_the_address_space(big_core: str, triage_json) -> None:
    """With less address space than the core has bytes, it cannot be mapped whole: it is read
    on demand, and the report is the same as without the limit."""
    size = os.path.getsize(big_core)
    assert size > BIG_MIB << 20
    rc, out, err = run_limited(
        "core", big_core, "--format", "json", address_space=size - (64 << 20)
    )
    assert rc == 0, err
    assert err == b""
    report = json.loads(out)
    assert comparable(report) == comparable(triage_json(big_core))
    assert report["threads"][0]["frames"]  # the stack was read


def test_max_core_size_of_a_plain_core(big_core: str, run_triage) -> None:
    size = os.path.getsize(big_core)
    rc, out, err = run_triage("core", big_core, "--max-core-size", "200M", "--format", "json")
    assert rc == 1
    assert json.loads(out)["error"]["kind"] == "core_too_large"
    assert err == (
        f"triage: error: core file {big_core} has {size / (1 << 20):.1f} MiB, more than the "
        f"maximum core size of 200.0 MiB; raise it (--max-core-size) to analyse this core\n"
    )


@pytest.mark.parametrize("declare", [True, False], ids=["declared-size", "streamed"])
def test_max_core_size_of_a_compressed_core(
    big_core: str, tmp_path: Path, run_triage, declare: bool
) -> None:
    """A zstd core of more than --max-core-size: refused before anything is decompressed
    when its frame declares its size, else when the copy passes the limit; no temporary file
    is left."""
    archive = zstd_of(big_core, tmp_path / "core.zst", declare=declare)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    rc, out, err = run_triage(
        "core", archive, "--max-core-size", "100M", "--format", "json", env={"TMPDIR": tmpdir}
    )
    assert rc == 1
    report = json.loads(out)
    assert report["error"]["kind"] == "core_too_large"
    amount = (
        f"at least {os.path.getsize(big_core) / (1 << 20):.1f} MiB (its headers say)"
        if declare
        else "more than 100.0 MiB (decompression was stopped there)"
    )
    assert err == (
        f"triage: error: {archive} (zstd) decompresses to {amount}, more than the maximum core "
        f"size of 100.0 MiB; raise it (--max-core-size) to analyse this core\n"
    )
    assert report["core"]["compression"] == "zstd"
    assert list(tmpdir.iterdir()) == []


@pytest.fixture
def small_tmpdir(tmp_path: Path):
    """A 128 MiB tmpfs, as a temporary directory with little room (root only)."""
    mount = shutil.which("mount")
    directory = tmp_path / "small-tmp"
    directory.mkdir()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield directory
    subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.parametrize("declare", [True, False], ids=["declared-size", "streamed"])
def test_decompression_stops_before_the_disk_fills(
    big_core: str, tmp_path: Path, small_tmpdir: Path, run_triage, declare: bool
) -> None:
    """A zstd core bigger than the temporary directory has room for: one line that says how
    much it needs and has, and to set TMPDIR; the directory is left empty, never full."""
    archive = zstd_of(big_core, tmp_path / "core.zst", declare=declare)
    free = shutil.disk_usage(small_tmpdir).free
    rc, out, err = run_triage("core", archive, "--format", "json", env={"TMPDIR": small_tmpdir})
    assert rc == 1
    report = json.loads(out)
    assert report["error"]["kind"] == "insufficient_space"
    space = free - shutil.disk_usage(small_tmpdir).total // 20
    amount = (
        f"at least {os.path.getsize(big_core) / (1 << 20):.1f} MiB of temporary space (its "
        f"headers say)"
        if declare
        else f"more than {space / (1 << 20):.1f} MiB of temporary space (decompression was "
        f"stopped there)"
    )
    assert err == (
        f"triage: error: decompressing {archive} (zstd) needs {amount} but {small_tmpdir} has "
        f"{free / (1 << 20):.1f} MiB free; set TMPDIR to a directory with more room\n"
    )
    assert list(small_tmpdir.iterdir()) == []
    assert shutil.disk_usage(small_tmpdir).free == free

    rc, out, err = run_triage("core", archive, "--format", "json")  # with room: read
    assert rc == 0, err
    assert json.loads(out)["error"] is None


# ------------------------------------------------------------------------------------------
# Strings that are not valid Unicode

#: What the report shows of odd_process.py's strings: undecodable bytes as \xNN, a lone
#: surrogate as \uNNNN, valid text as it is.
BAD_SHOWN = "caf\\xe9 \\xff"
LONE_SHOWN = "lone \\ud800 surrogate"
NAMED = "\xfcn\xefc\xf6de"


@pytest.fixture
def strings_core(interpreter, tmp_path: Path) -> tuple[str, str]:
    """A kernel core of odd_process.py strings, run from a directory whose name has the byte
    0xff: (the core, the program's path as the report shows it)."""
    odd = interpreter.workdir(tmp_path / "strings") / os.fsdecode(b"odd-\xff")
    odd.mkdir()
    program = odd / "odd_process.py"
    shutil.copyfile(corefactory.PROGRAMS_DIR / "odd_process.py", program)
    try:
        core, _ready = corefactory.crash_program(
            interpreter, tmp_path / "strings", str(program), "strings"
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    return core, interpreter.see(program).replace("\udcff", "\\xff")


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_strings_that_are_not_unicode(interpreter, strings_core, locale: str) -> None:
    """Thread names, file names, exception messages and arguments that hold bytes that are not
    UTF-8 or lone surrogates: the JSON is UTF-8 that any parser reads, whatever the locale,
    with those escaped; the text output never fails, not even on an ASCII-only stdout."""
    core, shown_path = strings_core
    env = {"LC_ALL": locale, "LANG": None, "PYTHONIOENCODING": None}
    args = ("core", core, *interpreter.triage_args)
    rc, out, err = run_limited(*args, "--format", "json", env=env)
    assert rc == 0, err
    assert err == b""
    report = json.loads(out.decode("utf-8"))  # strict: raw bytes would not decode

    py2 = interpreter.version[0] == 2
    names = {t["name"] for t in report["threads"]}
    assert names == {"MainThread", BAD_SHOWN, NAMED} | (set() if py2 else {LONE_SHOWN})
    (main,) = [t for t in report["threads"] if t["crashed"]]
    own = [f for f in main["frames"] if f["kind"] == "python"]
    assert [f["function"] for f in own] == ["<module>", "main", "bad_strings"]
    assert {f["file"] for f in own} == {shown_path}
    exceptions = [(e["type"], e["state"], e["message"]) for e in main["exceptions"]]
    handled = [("ValueError", "handling", BAD_SHOWN)]
    assert exceptions == handled + ([] if py2 else [("ValueError", "context", LONE_SHOWN)])
    assert report["signature"]["text"].startswith("SIGABRT (abort) | ")

    for encoding in ("ascii", None):  # an ASCII-only stdout (strict), and the locale's
        rc, out, err = run_limited(
            *args, "--locals", "--no-color", env={**env, "PYTHONIOENCODING": encoding}
        )
        assert rc == 0, err
        assert b"Traceback (most recent call last)" not in out + err
        text = out.decode("ascii" if encoding else "utf-8")
        named = "\\xfcn\\xefc\\xf6de" if encoding else NAMED
        assert f"({BAD_SHOWN}) [] (most recent call last):" in text
        assert f"({named}) [] (most recent call last):" in text
        assert f'File "{shown_path}", line ' in text
        assert "\n        os.abort()\n" in text  # the source line, read from the odd path
        assert f"    Handling ValueError: {BAD_SHOWN}\n" in text


# ------------------------------------------------------------------------------------------
# A damaged library


@pytest.fixture(scope="module")
def native_crash(preferred_interp, tmp_path_factory: pytest.TempPathFactory):
    """A kernel core of native_crash.py path-a (strlen(NULL) from the suite's crashlib.so,
    called through ctypes): (the core, the directory crashlib.so was loaded from)."""
    import signal

    import native_builds

    directory = tmp_path_factory.mktemp("damaged-library")
    try:
        built = native_builds.crash_dir(preferred_interp, directory / "build")
        core, _ready = corefactory.crash_program(
            preferred_interp,
            directory / "run",
            "native_crash.py",
            "path-a",
            built,
            sig=signal.SIGSEGV,
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    yield core, built
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("keep", ["header", "half"])
def test_damaged_library_loses_only_its_own_frames(
    native_crash, triage_json, tmp_path: Path, keep: str
) -> None:
    """crashlib.so, moved away since the crash, is found by --lib-search-path in a copy cut
    short (after its ELF header, or in the middle): its frame has no name, every other frame
    of every thread is as with the intact file, and one warning names the damaged copy."""
    core, built = native_crash
    good = triage_json(core, "--native")
    library = os.path.join(built, "crashlib.so")
    search = tmp_path / "search"
    search.mkdir()
    damaged = search / "crashlib.so"
    shutil.copyfile(library, damaged)
    os.truncate(damaged, 64 if keep == "header" else os.path.getsize(library) // 2)
    moved = built + "-moved"
    os.rename(built, moved)
    try:
        report = triage_json(core, "--native", "--lib-search-path", str(search))
    finally:
        os.rename(moved, built)

    assert report["error"] is None
    problems = [w for w in report["warnings"] if "cannot be read" in w]
    assert len(problems) == 1, report["warnings"]
    assert problems[0].startswith(f"{damaged} (mapped as {library}) cannot be read (")
    assert problems[0].endswith(
        "); its native frames have no function names or lines: give an intact copy of it"
    )

    def shown(frame: dict) -> dict:
        return {k: v for k, v in frame.items() if k != "by_frame_pointer"}

    for before in good["threads"]:
        (after,) = [t for t in report["threads"] if t["tid"] == before["tid"]]
        expected, seen = [], set()
        for frame in before["frames"]:
            if frame["library"] != library:
                expected.append(shown(frame))
            elif frame["address"] not in seen:  # its inlined calls are no longer known
                seen.add(frame["address"])
                expected.append({**shown(frame), "function": "???", "file": "???", "line": None})
        assert [shown(f) for f in after["frames"]] == expected
    (crashed,) = [t for t in report["threads"] if t["crashed"]]
    assert any(f["library"] == library for f in crashed["frames"])
    assert crashed["frames"][-1]["function"] != "???"  # libc's strlen is still named


@pytest.mark.parametrize(
    ("form", "payload"),
    [(0x0A, b"\x00"), (0x0E, b"\x00\x00\x00\x00"), (0x08, b"12\x00")],
    ids=["block1", "strp", "string"],
)
def test_dwarf_attribute_of_the_wrong_form_gives_no_location(form: int, payload: bytes) -> None:
    """A compile unit whose DW_AT_str_offsets_base is not a number (a block, a string
    reference, a string) is damaged DWARF: no location, not a TypeError (which lost every
    thread's native stack) nor a number read from the string's digits."""
    from triage.native.dwarf import DebugInfo

    abbrev = bytes([1, 0x11, 0, 0x72, form, 0, 0, 0])  # compile_unit, no children
    body = struct.pack("<HIB", 4, 0, 8) + bytes([1]) + payload  # DWARF 4, abbrev 0, 8 bytes
    info = struct.pack("<I", len(body)) + body
    sections = {".debug_info": (0, len(info), 0), ".debug_abbrev": (len(info), len(abbrev), 0)}
    dwarf = DebugInfo("damaged.so", info + abbrev, sections)  # bytes in place of the mapping
    assert dwarf.locate(0x1000) is None
