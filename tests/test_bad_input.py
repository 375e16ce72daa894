"""Bad input ends in exit status 1 and exactly one line on stderr, never a traceback; with
`--format json` the report's `error.kind` says what was wrong. Usage errors exit 2."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from corefactory import CoreCase, Interpreter

PT_NOTE = 4


@pytest.fixture(scope="module")
def good(cores, preferred_interp) -> CoreCase:
    return cores.gcore(preferred_interp)


@pytest.fixture(scope="module", params=["gcore", "segv"])
def any_core(request: pytest.FixtureRequest, cores, preferred_interp) -> CoreCase:
    """A gcore core (notes at the END of the file) and a kernel core (notes at the start)."""
    return cores.case(preferred_interp, request.param)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("bad-input")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def note_program_header(data: bytes | bytearray) -> tuple[int, int, int]:
    """(offset of the PT_NOTE program header, its p_offset, its p_filesz) in an ELF64 file."""
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        at = phoff + index * phentsize
        (p_type,) = struct.unpack_from("<I", data, at)
        if p_type == PT_NOTE:
            p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<QQQQ", data, at + 8)
            return at, p_offset, p_filesz
    raise AssertionError("no PT_NOTE program header")


def patched_copy(source: str, dest: Path, patch) -> Path:
    data = bytearray(Path(source).read_bytes())
    patch(data)
    dest.write_bytes(data)
    return dest


def run_both(run_triage, *args: str, timeout: float = 300) -> tuple[str, dict]:
    """Run `triage core ARGS` as text and as JSON; check the shared rules; return (error line,
    JSON report)."""
    rc, out, err = run_triage("core", *args, "--no-color", timeout=timeout)
    assert rc == 1, (out, err)
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("triage: error: ")
    line = err.rstrip("\n")

    rc, out, err = run_triage("core", *args, "--format", "json", timeout=timeout)
    assert rc == 1, (out, err)
    assert "Traceback" not in out + err
    assert err.rstrip("\n") == line
    report = json.loads(out)
    assert report["error"]["kind"]
    assert report["error"]["message"] == line[len("triage: error: ") :]
    return line, report


# ------------------------------------------------------------------------------------------
# The core argument


def test_missing_file(run_triage, workdir: Path) -> None:
    path = workdir / "no-such-core"
    line, report = run_both(run_triage, str(path))
    assert report["error"]["kind"] == "file_not_found"
    assert str(path) in line


def test_directory(run_triage, workdir: Path) -> None:
    line, report = run_both(run_triage, str(workdir))
    assert report["error"]["kind"] == "is_a_directory"
    assert str(workdir) in line


def test_fifo(run_triage, workdir: Path) -> None:
    """A named pipe is refused before it is opened: opening it would wait for a writer."""
    path = workdir / "core-fifo"
    os.mkfifo(path)
    line, report = run_both(run_triage, str(path), timeout=60)
    assert report["error"]["kind"] == "not_a_regular_file"
    assert line == (
        f"triage: error: {path} is a FIFO (named pipe), not a regular file; save the core to "
        f"a file and give its path"
    )
    assert report["core"]["size"] == 0


def test_character_device(run_triage) -> None:
    line, report = run_both(run_triage, os.devnull, timeout=60)
    assert report["error"]["kind"] == "not_a_regular_file"
    assert f"{os.devnull} is a character device, not a regular file" in line


def test_symlink_loop(run_triage, workdir: Path) -> None:
    first, second = workdir / "loop-a", workdir / "loop-b"
    first.symlink_to(second)
    second.symlink_to(first)
    line, report = run_both(run_triage, str(first))
    assert report["error"]["kind"] == "symlink_loop"
    assert line == (
        f"triage: error: core file {first} is a symbolic link that leads back to itself (too "
        f"many levels of symbolic links); give the path of the core file itself"
    )


def test_empty_file(run_triage, workdir: Path) -> None:
    path = workdir / "empty-core"
    path.write_bytes(b"")
    line, report = run_both(run_triage, str(path))
    assert report["error"]["kind"] == "empty_file"
    assert report["core"]["size"] == 0
    assert str(path) in line


def test_text_file(run_triage, workdir: Path) -> None:
    path = workdir / "notes.txt"
    path.write_text("this is not a core file\n" * 10)
    line, report = run_both(run_triage, str(path))
    assert report["error"]["kind"] == "not_elf"
    assert report["core"]["size"] == path.stat().st_size
    assert str(path) in line


@pytest.mark.parametrize("which", ["libpython", "interpreter"])
def test_elf_that_is_not_a_core(run_triage, preferred_interp: Interpreter, which: str) -> None:
    path = preferred_interp.libpython if which == "libpython" else preferred_interp.realpath
    line, report = run_both(run_triage, path)
    assert report["error"]["kind"] == "not_core"
    assert report["core"]["size"] == os.path.getsize(path)
    assert path in line
    assert "not a core" in line


def test_truncated_core(run_triage, any_core: CoreCase, workdir: Path) -> None:
    """Half a core: a gcore's notes are at its end, so nothing is left but the error line; a
    kernel core's notes come first, so what they say is still reported (and what the rest
    still holds, tests/test_hardening.py), with the error line last."""
    size = os.path.getsize(any_core.path)
    path = workdir / ("half-core-" + any_core.kind)
    with open(any_core.path, "rb") as source:
        path.write_bytes(source.read(size // 2))
    if any_core.kind == "gcore":
        line, report = run_both(run_triage, str(path))
    else:
        rc, out, err = run_triage("core", str(path), "--format", "json")
        assert rc == 1
        assert "Traceback" not in out + err
        *warnings, line = err.splitlines()
        assert all(w.startswith("WARNING: ") for w in warnings), warnings
        report = json.loads(out)
        assert line == "triage: error: " + report["error"]["message"]
    assert report["error"]["kind"] == "truncated_core"
    assert report["core"]["size"] == size // 2
    assert str(path) in line
    if any_core.kind != "gcore":
        # The kernel writes the notes first: what they say is still reported.
        assert report["process"]["pid"] == any_core.pid
        assert report["signal"]["fault_address"] == any_core.fault_address


def test_note_segment_far_beyond_the_file(run_triage, good: CoreCase, workdir: Path) -> None:
    def patch(data: bytearray) -> None:
        at, _offset, _filesz = note_program_header(data)
        struct.pack_into("<Q", data, at + 32, 1 << 40)  # p_filesz: a terabyte

    path = patched_copy(good.path, workdir / "huge-note-segment", patch)
    line, report = run_both(run_triage, str(path))
    assert report["error"]["kind"] == "corrupt_notes"
    assert str(path) in line


@pytest.mark.parametrize("field", ["namesz", "descsz"])
def test_note_with_huge_size(run_triage, good: CoreCase, workdir: Path, field: str) -> None:
    def patch(data: bytearray) -> None:
        _at, offset, _filesz = note_program_header(data)
        # Elf64_Nhdr: n_namesz u32, n_descsz u32, n_type u32 -- patch the first note's
        struct.pack_into("<I", data, offset + (0 if field == "namesz" else 4), 0xFFFFFFF0)

    path = patched_copy(good.path, workdir / ("huge-" + field), patch)
    line, report = run_both(run_triage, str(path))
    assert report["error"]["kind"] == "corrupt_notes"
    assert str(path) in line


# ------------------------------------------------------------------------------------------
# The executable argument


def test_executable_does_not_exist(run_triage, good: CoreCase, workdir: Path) -> None:
    exe = workdir / "no-such-python"
    line, report = run_both(run_triage, good.path, str(exe))
    assert report["error"]["kind"] == "executable_not_found"
    assert str(exe) in line
    # The core itself was fine: its facts are in the report.
    assert report["process"]["pid"] == good.pid


def test_executable_is_a_directory(run_triage, good: CoreCase, workdir: Path) -> None:
    line, report = run_both(run_triage, good.path, str(workdir))
    assert report["error"]["kind"] == "executable_unreadable"
    assert str(workdir) in line


def test_executable_is_a_script(run_triage, good: CoreCase, workdir: Path) -> None:
    script = workdir / "launcher"
    script.write_text('#!/bin/sh\nexec python3 "$@"\n')
    script.chmod(0o755)
    line, report = run_both(run_triage, good.path, str(script))
    assert report["error"]["kind"] == "executable_not_elf"
    assert str(script) in line


def check_maps_listed(line: str, given: str, good: CoreCase) -> None:
    """The reference's message, listing the executable mappings of the core."""
    prefix = (
        f"triage: error: Unable to find maps for the executable {given}. "
        "These are the available executable memory maps: "
    )
    assert line.startswith(prefix), line
    listed = line[len(prefix) :].split(", ")
    interp = good.interpreter
    assert listed[0] == interp.realpath  # the program's own mapping first
    if interp.shared:
        assert interp.libpython in listed
    libc = [path for path in listed if os.path.basename(path).startswith("libc.so")]
    assert len(libc) == 1, listed
    assert "[vdso]" in listed
    assert given not in listed
    assert len(listed) == len(set(listed))


