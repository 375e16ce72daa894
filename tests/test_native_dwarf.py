"""Native frames of a C library built at test time in every way debug information comes:
DWARF 2, 3, 4 and 5 in the library itself; in a separate file named by `.gnu_debuglink`; in a
separate file found by build-id in a --lib-search-path directory; call-frame information in
`.debug_frame` only (no `.eh_frame`); none at all (frame pointers).

The library (LIBRARY_C below) is called through ctypes by tests/programs/native_lib.py:
outer() -> leaf() -> middle(), inlined into leaf -> libc's sleep(). Its source lines are
known from the `// @NAME` markers; each core must show, newest first, `middle (inlined)` at
@middle, `leaf` at @leaf, `outer` at @outer, in the library, with these lines. (DWARF 2-4 at
-O1: at -O2 gcc 12 gives DWARF 4's inlined call an empty range list, which elfutils reads as
no inlined call too.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import corefactory
import pytest
from corefactory import CoreUnavailable, Interpreter

LIBRARY_C = """\
#include <unistd.h>

static inline __attribute__((always_inline)) int middle(int seconds) {
    return (int)sleep((unsigned)seconds) + seconds;  // @middle
}

__attribute__((noinline)) int leaf(int seconds) {
    int slept = middle(seconds);  // @leaf
    return slept + 1;
}

int outer(int seconds) {
    return leaf(seconds) * 2;  // @outer
}
"""

#: variant -> (compiler options, how the debug information is then moved)
VARIANTS = {
    "dwarf2": (["-O1", "-g", "-gdwarf-2", "-gstrict-dwarf"], None),
    "dwarf3": (["-O1", "-g", "-gdwarf-3", "-gstrict-dwarf"], None),
    "dwarf4": (["-O1", "-g", "-gdwarf-4", "-gstrict-dwarf"], None),
    "dwarf5": (["-O2", "-g", "-gdwarf-5"], None),
    "debuglink": (["-O2", "-g", "-Wl,--build-id"], "debuglink"),
    "build-id": (["-O2", "-g", "-Wl,--build-id"], "build-id"),
    "debug_frame": (["-O1", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"], None),
    "frame-pointer": (
        ["-O0", "-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"],
        None,
    ),
}


def _lines() -> dict[str, int]:
    return {
        line.rsplit("// @", 1)[1].strip(): number
        for number, line in enumerate(LIBRARY_C.splitlines(), 1)
        if "// @" in line
    }


def _build(variant: str, directory: Path) -> tuple[Path, list[str]]:
    """The library built as `variant`, and the `triage core` options it needs."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) to build the test library")
    directory.mkdir(parents=True)
    (directory / "libtest.c").write_text(LIBRARY_C)
    library = directory / "libtest.so"
    options, move = VARIANTS[variant]
    subprocess.run(
        [cc, "-shared", "-fPIC", *options, "libtest.c", "-o", library.name],
        cwd=directory,
        check=True,
    )
    if move is None:
        return library, []
    objcopy = shutil.which("objcopy")
    if objcopy is None:
        pytest.skip("objcopy (binutils) is not installed")
    debug = directory / "libtest.so.debug"
    subprocess.run([objcopy, "--only-keep-debug", str(library), str(debug)], check=True)
    subprocess.run([objcopy, "--strip-debug", "--strip-unneeded", str(library)], check=True)
    if move == "debuglink":
        subprocess.run(
            [objcopy, f"--add-gnu-debuglink={debug.name}", library.name],
            cwd=directory,
            check=True,
        )
        return library, []
    build_id = corefactory.build_id(library)
    assert build_id is not None
    store = directory / "debug-store"
    target = store / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    debug.rename(target)
    return library, ["--lib-search-path", str(store)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_native_frames_of_a_test_library(
    variant: str, preferred_interp: Interpreter, tmp_path: Path, triage_json
) -> None:
    library, options = _build(variant, tmp_path / variant)
    try:
        core = corefactory.gcore_program(
            preferred_interp, tmp_path / "core", "native_lib.py", str(library)
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    report = triage_json(str(core), "--native", *options)
    (thread,) = report["threads"]
    ours = [
        (f["function"], f["file"], f["line"], f["inlined"])
        for f in thread["frames"][::-1]
        if f["kind"] == "native" and (f["library"] or "").endswith("libtest.so")
    ]
    at = _lines()
    if variant == "frame-pointer":  # no debug information: names from the symbol table
        assert [name for name, *_ in ours] == ["leaf", "outer"]
        assert all(file == "???" for _, file, _, _ in ours)
        below = [f for f in thread["frames"][::-1] if f["kind"] == "native"]
        leaf = next(i for i, f in enumerate(below) if f["function"] == "leaf")
        # outer was found through leaf's frame pointer (leaf has no CFI), and so on down.
        assert below[leaf + 1]["function"] == "outer" and below[leaf + 1]["by_frame_pointer"]
        assert any("found by frame pointers" in w for w in report["warnings"])
        return
    # Strict DWARF 2 has no DW_AT_call_file/call_line: where the inlined call was made is
    # not recorded (elfutils then says ??:0 too).
    call_site = ("???", None) if variant == "dwarf2" else ("libtest.c", at["leaf"])
    assert ours == [
        ("middle", "libtest.c", at["middle"], True),
        ("leaf", *call_site, False),
        ("outer", "libtest.c", at["outer"], False),
    ]
    # Below the library: ctypes' call machinery, down to the Python frame that called it.
    frames = thread["frames"]
    assert frames[0]["kind"] == "native"
    python = [f for f in frames if f["kind"] == "python"]
    assert python and python[-1]["function"] == "<module>"
    assert not any(f.get("by_frame_pointer") for f in frames)
