"""The Debian sid sysroot of the test-suite: the CPythons fleets run now, on this machine.

    root = sysroot.ensure()          # its path; scripts/build_sysroot.sh makes it once (~1 min)
    sysroot.available()              # (path, None) or (None, why it cannot be had here)
    sysroot.interpreters()           # corefactory.Interpreter of each SID_PYTHONS, chrooted

The interpreters are Debian's stripped, static, non-PIE builds (their DWARF in the -dbg
packages' separate debug files). Their programs run inside the root (`chroot`) from a
directory of this session (`session_dir`), which holds a copy of tests/programs and a work
directory per core; the kernel writes their cores there (the host's gcore 13 writes zero-filled
thread stacks for sid's glibc, so snapshots of live processes are kernel cores of SIGQUIT).
Cores are analysed from the host with `--lib-search-root ROOT` and no executable.

This module imports nothing from triage (benchmarks and scripts import it by path).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_sysroot.sh"
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"

#: The interpreters of the sysroot the suite runs its cases on (release, debug, newest).
SID_PYTHONS = ("python3.13", "python3.14", "python3.14d", "python3.15")

_BUILD_TIMEOUT = 1800


@functools.cache
def available() -> tuple[str | None, str | None]:
    """(the sysroot's path, None), or (None, why this machine cannot have it)."""
    if os.geteuid() != 0:
        return None, "the sid sysroot needs root (debootstrap, chroot): run the tests as root"
    if shutil.which("bash") is None:
        return None, "no bash to run scripts/build_sysroot.sh"
    try:
        result = subprocess.run(
            [str(SCRIPT)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"scripts/build_sysroot.sh did not finish: {exc}"
    if result.returncode != 0:
        said = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        return None, f"the sid sysroot could not be built here: {said}"
    return result.stdout.strip().splitlines()[-1], None


def ensure() -> str:
    """The sysroot's path; raises corefactory.CoreUnavailable saying why it cannot be had."""
    from corefactory import CoreUnavailable

    root, why = available()
    if root is None:
        raise CoreUnavailable(why or "no sysroot")
    return root


@functools.cache
def interpreters() -> list:
    """An Interpreter for each SID_PYTHONS the sysroot has (empty without a sysroot)."""
    from corefactory import Interpreter, interpreter_version

    root, _why = available()
    if root is None:
        return []
    found = []
    for name in SID_PYTHONS:
        if not Path(root, "usr/bin", name).is_file():
            continue
        path = f"/usr/bin/{name}"
        version = interpreter_version(path, sysroot=root)
        suffix = name.removeprefix(f"python{version[0]}.{version[1]}")
        ident = f"sid{version[0]}.{version[1]}{suffix}"
        found.append(Interpreter(path=path, version=version, id=ident, sysroot=root))
    return found


@functools.cache
def session_dir(root: str) -> Path:
    """This session's directory inside the sysroot (removed when the session ends), with a
    copy of tests/programs in it."""
    base = Path(root) / "tmp"
    for stale in base.glob("triage-tests-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)  # left by a session that was killed
    directory = base / f"triage-tests-{os.getpid()}"
    shutil.copytree(
        PROGRAMS_DIR, directory / "programs", ignore=shutil.ignore_patterns("__pycache__")
    )
    atexit.register(shutil.rmtree, directory, True)
    return directory


def inside(root: str, host_path: str | os.PathLike) -> str:
    """The path under which a process chrooted to `root` sees `host_path`: the session's copy
    of tests/programs for a program, the path below the root for a file inside it."""
    path = Path(host_path).resolve()
    programs = PROGRAMS_DIR.resolve()
    if path == programs or programs in path.parents:
        path = session_dir(root) / "programs" / path.relative_to(programs)
    try:
        return "/" + str(path.relative_to(Path(root).resolve()))
    except ValueError:
        raise ValueError(f"{host_path} is not inside the sysroot {root}") from None


def workdir(root: str, host_dir: str | os.PathLike) -> Path:
    """A directory inside the sysroot standing for `host_dir` (created)."""
    name = "_".join(Path(host_dir).resolve().parts[-3:])
    directory = session_dir(root) / "work" / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def root_of(path: str | os.PathLike) -> str | None:
    """The sysroot a core made by this session lies in (so `triage core` needs
    `--lib-search-root` it), else None."""
    root, _why = available()
    if root is None:
        return None
    try:
        # realpath: a symbolic link loop (a test of one) is not resolved, not an error
        relative = Path(os.path.realpath(path)).relative_to(Path(root).resolve() / "tmp")
    except ValueError:
        return None
    return root if relative.parts and relative.parts[0].startswith("triage-tests-") else None


def on_host(path: str) -> str:
    """The file on this machine behind a path a process of this session's sysroot names (its
    cores and reports name them): the original of tests/programs for the session's copy, the
    file below the root for the rest of the session's directory; other paths unchanged."""
    root, _why = available()
    prefix = f"/tmp/triage-tests-{os.getpid()}/"
    if root is None or not path.startswith(prefix):
        return path
    rest = path[len(prefix) :]
    if rest == "programs" or rest.startswith("programs/"):
        return str(PROGRAMS_DIR / rest[len("programs/") :])
    return root + path


def options_for(path: str | os.PathLike) -> dict[str, str]:
    """`triage.analyze_core` options a core of this session's sysroot needs (else none)."""
    root = root_of(path)
    return {"lib_search_root": root} if root is not None else {}


#: Why on-demand (gcore) cases do not run on the sysroot's interpreters.
NO_GCORE = (
    "needs an on-demand (gcore) core: the host's gcore 13 writes zero-filled thread stacks for "
    "sid's glibc, so the sid sysroot's processes are dumped by the kernel (SIGQUIT) instead"
)
