"""Make real core files of real Python processes, for tests, the demo and benchmarks.

Nothing here is mocked: every core comes from a live interpreter on this machine, either dumped on
demand with gdb's ``gcore`` or written by the kernel when the process dies of a signal.

    interps = find_interpreters()
    case = make_gcore(interps[0], tmpdir, threads=2)          # on-demand core of a sleeping program
    case = make_crash(interps[0], tmpdir, "segv", threads=2)  # kernel core of a crash
    core, ready = crash_program(interps[0], tmpdir, "exceptions.py", "raised", lib)
                                        # kernel core of a program of programs/ that aborts
    compress(case.path, "zstd")                               # -> case.path + ".zst"

The target program is ``tests/programs/target.py`` (see its header); ``program_lines()`` gives the
line number of every call in it, ``main_stack(action)`` / ``worker_stack()`` the frames a stack
of its threads shows. Functions that cannot make a core on this machine
(no gdb, a core_pattern that pipes to a collector, ...) raise ``CoreUnavailable`` with the reason.

This module must stay importable by path (``scripts/make_demo_core.py`` and the benchmarks insert
``tests/`` into ``sys.path``), so it imports nothing from the test-suite or from ``triage``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import glob
import gzip
import json
import lzma
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
PROGRAMS_DIR = TESTS_DIR / "programs"
TARGET_PROGRAM = PROGRAMS_DIR / "target.py"

#: An odd, unmapped address the ``segv`` program faults at (123456789, as in PyStack's docs).
SEGV_ADDRESS = 0x75BCD15

#: Crash kinds make_crash() knows: kind -> (program action, signal the test sends or None).
CRASH_KINDS: dict[str, tuple[str, signal.Signals | None]] = {
    "segv": ("segv", None),
    "null": ("null", None),
    "abort": ("abort", None),
    "sigbus": ("wait", signal.SIGBUS),
    "sigquit": ("wait", signal.SIGQUIT),
}

SI_USER, SI_TKILL, SI_KERNEL, SEGV_MAPERR = 0, -6, 0x80, 1

_EXPECTED = {
    # kind -> (signal number, si_code, origin)
    "gcore": (signal.SIGSTOP, SI_KERNEL, "on_demand"),  # what gdb's gcore writes
    "segv": (signal.SIGSEGV, SEGV_MAPERR, "crash"),
    "null": (signal.SIGSEGV, SEGV_MAPERR, "crash"),
    "abort": (signal.SIGABRT, SI_TKILL, "signal"),  # abort() is tgkill() on itself
    "sigbus": (signal.SIGBUS, SI_USER, "sent"),  # kill() from the test process
    "sigquit": (signal.SIGQUIT, SI_USER, "sent"),
}

#: Compression formats compress() writes: format -> file name suffix.
COMPRESSION_SUFFIXES = {"gzip": ".gz", "zstd": ".zst", "xz": ".xz", "lz4": ".lz4"}

# Syscalls a thread sits in while in time.sleep() / waiting for the GIL or a lock (x86-64).
_SLEEP_SYSCALLS = {7, 23, 35, 202, 230, 270, 271}  # poll select nanosleep futex clock_nanosleep ...

# One malloc arena: without it every thread reserves a 64 MiB arena that gcore writes out as
# zeros, making each on-demand core ~160 MB instead of ~25 MB. Nothing tests check depends on it.
_PROGRAM_ENV = {"MALLOC_ARENA_MAX": "1"}

_READY_TIMEOUT = 30.0
_GCORE_TIMEOUT = 120.0


class CoreUnavailable(Exception):
    """This machine cannot make the requested core; the message says why (for pytest.skip)."""


# --------------------------------------------------------------------------------------------
# Interpreters


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """A Python interpreter on this machine that can run the target program."""

    path: str  # the path we exec (not resolved further: this is what AT_EXECFN will hold)
    version: tuple[int, int, int]
    id: str  # pytest id: py3.12.1 (pyenv), debian3.11 (/usr/bin), sid3.14d (sysroot)
    env: tuple[tuple[str, str], ...] = ()  # extra environment to run it with (relocated copies)
    sysroot: str | None = None  # runs chrooted there (`path` is inside it); see sysroot.py

    @property
    def prefix(self) -> str:
        """The installation prefix: the directory above bin/."""
        return str(Path(self.path).parent.parent)

    @property
    def short_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def realpath(self) -> str:
        """The interpreter's file on this machine, symlinks resolved."""
        if self.sysroot is not None:
            return os.path.realpath(self.sysroot + self.path)
        return os.path.realpath(self.path)

    @property
    def mapped_path(self) -> str:
        """The executable's path as the process's mappings (and so its cores) name it."""
        if self.sysroot is not None:
            return "/" + os.path.relpath(self.realpath, self.sysroot)
        return self.realpath

    def see(self, host_path: str | os.PathLike) -> str:
        """The path under which this interpreter's processes see a file of this machine (a
        program of tests/programs, a file of a work directory)."""
        if self.sysroot is None:
            return str(host_path)
        import sysroot

        return sysroot.inside(self.sysroot, host_path)

    def host(self, path: str) -> str:
        """The file on this machine behind a path this interpreter's processes (and their
        cores) name (`sysroot.on_host`: a program's original in tests/programs)."""
        if self.sysroot is None:
            return path
        import sysroot

        return sysroot.on_host(path)

    def readable(self, path: str) -> str:
        """Where on this machine to read a file this interpreter's processes name: `host`,
        or the file below its sysroot (its standard library)."""
        host = self.host(path)
        if self.sysroot is not None and host == path and path.startswith("/"):
            return self.sysroot + path
        return host

    def workdir(self, host_dir: str | os.PathLike) -> Path:
        """Where a process of this interpreter works for `host_dir` (inside its sysroot when
        it runs chrooted: the kernel writes its core there). Created."""
        if self.sysroot is None:
            Path(host_dir).mkdir(parents=True, exist_ok=True)
            return Path(host_dir)
        import sysroot

        return sysroot.workdir(self.sysroot, host_dir)

    @property
    def triage_args(self) -> tuple[str, ...]:
        """What `triage core` needs besides the core to read this interpreter's cores."""
        return ("--lib-search-root", self.sysroot) if self.sysroot is not None else ()

    @functools.cached_property
    def libpython(self) -> str | None:
        """The libpython this interpreter loads (None for static builds), as the loader finds it."""
        needed, search = _dynamic_info(self.realpath)
        names = [name for name in needed if name.startswith("libpython")]
        if not names:
            return None
        dirs = [d for d in dict(self.env).get("LD_LIBRARY_PATH", "").split(":") if d]
        dirs += [*search, "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"]
        for directory in dirs:
            candidate = os.path.join(directory, names[0])
            if os.path.exists(candidate):
                return os.path.realpath(candidate)
        return None

    @property
    def shared(self) -> bool:
        """True when the interpreter's code lives in a libpython shared library."""
        return self.libpython is not None

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        if self.sysroot is not None:  # nothing of this machine's environment applies there
            return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        # The target program must not pick up the test runner's Python settings.
        for name in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONSAFEPATH"):
            env.pop(name, None)
        if "PYTHONHOME" not in dict(self.env):
            env.pop("PYTHONHOME", None)
        return env


