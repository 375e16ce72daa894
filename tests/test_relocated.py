"""A core analysed where its libraries are no longer where the process loaded them from.

A copy of one interpreter (its binary, libpython and the standard library it needs) runs the
target program from ORIGINAL/; gcore dumps it; then ORIGINAL/ is renamed to MOVED/, so no path in
the core exists any more. This is the "analysing on another machine" case of the reference.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from corefactory import (
    CoreCase,
    CoreUnavailable,
    build_id,
    make_gcore,
    preferred_interpreter,
    relocate_interpreter,
)

SHARED_LIBRARY = re.compile(r"\.so(\.[0-9A-Za-z_.-]+)?$")


class Relocated:
    def __init__(self, case: CoreCase, original: Path, moved: Path) -> None:
        self.case = case
        self.original = original
        self.moved = moved
        self.binary = str(moved / "bin" / os.path.basename(case.exec_path))
        self.original_libpython = case.interpreter.libpython
        assert self.original_libpython is not None
        self.moved_libpython = self.to_moved(self.original_libpython)

    def to_moved(self, path: str) -> str:
        return str(self.moved / os.path.relpath(path, self.original))

    def original_files(self) -> list[str]:
        """Files the process mapped from the copy, as the core records them."""
        return [path for path in self.case.maps or [] if path.startswith(str(self.original) + "/")]


@pytest.fixture(scope="module")
def relocated(interpreters, tmp_path_factory: pytest.TempPathFactory):
    interp = preferred_interpreter(interpreters, [(3, 8), (3, 12)])
    interp = interp or next((i for i in interpreters if i.shared), None)
    if interp is None:
        pytest.skip("no shared-build (libpython) Python interpreter on this machine to relocate")
    base = tmp_path_factory.mktemp("relocated")
    original, moved = base / "original", base / "moved"
    copy = relocate_interpreter(interp, original)
    try:
        case = make_gcore(copy, base / "cores", threads=2)
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    os.rename(original, moved)
    assert not original.exists()
    yield Relocated(case, original, moved)
    shutil.rmtree(base, ignore_errors=True)


def test_the_copy_ran_its_own_libpython(relocated: Relocated) -> None:
    """Sanity: the live process mapped the copy's libpython, not the installed one."""
    assert relocated.case.maps is not None
    assert relocated.original_libpython in relocated.case.maps
    assert os.path.exists(relocated.moved_libpython)
    assert not os.path.exists(relocated.original_libpython)


def test_without_help_libraries_are_missing(relocated: Relocated, triage_json, run_triage) -> None:
    case = relocated.case
    # Without its libpython the interpreter cannot be found in the core: the analysis stops
    # there (exit 1), but what the core says and which files are missing is all reported.
    report = triage_json(case.path, relocated.binary, expect_rc=1)
    assert report["error"]["kind"] == "python_binary_not_found"
    assert relocated.original_libpython in report["error"]["message"]
    assert "--lib-search-path" in report["error"]["message"]
    assert report["executable"] == relocated.binary
    assert report["executable_source"] == "argument"
    assert report["process"]["pid"] == case.pid
    assert sorted(t["tid"] for t in report["threads"]) == sorted(case.tids)

    # Every file mapped from the copy other than the executable given is missing.
    expected_missing = [p for p in relocated.original_files() if p != case.exec_path]
    assert relocated.original_libpython in expected_missing
    assert sorted(report["missing_libraries"]) == sorted(expected_missing)
    assert report["mismatched_libraries"] == []
    assert "Failed to locate " + relocated.original_libpython in report["warnings"]

    libraries = {lib["path"]: lib for lib in report["libraries"]}
    lib = libraries[relocated.original_libpython]
    assert lib["found_path"] is None
    assert lib["build_id"] == build_id(relocated.moved_libpython)  # read from the core's memory
    assert lib["build_id_matches"] is None
    exe = libraries[case.exec_path]
    assert exe["found_path"] == relocated.binary
    assert exe["build_id_matches"] is True

    rc, out, err = run_triage("core", case.path, relocated.binary, "--no-color")
    assert rc == 1, err
    assert "Traceback" not in out + err
    assert "WARNING: Failed to locate " + relocated.original_libpython in err.splitlines()
    assert err.splitlines()[-1] == "triage: error: " + report["error"]["message"]
    assert f"pid: {case.pid} ppid: {os.getpid()} sid: {os.getsid(0)}" in out.splitlines()
    assert "--lib-search-path" in err and "--lib-search-root" in err  # the advice
    # The executable was given, so it is not announced as found in the core.
    assert "Using executable found in the core file" not in out


def assert_all_found_in_moved(relocated: Relocated, report: dict) -> None:
    assert report["error"] is None
    assert report["missing_libraries"] == []
    assert report["mismatched_libraries"] == []
    assert report["warnings"] == []
    libraries = {lib["path"]: lib for lib in report["libraries"]}
    lib = libraries[relocated.original_libpython]
    assert lib["found_path"] == relocated.moved_libpython
    assert lib["build_id"] == lib["found_build_id"] == build_id(relocated.moved_libpython)
    assert lib["build_id_matches"] is True
    for path in relocated.original_files():
        assert libraries[path]["found_path"] == relocated.to_moved(path), path
        assert libraries[path]["build_id_matches"] is True, path


def test_lib_search_path_finds_libpython(relocated: Relocated, triage_json) -> None:
    moved_lib = str(relocated.moved / "lib")
    report = triage_json(relocated.case.path, relocated.binary, "--lib-search-path", moved_lib)
    assert report["library_search_path"] == [moved_lib]
    assert report["error"] is None
    libraries = {lib["path"]: lib for lib in report["libraries"]}
    lib = libraries[relocated.original_libpython]
    assert lib["found_path"] == relocated.moved_libpython
    assert lib["build_id_matches"] is True
    assert relocated.original_libpython not in report["missing_libraries"]
    # lib-dynload was not in the path: those modules are still missing
    dynload = [p for p in relocated.original_files() if "/lib-dynload/" in p]
    assert dynload
    assert sorted(report["missing_libraries"]) == sorted(dynload)


def test_lib_search_path_with_every_directory(relocated: Relocated, triage_json) -> None:
    dirs = sorted({os.path.dirname(relocated.to_moved(p)) for p in relocated.original_files()})
    dirs.remove(str(relocated.moved / "bin"))
    report = triage_json(relocated.case.path, relocated.binary, "--lib-search-path", ":".join(dirs))
    assert report["library_search_path"] == dirs
    assert_all_found_in_moved(relocated, report)


def directories_with_shared_libraries(root: Path) -> list[str]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        if any(SHARED_LIBRARY.search(name) for name in filenames):
            found.append(dirpath)
    return sorted(found)


def test_lib_search_root_finds_everything(relocated: Relocated, triage_json, run_triage) -> None:
    root = str(relocated.moved)
    report = triage_json(relocated.case.path, relocated.binary, "--lib-search-root", root)
    expected_path = directories_with_shared_libraries(relocated.moved)
    assert str(relocated.moved / "lib") in expected_path
    assert report["library_search_path"] == expected_path
    assert_all_found_in_moved(relocated, report)

    rc, out, err = run_triage(
        "core", relocated.case.path, relocated.binary, "--lib-search-root", root, "-v"
    )
    assert rc == 0, err
    assert err == ""
    assert "Library search path: " + ":".join(expected_path) in out.splitlines()
