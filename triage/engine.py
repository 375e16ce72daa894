"""One core in, one CoreReport out: the layers put together, errors turned into report fields."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from triage import __version__
from triage.coredump.corefile import CoreFile, parse_core
from triage.coredump.environ import current_test, read_environment
from triage.coredump.executable import find_executable
from triage.coredump.images import (
    LoadedImage,
    build_id_in_core,
    build_id_of_file,
    loaded_images,
)
from triage.coredump.locate import LibrarySearch, locate
from triage.coredump.memory import CoreMemory
from triage.coredump.signals import core_cause
from triage.coredump.source import identify, open_core
from triage.coredump.stacks import stack_warnings
from triage.cpython.interpreter import PyThread, read_python
from triage.describe import describe_native, describe_python, mark_crashed
from triage.errors import TriageError
from triage.report import (
    SELF_INFLICTED,
    CoreFileInfo,
    CoreReport,
    ErrorInfo,
    LibraryReport,
    ProcessInfo,
    SignalInfo,
    ThreadReport,
)
from triage.signature import Rules, compute_signature
from triage.text import make_valid

if TYPE_CHECKING:
    from triage.native.unwind import NativeFrame


def analyze_core(
    path: str,
    executable: str | None = None,
    *,
    lib_search_path: str | list[str] | None = None,
    lib_search_root: str | list[str] | None = None,
    python: bool = True,
    exhaustive: bool = False,
    signature_rules: Rules | None = None,
    locals: bool = False,
    native: bool = False,
    crashed_native: bool = True,
    max_core_size: int | None = None,
) -> CoreReport:
    """Analyse the core at `path`. Never raises for bad input: the report's `error` says why
    (only MemoryError passes through, when the process runs out of memory).

    `python=False` stops after the core-file information (no interpreter model);
    `exhaustive` lets the interpreter search scan all of memory when symbols do not help;
    `signature_rules` are the fleet's (default: `Rules()`); `locals` reads every Python
    frame's arguments and local variables too; `native` unwinds every thread's native stack
    and merges it with the Python frames. Without it, the native stack of the thread that
    took the signal is read when it died of its own doing or has no Python frames (see
    `_crashed_to_unwind`): with `crashed_native=False`, not even that. `max_core_size`:
    the most bytes the (decompressed) core may have; a bigger one is `core_too_large`, and
    one that would not fit the temporary directory's free space `insufficient_space`, both
    found out before the disk fills.

    A truncated core (cut by a size limit) is read as far as it goes: the report's `error`
    says it is truncated, its threads have what their surviving memory holds, and warnings
    say what is missing. Every string of the report is valid Unicode: what the process's
    bytes do not decode to is escaped (`triage.text`).
    """
    started = time.perf_counter()
    report = CoreReport(core=CoreFileInfo(path=path, size=0), triage_version=__version__)
    stacks: dict[int, list[NativeFrame]] | None = None
    python_threads: list[PyThread] = []
    vectorcall = True
    rows: dict[int, ThreadReport] = {}
    try:
        with open_core(path, max_size=max_core_size) as opened:
            report.core = CoreFileInfo(
                path=path,
                size=opened.size,
                compression=opened.compression,
                uncompressed_size=opened.uncompressed_size,
            )
            core = parse_core(opened)
            _describe_process(report, core)
            truncated = core.truncation()
            if truncated:  # read what is there; the error stays, the rest are warnings
                report.error = ErrorInfo(kind="truncated_core", message=truncated)
            search = LibrarySearch.from_options(lib_search_path, lib_search_root)
            report.library_search_path = list(search.path)
            memory = CoreMemory(core)
            if python or native:
                report.warnings.extend(stack_warnings(core, memory))
            images = loaded_images(core.mappings)
            try:
                exe = find_executable(core, memory, executable)
                report.executable = exe.path
                report.executable_source = exe.source
                files = _locate_images(report, images, memory, search, exe.mapping_path, executable)
                memory.add_files(files)
                report.test = current_test(read_environment(memory, images, files))
                build_ids = {
                    lib.path: lib.build_id
                    for lib in report.libraries
                    if lib.build_id and lib.build_id_matches
                }
                python_error: TriageError | None = None
                if python:
                    try:
                        state = read_python(
                            memory,
                            images,
                            files,
                            exe.mapping_path,
                            [t.tid for t in core.threads],
                            build_ids=build_ids,
                            exhaustive=exhaustive,
                            variables=locals,
                        )
                    except TriageError as exc:  # the native frames may still be read
                        python_error = exc
                    else:
                        python_threads = state.threads
                        vectorcall = state.vectorcall
                        rows = describe_python(report, state)
                crashed = _crashed_to_unwind(report, python_threads) if crashed_native else []
                if native or (python and crashed):
                    stacks = _native_stacks(
                        report,
                        core,
                        memory,
                        images,
                        files,
                        build_ids,
                        search,
                        exe.mapping_path,
                        None if native else crashed,
                    )
                if python_error is not None:
                    raise python_error
            finally:
                memory.close()
    except TriageError as exc:
        _fail(report, ErrorInfo(kind=exc.kind, message=exc.message))
        if report.core.size == 0:
            size, compression = identify(path)
            report.core = CoreFileInfo(path=path, size=size, compression=compression or "none")
    except MemoryError:
        raise  # not a bug: the caller's memory guard (a sweep's child) says so
    except Exception as exc:  # a bug in triage: still one report, never a traceback
        _fail(
            report,
            ErrorInfo(
                kind="internal_error",
                message=f"internal error ({type(exc).__name__}: {exc}); please report it with "
                f"the core",
            ),
        )
    if stacks:
        from triage.native.stacks import combine

        # Each thread's merged stack, native frames of threads without Python (all of them,
        # when Python could not be read), statuses from native frames.
        describe_native(report, combine(python_threads, stacks, vectorcall), rows)
    mark_crashed(report)
    make_valid(report)  # bytes that are not UTF-8, lone surrogates: escaped (triage.text)
    try:
        report.signature = compute_signature(report, signature_rules)
    except Exception as exc:  # the promise holds for signatures too: never a traceback
        report.warnings.append(f"no signature: internal error ({type(exc).__name__}: {exc})")
    report.analysis_seconds = round(time.perf_counter() - started, 6)
    return report


def _fail(report: CoreReport, error: ErrorInfo) -> None:
    """`error` ends the analysis; when the report already has one (a truncated core read as
    far as it goes), that one stays the error and this one is said as a warning."""
    if report.error is None:
        report.error = error
    else:
        report.warnings.append(error.message)


def _crashed_to_unwind(report: CoreReport, python_threads: list[PyThread]) -> list[int]:
    """The threads whose native stack is read without --native: the one that took the
    signal, when it died of its own doing (its native frames say where: the signature and
    the text need them) or when it has no Python frames to show (a native thread). A thread
    that another process's signal killed was only where it happened to be."""
    self_inflicted = report.signal is not None and report.signal.origin in SELF_INFLICTED
    in_python = {t.tid for t in python_threads if t.frames}
    return [
        t.tid
        for t in report.threads
        if t.tid is not None and t.crashed and (self_inflicted or t.tid not in in_python)
    ]