def _dynamic_info(path: str) -> tuple[list[str], list[str]]:
    """DT_NEEDED names and the RPATH/RUNPATH directories ($ORIGIN expanded) of an ELF file."""
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    search: list[str] = []
    origin = os.path.dirname(os.path.realpath(path))
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        dynamic = elf.get_section_by_name(".dynamic")
        if dynamic is None:
            return needed, search
        for tag in dynamic.iter_tags():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(tag.needed)
            elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                for entry in value.split(":"):
                    search.append(entry.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
    return needed, search


def build_id(path: str | os.PathLike) -> str | None:
    """The GNU build-id of an ELF file on disk, as lowercase hex (None if it has none)."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        for segment in elf.iter_segments():
            if segment.header.p_type != "PT_NOTE":
                continue
            for note in segment.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return note["n_desc"]
    return None


def _is_elf_executable(path: str) -> bool:
    try:
        with open(path, "rb") as stream:
            header = stream.read(18)
    except OSError:
        return False
    # ET_EXEC (2) or ET_DYN (3), little-endian e_type at offset 16
    return header[:4] == b"\x7fELF" and header[16] in (2, 3) and os.access(path, os.X_OK)


@functools.cache
def interpreter_version(
    path: str, env: tuple[tuple[str, str], ...] = (), sysroot: str | None = None
) -> tuple[int, int, int]:
    """Ask the interpreter for its version (cached per path)."""
    out = run_python(path, "import sys; print(tuple(sys.version_info[:3]))", env, sysroot)
    version = ast.literal_eval(out.strip())
    return (int(version[0]), int(version[1]), int(version[2]))


def run_python(
    path: str, code: str, env: tuple[tuple[str, str], ...] = (), sysroot: str | None = None
) -> str:
    """What the interpreter at `path` prints running `code` (chrooted to `sysroot`)."""
    environ = dict(os.environ)
    environ.update(env)

    def enter_root() -> None:  # in the child, before exec
        os.chroot(sysroot)
        os.chdir("/")

    if sysroot is not None:
        environ = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        [path, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=environ,
        check=True,
        preexec_fn=enter_root if sysroot is not None else None,
    ).stdout


def _versioned_name(bindir: Path) -> Path | None:
    """bin/python resolved to the versioned name (python2.7, python3.12) when it exists."""
    python = bindir / "python"
    real = os.path.realpath(python)
    candidates = sorted(bindir.glob("python[23].[0-9]*"), key=lambda p: len(p.name))
    for candidate in candidates:
        if candidate.name.endswith("-config") or not re.fullmatch(
            r"python\d\.\d+m?", candidate.name
        ):
            continue
        if os.path.realpath(candidate) == real or os.path.samefile(candidate, real):
            return candidate
    return python if python.exists() else None


@functools.cache
def find_interpreters(sysroot: bool = False) -> list[Interpreter]:
    """Every usable interpreter: pyenv versions first (by version), then /usr/bin/python3*,
    then, with `sysroot`, those of the tests' Debian sid sysroot (built on first use, as root:
    see sysroot.py; the demo and the sweep benchmark leave it out)."""
    found: list[Interpreter] = []
    seen: set[str] = set()

    def add(path: Path, id_prefix: str) -> None:
        real = os.path.realpath(path)
        if real in seen or not _is_elf_executable(real):
            return
        try:
            version = interpreter_version(str(path))
        except (OSError, subprocess.SubprocessError, ValueError, SyntaxError):
            return
        seen.add(real)
        if id_prefix == "py":
            ident = "py{}.{}.{}".format(*version)
        else:
            ident = f"{id_prefix}{version[0]}.{version[1]}"
        found.append(Interpreter(path=str(path), version=version, id=ident))

    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    pyenv = []
    for bindir in sorted(pyenv_root.glob("*/bin")):
        name = _versioned_name(bindir)
        if name is not None:
            pyenv.append(name)
    for path in pyenv:
        add(path, "py")
    found.sort(key=lambda interp: interp.version)

    system = sorted(
        (p for p in Path("/usr/bin").glob("python3*") if not p.name.endswith("-config")),
        # python3.11 before python3: keep the versioned name when both are the same file
        key=lambda p: (p.name == "python3", p.name),
    )
    for path in system:
        if re.fullmatch(r"python3(\.\d+)?", path.name):
            add(path, "debian" if Path("/etc/debian_version").exists() else "system")
    if not sysroot:
        return found
    import sysroot as sid

    return found + sid.interpreters()


def preferred_interpreter(
    interps: Sequence[Interpreter], versions: Iterable[tuple[int, int]] = ((3, 12),)
) -> Interpreter | None:
    """The first shared-build interpreter whose (major, minor) is in `versions`, in that order."""
    for wanted in versions:
        for interp in interps:
            if interp.version[:2] == tuple(wanted) and interp.shared:
                return interp
    return None


# --------------------------------------------------------------------------------------------
# Cases


@dataclasses.dataclass
class CoreCase:
    """One core file and what is known for certain about the process it came from."""

    path: str
    interpreter: Interpreter
    pid: int
    ppid: int
    tids: list[int]  # native thread ids, main thread first
    uid: int
    gid: int
    kind: str  # gcore, segv, null, abort, sigbus, sigquit
    signal: int  # expected signal number in the core
    signal_code: int  # expected si_code
    # The sender the kernel records (si_pid/si_uid): the test process for sigbus/sigquit, the
    # process itself for abort (which is therefore NOT "sent"), None for faults and gcore.
    sender_pid: int | None
    sender_uid: int | None
    fault_address: int | None
    origin: str  # on_demand, crash, signal, sent
    exec_path: str  # the path given to exec (AT_EXECFN)
    argv: list[str]
    threads: int  # number of worker threads the program started
    maps: list[str] | None = None  # file-backed mappings seen in /proc/PID/maps (gcore only)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal).name

    @property
    def main_tid(self) -> int:
        return self.tids[0]

    @property
    def crashed_tid(self) -> int | None:
        """The thread that takes the signal: the main thread for every kind made here.

        segv/null/abort happen on the main thread; kill() of a process goes to its main thread
        when that thread does not block the signal (kernel complete_signal()), as here.
        """
        return None if self.kind == "gcore" else self.tids[0]

    @property
    def comm(self) -> str:
        """The kernel's name of the process (NT_PRPSINFO pr_fname): the exec'd file name, 15 max."""
        return os.path.basename(self.exec_path)[:15]

    @property
    def psargs(self) -> str:
        """The command line as the core records it, without the kernel's trailing space.

        The kernel writes the first 79 bytes of the argument area with NULs turned into spaces;
        gdb's gcore copies /proc/PID/cmdline with strncpy, which stops at the first NUL: argv[0].
        """
        if self.kind == "gcore":
            return self.argv[0][:79]
        return (" ".join(self.argv) + " ")[:79].rstrip(" ")

    @property
    def description(self) -> str:
        """The sentence that tells how the core was made, as PyStack users know it."""
        if self.origin == "on_demand":
            return (
                "The core file seems to have been generated on demand (the process did not crash)"
            )
        if self.origin == "crash":
            return "The process died due a segmentation fault accessing address: 0x%x" % (
                self.fault_address or 0
            )
        if self.origin == "sent":
            return (
                f"The process died due receiving signal {self.signal_name} "
                f"sent by pid {self.sender_pid}"
            )
        return f"The process died due receiving signal {self.signal_name}"


@functools.cache
def program_source_lines(program: Path = TARGET_PROGRAM) -> dict[str, tuple[int, str]]:
    """Every call in the program: "FUNCTION:CALLEE" -> (line, stripped source of that line).

    FUNCTION is the enclosing function's name or "<module>"; CALLEE is the called name as
    written ("time.sleep", "ctypes.string_at", "second_func"). The first call wins.
    """
    source = Path(program).read_text()
    lines = source.splitlines()
    result: dict[str, tuple[int, str]] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                try:
                    callee = ast.unparse(child.func)
                except Exception:  # pragma: no cover - unparse handles every expression
                    callee = "?"
                key = f"{scope}:{callee}"
                if key not in result:
                    result[key] = (child.lineno, lines[child.lineno - 1].strip())
            visit(child, scope)

    visit(ast.parse(source), "<module>")
    return result


def program_lines(program: Path = TARGET_PROGRAM) -> dict[str, int]:
    """Every call in the program: "FUNCTION:CALLEE" -> line number (see program_source_lines)."""
    return {key: line for key, (line, _text) in program_source_lines(program).items()}


_LAST_CALL = {
    "sleep": "time.sleep",
    "wait": "time.sleep",
    "segv": "ctypes.string_at",
    "null": "ctypes.string_at",
    "abort": "os.abort",
}


def main_stack(action: str = "sleep") -> list[tuple[str, int, str]]:
    """The main thread's Python frames, outermost first: (function, line, source line).

    <module> -> first_func -> second_func -> third_func, stopped in the call that ACTION makes
    (time.sleep, ctypes.string_at or os.abort).
    """
    calls = program_source_lines()
    chain = [
        ("<module>", "<module>:first_func"),
        ("first_func", "first_func:second_func"),
        ("second_func", "second_func:third_func"),
        ("third_func", "third_func:" + _LAST_CALL[action]),
    ]
    return [(function, *calls[key]) for function, key in chain]


def worker_stack() -> list[tuple[str, int, str]]:
    """A worker thread's own Python frames, outermost first, below threading's bootstrap."""
    calls = program_source_lines()
    return [
        ("worker", *calls["worker:worker_sleep"]),
        ("worker_sleep", *calls["worker_sleep:time.sleep"]),
    ]


def _argv(interp: Interpreter, threads: int, action: str, address: int | None = None) -> list[str]:
    argv = [interp.path, interp.see(TARGET_PROGRAM), str(threads), action]
    if address is not None:
        argv.append(hex(address))
    return argv


def _read_ready_line(proc: subprocess.Popen, argv: Sequence[str]) -> dict:
    """The program's one JSON line, or an error with its stderr if it died first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + _READY_TIMEOUT
    buffer = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"target program did not report ready: {list(argv)!r}")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            proc.wait()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(
                f"target program exited with {proc.returncode} before reporting ready: "
                f"{list(argv)!r}\n{err}"
            )
        buffer += chunk
    return json.loads(buffer.split(b"\n", 1)[0])


