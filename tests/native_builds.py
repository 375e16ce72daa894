"""The test-suite's own native code, compiled at test time: tests/programs/crashlib.c (a plain
C library loaded with ctypes) and tests/programs/crashext.c (a CPython extension module,
built against each interpreter's own headers: pyenv's, Debian's, the sid sysroot's).

    directory = native_builds.crash_dir(interp, tmp_path)   # both built there, for `interp`

`directory` is where the interpreter sees them (inside its sysroot for sid's), the argument
tests/programs/native_crash.py takes. Anything missing (a C compiler, Python.h) is a
CoreUnavailable saying what.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from corefactory import PROGRAMS_DIR, CoreUnavailable, Interpreter, run_python

#: -O1 -g: every function where the C source puts it (noinline), with DWARF for its lines.
CFLAGS = ("-O1", "-g", "-fPIC", "-shared", "-fno-omit-frame-pointer")

_HEADERS = (
    "import sysconfig; "
    "print(sysconfig.get_paths()['include']); print(sysconfig.get_paths()['platinclude'])"
)


def _compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CoreUnavailable("no C compiler (gcc or cc) to build the test's native code")
    return cc


def _compile(sources: list[str], output: Path, options: list[str]) -> None:
    result = subprocess.run(
        [_compiler(), *CFLAGS, *options, *sources, "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise CoreUnavailable(f"could not build {output.name}: {result.stderr.strip()[-400:]}")


def include_dirs(interp: Interpreter) -> list[str]:
    """The directories of Python.h and pyconfig.h of `interp`, on this machine."""
    out = run_python(interp.path, _HEADERS, sysroot=interp.sysroot).split()
    dirs = [(interp.sysroot or "") + d for d in dict.fromkeys(out)]
    if not any(Path(d, "Python.h").is_file() for d in dirs):
        raise CoreUnavailable(f"{interp.id} has no Python.h here ({', '.join(dirs)})")
    return dirs


def crash_dir(interp: Interpreter, tmpdir: str | os.PathLike) -> str:
    """A directory with crashlib.so and crashext.so built for `interp`, as it sees it."""
    directory = interp.workdir(Path(tmpdir) / f"native-{interp.id}")
    directory.mkdir(parents=True, exist_ok=True)
    _compile([str(PROGRAMS_DIR / "crashlib.c")], directory / "crashlib.so", ["-pthread"])
    includes = [f"-I{d}" for d in include_dirs(interp)]
    if interp.sysroot:
        # Debian's pyconfig.h includes <x86_64-linux-gnu/pythonX.Y/pyconfig.h>: the sysroot's
        # headers after the host's own (its C library's are the host's).
        includes.append(f"-idirafter{interp.sysroot}/usr/include")
    _compile([str(PROGRAMS_DIR / "crashext.c")], directory / "crashext.so", includes)
    return interp.see(directory) if interp.sysroot else str(directory)
