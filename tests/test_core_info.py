"""`triage core` on real cores of every interpreter: what the core says about the process.

Each case is a core of tests/programs/target.py with 2 worker threads, made once per session:
an on-demand gcore core and kernel cores of a segfault (0x75bcd15), a NULL dereference, abort(),
and SIGBUS / SIGQUIT sent by this test process. Every value is checked against what the program
itself reported while alive (pid, thread ids) or what the test process knows (its own pid,
session, process group, uid, gid).
"""

from __future__ import annotations

import os
import signal

import pytest
from corefactory import CoreCase, build_id

KINDS = ["gcore", "segv", "null", "abort", "sigbus", "sigquit"]


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest, cores, interpreter) -> CoreCase:
    return cores.case(interpreter, request.param)


@pytest.fixture
def report(case: CoreCase, triage_json) -> dict:
    return triage_json(case.path)


def test_process(case: CoreCase, report: dict) -> None:
    process = report["process"]
    assert process["pid"] == case.pid
    # The program is a direct child of this test process, in its session and process group.
    assert process["ppid"] == case.ppid == os.getpid()
    assert process["sid"] == os.getsid(0)
    assert process["pgrp"] == os.getpgrp()
    assert process["uid"] == case.uid == os.getuid()
    assert process["gid"] == case.gid == os.getgid()
    # gcore dumps a process stopped by ptrace; the kernel dumps from the dying, running thread.
    assert process["state"] == ("t" if case.kind == "gcore" else "R")
    assert process["zombie"] is False
    assert process["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
    assert process["executable"] == case.comm
    assert process["arguments"] == case.psargs


def test_signal(case: CoreCase, report: dict) -> None:
    sig = report["signal"]
    assert sig["number"] == case.signal
    assert sig["name"] == signal.Signals(case.signal).name
    assert sig["code"] == case.signal_code
    assert sig["origin"] == case.origin
    assert sig["fault_address"] == case.fault_address
    assert sig["sender_pid"] == case.sender_pid
    assert sig["sender_uid"] == case.sender_uid
    assert sig["description"] == case.description
    if case.kind in ("sigbus", "sigquit"):
        assert sig["sender_pid"] == os.getpid()
    assert report["error"] is None


def test_executable(case: CoreCase, report: dict) -> None:
    assert report["executable_source"] == "core"
    assert os.path.realpath(report["executable"]) == os.path.realpath(case.exec_path)


def test_threads(case: CoreCase, report: dict) -> None:
    tids = [thread["tid"] for thread in report["threads"]]
    assert sorted(tids) == sorted(case.tids)
    assert len(tids) == case.threads + 1 == 3
    crashed = [thread["tid"] for thread in report["threads"] if thread["crashed"]]
    if case.kind == "gcore":
        assert crashed == []
    else:
        assert crashed == [case.main_tid]
        # The kernel writes the thread that took the signal first.
        assert tids[0] == case.main_tid


def test_libraries(case: CoreCase, report: dict) -> None:
    interp = case.interpreter
    assert report["missing_libraries"] == []
    assert report["mismatched_libraries"] == []
    assert report["warnings"] == []
    libraries = {lib["path"]: lib for lib in report["libraries"]}

    exe = libraries[interp.mapped_path]
    assert exe["found_path"] == interp.realpath  # in the sid sysroot: --lib-search-root
    assert exe["build_id"] == exe["found_build_id"] == build_id(interp.realpath)
    assert exe["build_id_matches"] is True

    if interp.shared:
        lib = libraries[interp.libpython]
        assert lib["found_path"] == interp.libpython
        assert lib["build_id"] == lib["found_build_id"] == build_id(interp.libpython)
        assert lib["build_id_matches"] is True
    else:
        assert not [path for path in libraries if os.path.basename(path).startswith("libpython")]

    if case.maps is not None:  # gcore cases saw the live process's /proc/PID/maps
        shared_objects = {path for path in case.maps if ".so" in os.path.basename(path)}
        assert shared_objects <= set(libraries)
        for path in shared_objects:
            assert libraries[path]["found_path"] == path
            assert libraries[path]["build_id_matches"] is True, path


def test_text(case: CoreCase, run_triage) -> None:
    rc, out, err = run_triage("core", case.path, "--no-color")
    assert rc == 0, err
    assert err == ""
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == "Using executable found in the core file: " + case.exec_path
    start = lines.index("Core file information:")
    state = "t" if case.kind == "gcore" else "R"
    assert lines[start + 1 : start + 5] == [
        f"state: {state} zombie: False niceness: {os.getpriority(os.PRIO_PROCESS, 0)}",
        f"pid: {case.pid} ppid: {os.getpid()} sid: {os.getsid(0)}",
        f"uid: {case.uid} gid: {case.gid} pgrp: {os.getpgrp()}",
        f"executable: {case.comm} arguments: {case.psargs}",
    ]
    assert case.description in lines[start + 5 :]