def _thread_state(pid: int, tid: int) -> tuple[str, int | None]:
    """(state letter, current syscall number or None) of one thread."""
    base = f"/proc/{pid}/task/{tid}/"
    with open(base + "stat") as stream:
        stat = stream.read()
    state = stat[stat.rindex(")") + 2]
    try:
        with open(base + "syscall") as stream:
            field = stream.read().split()[0]
        syscall = int(field) if field.lstrip("-").isdigit() else None
    except OSError:
        syscall = None
    return state, syscall


def wait_until_sleeping(pid: int, tids: Sequence[int], timeout: float = 10.0) -> bool:
    """Wait until every thread sleeps in a blocking syscall, so stacks in the core are stable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [_thread_state(pid, tid) for tid in tids]
        except (OSError, ValueError, IndexError):
            return False
        if all(state == "S" and (sc is None or sc in _SLEEP_SYSCALLS) for state, sc in states):
            if all(sc is not None for _, sc in states):
                return True
            time.sleep(0.2)  # no /proc/PID/syscall: give the threads a moment
            return True
        time.sleep(0.01)
    return False


def _cpu_ticks(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


def wait_busy(pid: int, tid: int, ticks: int = 5, timeout: float = 10.0) -> None:
    """Wait until thread `tid` has run on the CPU for `ticks` clock ticks since now."""
    start = _cpu_ticks(pid, tid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _cpu_ticks(pid, tid) - start >= ticks:
            return
        time.sleep(0.01)
    raise RuntimeError(f"thread {tid} of pid {pid} did not start its busy loop")


def mapped_files(pid: int) -> list[str]:
    """The distinct file paths mapped into a live process, in address order."""
    paths: list[str] = []
    with open(f"/proc/{pid}/maps") as stream:
        for line in stream:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                path = parts[5].rstrip("\n")
                if path not in paths:
                    paths.append(path)
    return paths


def _start(
    interp: Interpreter,
    argv: list[str],
    cwd: str | None,
    core_limit: bool,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen:
    """Start a target program; `core_limit` lifts RLIMIT_CORE so a crash leaves a core."""

    root = interp.sysroot
    inner = interp.see(cwd) if root is not None and cwd is not None else None

    def prepare() -> None:  # runs in the child between fork and exec
        if core_limit:
            _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
        if root is not None:
            os.chroot(root)
            os.chdir(inner or "/")

    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd if root is None else None,
        env={**interp.environ(), **_PROGRAM_ENV},
        preexec_fn=prepare if core_limit or root is not None else None,
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def make_gcore(
    interp: Interpreter, tmpdir: str | os.PathLike, threads: int = 0, program: str = "sleep"
) -> CoreCase:
    """Run the target program and dump it once all threads sleep: with gcore, then kill it;
    for an interpreter of the sid sysroot with SIGQUIT, the kernel dumping it (see
    `snapshot`), so the case's kind, signal and origin are those of `sigquit`."""
    if interp.sysroot is None and shutil.which("gcore") is None:
        raise CoreUnavailable("gcore (from gdb) is not installed")
    tmpdir = interp.workdir(tmpdir)
    argv = _argv(interp, threads, program)
    proc = _start(interp, argv, cwd=str(tmpdir), core_limit=interp.sysroot is not None)
    try:
        ready = _read_ready_line(proc, argv)
        pid = ready["pid"]
        wait_until_sleeping(pid, ready["tids"])
        maps = mapped_files(pid)
        path, kind = snapshot(interp, proc, pid, tmpdir / f"core-{interp.id}-gcore")
    finally:
        _kill(proc)
    sig, code, origin = _EXPECTED[kind]
    sender = os.getpid() if kind == "sigquit" else None
    return CoreCase(
        path=str(path),
        interpreter=interp,
        pid=pid,
        ppid=ready["ppid"],
        tids=list(ready["tids"]),
        uid=os.getuid(),
        gid=os.getgid(),
        kind=kind,
        signal=int(sig),
        signal_code=code,
        sender_pid=sender,
        sender_uid=None if sender is None else os.getuid(),
        fault_address=None,
        origin=origin,
        exec_path=argv[0],
        argv=argv,
        threads=threads,
        maps=maps if kind == "gcore" else None,
    )