def test_wrong_executable_ls(run_triage, any_core: CoreCase) -> None:
    if not os.path.exists("/bin/ls"):
        pytest.skip("/bin/ls is not on this machine")
    line, report = run_both(run_triage, any_core.path, "/bin/ls")
    assert report["error"]["kind"] == "wrong_executable"
    check_maps_listed(line, "/bin/ls", any_core)


def test_wrong_executable_other_interpreter(run_triage, any_core: CoreCase, interpreters) -> None:
    mine = os.path.basename(any_core.interpreter.realpath)
    others = [i for i in interpreters if os.path.basename(i.realpath) != mine]
    if not others:
        pytest.skip("only one Python interpreter (by file name) on this machine")
    other = others[0].path
    line, report = run_both(run_triage, any_core.path, other)
    assert report["error"]["kind"] == "wrong_executable"
    check_maps_listed(line, other, any_core)


# ------------------------------------------------------------------------------------------
# Usage errors


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            ["--lib-search-path", "/a", "--lib-search-root", "/b"], id="both-search-options"
        ),
        pytest.param(["--no-such-option"], id="unknown-option"),
        pytest.param(["--format", "yaml"], id="unknown-format"),
        pytest.param(["--max-core-size", "lots"], id="not-a-size"),
    ],
)
def test_usage_error(run_triage, good: CoreCase, args: list[str]) -> None:
    rc, out, err = run_triage("core", good.path, *args)
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert "usage: triage" in err


def test_usage_error_no_core(run_triage) -> None:
    rc, out, err = run_triage("core")
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    assert "usage: triage core" in err