def _describe_process(report: CoreReport, core: CoreFile) -> None:
    ps = core.process
    first = core.threads[0] if core.threads else None
    pid = ps.pid if ps else (first.tid if first else 0)
    if ps is not None:
        report.process = ProcessInfo(
            pid=ps.pid,
            ppid=ps.ppid,
            sid=ps.sid,
            pgrp=ps.pgrp,
            uid=ps.uid,
            gid=ps.gid,
            state=ps.sname,
            zombie=ps.zombie,
            nice=ps.nice,
            flags=ps.flags,
            executable=ps.fname,
            arguments=ps.psargs,
        )
    cause = core_cause(core.siginfo, first, pid)
    report.signal = SignalInfo(
        number=cause.number,
        name=cause.name,
        code=cause.code,
        errno=cause.errno,
        sender_pid=cause.sender_pid,
        sender_uid=cause.sender_uid,
        fault_address=cause.fault_address,
        origin=cause.origin,
        description=cause.description,
    )
    crashed = cause.origin != "on_demand"
    report.threads = [
        ThreadReport(tid=t.tid, crashed=crashed and i == 0) for i, t in enumerate(core.threads)
    ]


def _native_stacks(
    report: CoreReport,
    core: CoreFile,
    memory: CoreMemory,
    images: list[LoadedImage],
    files: dict[str, str],
    build_ids: dict[str, str],
    search: LibrarySearch,
    exe_mapping: str | None,
    tids: list[int] | None,
) -> dict[int, list[NativeFrame]] | None:
    """The native frames of the threads `tids` (None: every thread); a failure is a warning,
    never the analysis's end (the unwinder and its DWARF reader are imported here: a core
    that needs no native frame does not pay for them)."""
    from triage.coredump.linkmap import link_map_names
    from triage.native.stacks import native_stacks

    try:
        names = link_map_names(memory, images, exe_mapping)
        stacks, warnings = native_stacks(
            core,
            memory,
            images,
            files,
            build_ids,
            tuple(search.roots),
            tuple(search.path),
            names,
            tids,
            sites_only=tids is not None,
        )
        report.warnings.extend(warnings)
        return stacks
    except MemoryError:
        raise
    except Exception as exc:
        report.warnings.append(f"no native stacks: internal error ({type(exc).__name__}: {exc})")
        return None


def _locate_images(
    report: CoreReport,
    images: list[LoadedImage],
    memory: CoreMemory,
    search: LibrarySearch,
    exe_mapping: str | None,
    exe_given: str | None,
) -> dict[str, str]:
    """Find every mapped file on this machine; record misses and build-id mismatches."""
    files: dict[str, str] = {}
    for image in images:
        core_id = build_id_in_core(memory, image.start)
        found: tuple[str | None, str | None, bool | None]  # path, build-id, whether it matches
        if exe_given is not None and image.path == exe_mapping:
            found_id = build_id_of_file(exe_given)
            matches = None if core_id is None or found_id is None else core_id == found_id
            found = (exe_given, found_id, matches)
        else:
            loc = locate(image.path, core_id, search)
            found = (loc.found_path, loc.found_build_id, loc.build_id_matches)
        found_path, found_id, matches = found
        report.libraries.append(
            LibraryReport(
                path=image.path,
                start=image.start,
                found_path=found_path,
                build_id=core_id,
                found_build_id=found_id,
                build_id_matches=matches,
            )
        )
        if found_path is None:
            report.missing_libraries.append(image.path)
            report.warnings.append(f"Failed to locate {image.path}")
            continue
        files[image.path] = found_path
        if matches is False:
            report.mismatched_libraries.append(image.path)
            report.warnings.append(
                f"{found_path} is not the build that was loaded as {image.path} "
                f"(build-id {found_id} on disk, {core_id} in the core)"
            )
    return files