def snapshot(
    interp: Interpreter, proc: subprocess.Popen, pid: int, prefix: Path
) -> tuple[Path, str]:
    """A core of a live process at PREFIX.PID and how it was made: gdb's gcore ("gcore"), or,
    for an interpreter of the sid sysroot, whose thread stacks the host's gcore 13 writes as
    zeros, the kernel's core of SIGQUIT ("sigquit"; the process dies of it)."""
    if interp.sysroot is None:
        return gcore(pid, prefix), "gcore"
    os.kill(pid, signal.SIGQUIT)
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    pattern, uses_pid = _core_pattern()
    where = _core_glob(pattern, uses_pid, str(prefix.parent), pid, signal.SIGQUIT, interp.path)
    matches = glob.glob(where)
    if not os.WIFSIGNALED(status) or not os.WCOREDUMP(status) or not matches:
        raise CoreUnavailable(
            f"kernel core_pattern {pattern!r} (core_uses_pid {int(uses_pid)}) does not write "
            f"core files here (no core from pid {pid} after SIGQUIT)"
        )
    found = max(matches, key=os.path.getmtime)
    _wait_complete(found)
    path = Path(f"{prefix}.{pid}")
    os.rename(found, path)
    return path, "sigquit"


def gcore(pid: int, prefix: Path) -> Path:
    """Dump a live process with gdb's gcore to PREFIX.PID; CoreUnavailable says why not."""
    gcore_path = shutil.which("gcore")
    if gcore_path is None:
        raise CoreUnavailable("gcore (from gdb) is not installed")
    result = subprocess.run(
        [gcore_path, "-o", str(prefix), str(pid)],
        capture_output=True,
        text=True,
        timeout=_GCORE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    path = Path(f"{prefix}.{pid}")
    if result.returncode != 0 or not path.exists():
        said = (result.stderr or result.stdout).strip()[-500:]
        raise CoreUnavailable(f"gcore could not dump pid {pid} (exit {result.returncode}): {said}")
    return path


def gcore_program(
    interp: Interpreter, tmpdir: str | os.PathLike, program: str, *args: str, asleep: bool = True
) -> Path:
    """A core of programs/PROGRAM run with `args`, taken once it has printed its ready line
    ({"pid": ..., "tids": [...]}) and (if `asleep`) every thread it names sleeps: a gcore, or
    the kernel's core of SIGQUIT for a sid sysroot interpreter (`snapshot`)."""
    if interp.sysroot is None and shutil.which("gcore") is None:
        raise CoreUnavailable("gcore (from gdb) is not installed")
    tmpdir = interp.workdir(tmpdir)
    argv = [interp.path, interp.see(PROGRAMS_DIR / program), *args]
    proc = _start(interp, argv, cwd=str(tmpdir), core_limit=interp.sysroot is not None)
    try:
        ready = _read_ready_line(proc, argv)
        if asleep:
            wait_until_sleeping(ready["pid"], ready["tids"])
        elif interp.sysroot is not None:
            # A kernel snapshot is instant (gcore takes its time to attach): let the program
            # get back from writing its ready line into the busy state it announced.
            for tid in ready["tids"]:
                wait_busy(ready["pid"], tid)
        path, _kind = snapshot(interp, proc, ready["pid"], tmpdir / f"core-{Path(program).stem}")
    finally:
        _kill(proc)
    return path


def gcore_at_breakpoint(
    interp: Interpreter, tmpdir: str | os.PathLike, function: str, program: str, *args: str
) -> tuple[Path, int]:
    """A gcore of programs/PROGRAM run with `args`, taken by gdb when a thread first enters
    `function` (a breakpoint: inlined copies included): (the core, the tid of that thread).
    Only for the host's interpreters: gdb 13 cannot read the sid sysroot's debug files."""
    if interp.sysroot is not None:
        raise CoreUnavailable(
            f"the host's gdb cannot stop {interp.id} at {function}: its DWARF is newer than "
            "gdb 13 reads, and its gcore writes the thread stacks of sid binaries as zeros"
        )
    gdb = shutil.which("gdb")
    if gdb is None:
        raise CoreUnavailable("gdb is not installed")
    tmpdir = interp.workdir(tmpdir)
    argv = [interp.path, str(PROGRAMS_DIR / program), *args]
    proc = _start(interp, argv, cwd=str(tmpdir), core_limit=False)
    try:
        pid = _read_ready_line(proc, argv)["pid"]
        path = Path(tmpdir) / f"core-{function}.{pid}"
        result = subprocess.run(
            [
                gdb,
                "-nx",
                "-q",
                "-batch",
                "-p",
                str(pid),
                "-ex",
                "set pagination off",
                "-ex",
                f"break {function}",
                "-ex",
                "continue",
                "-ex",
                "info threads",
                "-ex",
                f"gcore {path}",
                "-ex",
                "detach",
            ],
            capture_output=True,
            text=True,
            timeout=_GCORE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        _kill(proc)
    # gdb marks the thread it stopped in with "*" in `info threads`: "* 2  Thread 0x.. (LWP N)".
    stopped = re.search(r"^\*\s+\d+\s+Thread 0x[0-9a-f]+ \(LWP (\d+)\)", result.stdout, re.M)
    if (
        not path.exists()
        or stopped is None
        or not re.search(r"Breakpoint 1(\.\d+)?, ", result.stdout)
    ):
        said = (result.stderr or result.stdout).strip()[-500:]
        raise CoreUnavailable(f"gdb did not stop pid {pid} in {function} and dump it: {said}")
    return path, int(stopped.group(1))


def crash_program(
    interp: Interpreter,
    tmpdir: str | os.PathLike,
    program: str,
    *args: str,
    sig: signal.Signals = signal.SIGABRT,
) -> tuple[str, dict]:
    """The kernel's core of programs/PROGRAM run with `args`, which prints its ready line and
    then dies of `sig` by itself: (the core, the ready line)."""
    kernel_writes_cores()
    workdir = interp.workdir(tmpdir)
    argv = [interp.path, interp.see(PROGRAMS_DIR / program), *args]
    proc = _start(interp, argv, cwd=str(workdir), core_limit=True)
    try:
        ready = _read_ready_line(proc, argv)
        path = wait_for_core(proc, ready["pid"], argv, workdir, sig)
    finally:
        _kill(proc)
    return path, ready


def wait_for_core(
    proc: subprocess.Popen, pid: int, argv: list[str], workdir: Path, sig: signal.Signals
) -> str:
    """Wait for the process to die of `sig` and return the core the kernel wrote for it in
    `workdir`; CoreUnavailable when it wrote none."""
    _, status = os.waitpid(proc.pid, 0)
    # Reaped here: tell Popen, so that _kill() neither signals nor waits for it again.
    proc.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if not os.WIFSIGNALED(status) or os.WTERMSIG(status) != sig:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{argv!r} ended with status {status:#x}, not {sig.name}\n{err}")
    pattern, uses_pid = _core_pattern()
    matches = glob.glob(_core_glob(pattern, uses_pid, str(workdir), pid, sig, argv[0]))
    if not os.WCOREDUMP(status) or not matches:
        raise CoreUnavailable(
            f"kernel core_pattern {pattern!r} (core_uses_pid {int(uses_pid)}) does not write "
            f"core files here (no core from pid {pid} after {sig.name}; RLIMIT_CORE hard limit "
            f"{resource.getrlimit(resource.RLIMIT_CORE)[1]})"
        )
    path = max(matches, key=os.path.getmtime)
    _wait_complete(path)
    return path


def make_deep_stacks_core(
    interp: Interpreter, tmpdir: str | os.PathLike, threads: int, depth: int
) -> Path:
    """A gcore core of programs/deep_stacks.py: `threads` threads each `depth` Python calls
    deep (3.11+: deeper stacks than that need C stack). Returns the core's path."""
    if interp.version < (3, 11):
        raise CoreUnavailable(f"deep Python stacks need 3.11+, not {interp.id}")
    return gcore_program(interp, tmpdir, "deep_stacks.py", str(threads), str(depth))


def kernel_writes_cores() -> None:
    """CoreUnavailable unless the kernel writes core files (its core_pattern pipes them to a
    collector on some machines)."""
    pattern, _uses_pid = _core_pattern()
    if pattern.startswith("|"):
        raise CoreUnavailable(
            f"kernel core_pattern {pattern!r} pipes cores to a program "
            "and does not write core files here"
        )


def _core_pattern() -> tuple[str, bool]:
    try:
        pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    except OSError:
        pattern = "core"
    try:
        uses_pid = Path("/proc/sys/kernel/core_uses_pid").read_text().strip() == "1"
    except OSError:
        uses_pid = False
    return pattern, uses_pid


def _core_glob(pattern: str, uses_pid: bool, cwd: str, pid: int, sig: int, exe: str) -> str:
    """A glob for the core file the kernel writes for this process (see core(5))."""
    values = {
        "%": "%",
        "p": str(pid),
        "P": str(pid),
        "i": str(pid),
        "I": str(pid),
        "u": str(os.getuid()),
        "g": str(os.getgid()),
        "s": str(sig),
        "e": glob.escape(os.path.basename(exe)[:15]),
        "h": glob.escape(socket.gethostname()),
    }
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "%" and index + 1 < len(pattern):
            out.append(values.get(pattern[index + 1], "*"))
            index += 2
            continue
        out.append(glob.escape(char))
        index += 1
    name = "".join(out)
    if uses_pid and "%p" not in pattern:
        name += "." + str(pid)
    return name if os.path.isabs(name) else os.path.join(glob.escape(cwd), name)


def _wait_complete(path: str, timeout: float = 10.0) -> None:
    """Wait until the core file stops growing (the kernel has finished writing it)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = os.stat(path).st_size
        if size == last and size > 0:
            return
        last = size
        time.sleep(0.05)


def make_crash(
    interp: Interpreter, tmpdir: str | os.PathLike, kind: str, threads: int = 0
) -> CoreCase:
    """Run the target program in a fresh directory and let the kernel dump it when it dies."""
    if kind not in CRASH_KINDS:
        raise ValueError("unknown crash kind {!r} (known: {})".format(kind, ", ".join(CRASH_KINDS)))
    kernel_writes_cores()
    action, send = CRASH_KINDS[kind]
    expected_signal, code, origin = _EXPECTED[kind]
    address = SEGV_ADDRESS if kind == "segv" else None
    workdir = Path(tmpdir) / (f"crash-{interp.id}-{kind}")
    if interp.sysroot is None:
        workdir.mkdir(parents=True, exist_ok=False)
    else:
        workdir = interp.workdir(workdir)
    argv = _argv(interp, threads, action, address)
    proc = _start(interp, argv, cwd=str(workdir), core_limit=True)
    try:
        ready = _read_ready_line(proc, argv)
        pid = ready["pid"]
        if send is not None:
            wait_until_sleeping(pid, ready["tids"])
            os.kill(pid, send)
        path = wait_for_core(proc, pid, argv, workdir, signal.Signals(expected_signal))
    finally:
        _kill(proc)
    sender = os.getpid() if send is not None else (pid if kind == "abort" else None)
    return CoreCase(
        path=path,
        interpreter=interp,
        pid=pid,
        ppid=ready["ppid"],
        tids=list(ready["tids"]),
        uid=os.getuid(),
        gid=os.getgid(),
        kind=kind,
        signal=int(expected_signal),
        signal_code=code,
        sender_pid=sender,
        sender_uid=None if sender is None else os.getuid(),
        fault_address={"segv": SEGV_ADDRESS, "null": 0}.get(kind),
        origin=origin,
        exec_path=argv[0],
        argv=argv,
        threads=threads,
    )


# --------------------------------------------------------------------------------------------
# Compression


def compress(path: str | os.PathLike, fmt: str, dest: str | os.PathLike | None = None) -> str:
    """Stream-compress `path` to `dest` (default: path + .gz/.zst/.xz/.lz4); return dest."""
    if fmt not in COMPRESSION_SUFFIXES:
        raise ValueError(
            "unknown compression {!r} (known: {})".format(fmt, ", ".join(COMPRESSION_SUFFIXES))
        )
    out = str(dest) if dest is not None else str(path) + COMPRESSION_SUFFIXES[fmt]
    with open(path, "rb") as source:
        if fmt == "gzip":
            with gzip.open(out, "wb", compresslevel=1) as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        elif fmt == "xz":
            with lzma.open(out, "wb", preset=0) as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        elif fmt == "lz4":
            import lz4.frame

            with lz4.frame.open(out, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        else:
            import zstandard

            with (
                open(out, "wb") as raw,
                zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=False) as sink,
            ):
                shutil.copyfileobj(source, sink, 1 << 20)
    return out


# --------------------------------------------------------------------------------------------
# Relocation


_RELOCATE_SKIP_DIRS = {
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "__pycache__",
}


def relocate_interpreter(interp: Interpreter, dest: str | os.PathLike) -> Interpreter:
    """Copy what `interp` needs to run the target program to `dest` and return the copy.

    The copy runs with LD_LIBRARY_PATH and PYTHONHOME pointing into `dest`, so it maps its own
    libpython and standard library; this is checked on a live process of the copy (the original
    binary's RUNPATH still names the original prefix, LD_LIBRARY_PATH wins over RUNPATH).
    """
    if interp.env:
        raise ValueError(f"interpreter {interp.id} is already a relocated copy")
    dest = Path(dest)
    prefix = Path(interp.prefix)
    stdlib = f"python{interp.short_version}"
    binary = Path(interp.realpath)
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()
    shutil.copy2(binary, dest / "bin" / binary.name)
    for lib in sorted((prefix / "lib").glob("libpython*.so*")):
        if lib.is_symlink():
            os.symlink(os.readlink(lib), dest / "lib" / lib.name)
        else:
            shutil.copy2(lib, dest / "lib" / lib.name)

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name in _RELOCATE_SKIP_DIRS}
        skipped |= {name for name in names if name.startswith("config-")}  # libpython.a & co
        if os.path.basename(directory) == "site-packages":
            skipped |= set(names)
        return skipped

    shutil.copytree(prefix / "lib" / stdlib, dest / "lib" / stdlib, ignore=ignore, symlinks=True)
    env = (("LD_LIBRARY_PATH", str(dest / "lib")), ("PYTHONHOME", str(dest)))
    copy = Interpreter(
        path=str(dest / "bin" / binary.name),
        version=interp.version,
        id=interp.id + "-relocated",
        env=env,
    )
    _check_relocated(copy, interp, dest)
    return copy


def _check_relocated(copy: Interpreter, original: Interpreter, dest: Path) -> None:
    """Run the copy and check that every file it maps from a Python prefix is under `dest`."""
    argv = _argv(copy, 0, "sleep")
    proc = _start(copy, argv, cwd=str(dest), core_limit=False)
    try:
        ready = _read_ready_line(proc, argv)
        maps = mapped_files(ready["pid"])
    finally:
        _kill(proc)
    leaked = [path for path in maps if path.startswith(original.prefix + os.sep)]
    libpython = [path for path in maps if os.path.basename(path).startswith("libpython")]
    if leaked or (original.shared and not all(p.startswith(str(dest)) for p in libpython)):
        raise RuntimeError(
            f"relocated copy of {original.id} still maps files of the original: {leaked}"
        )
    if original.shared and not libpython:
        raise RuntimeError(f"relocated copy of {original.id} maps no libpython")
    # Resolved (and cached) now, while the copy is where it was made.
    if original.shared and copy.libpython not in libpython:
        raise RuntimeError(
            f"relocated copy of {original.id}: expected {copy.libpython} to be mapped, "
            f"saw {libpython}"
        )
