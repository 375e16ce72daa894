"""A thread whose stack memory the core does not really hold is named in a warning.

The real case: the host's gdb 13 `gcore` of a process of Debian sid's glibc saves the worker
threads' stacks as zeros. Their Python frames linked through the C stack (3.11+ entry frames)
and all their native frames are then lost; triage says so per thread instead of silently
showing shorter stacks. Kernel cores of the same interpreters (every other test) and gcore
cores of the pyenv interpreters carry no such warning (tests/test_core_info.py checks that
their reports have no warnings at all).
"""

from __future__ import annotations

import shutil

import corefactory
import pytest


def test_zero_filled_thread_stacks_are_named(sid_cores, tmp_path, triage_json) -> None:
    if shutil.which("gcore") is None:
        pytest.skip("gcore (from gdb) is not installed")
    interp = sid_cores.interpreter("python3.14")
    workdir = interp.workdir(tmp_path / "gcore")
    argv = corefactory._argv(interp, 2, "sleep")
    proc = corefactory._start(interp, argv, cwd=str(workdir), core_limit=False)
    try:
        ready = corefactory._read_ready_line(proc, argv)
        corefactory.wait_until_sleeping(ready["pid"], ready["tids"])
        path = corefactory.gcore(ready["pid"], workdir / "core-gcore")
    finally:
        corefactory._kill(proc)
    main, *workers = ready["tids"]
    report = triage_json(str(path), "--native")
    warned = {}
    for warning in report["warnings"]:
        if "its stack memory at 0x" in warning:
            tid = int(warning.split(":", 1)[0].removeprefix("thread "))
            warned[tid] = warning
    assert sorted(warned) == sorted(workers)
    for tid in workers:
        assert warned[tid].startswith(f"thread {tid}: its stack memory at 0x")
        assert warned[tid].endswith(
            " is all zeros in the core (the tool that wrote it did not save the stack: gdb's "
            "gcore does so for some glibc versions); its native frames, and the Python frames "
            "linked through them (3.11+), cannot be read: this thread's stacks may be incomplete"
        )
    # What the warning is about: the workers' stacks stop short of threading's bootstrap,
    # which the kernel's core of the same program shows.
    kernel = triage_json(sid_cores.crash("python3.14", "sigquit").path)
    full = next(t for t in kernel["threads"] if t["name"] == "worker-0")
    short = next(t for t in report["threads"] if t["name"] == "worker-0")
    assert [f["function"] for f in full["frames"]][:2] == ["_bootstrap", "_bootstrap_inner"]
    assert len(short["frames"]) < len(full["frames"])
    assert main not in warned
