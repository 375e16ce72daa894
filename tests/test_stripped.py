"""Cores of interpreters whose libpython was stripped to .dynsym: the interpreter is found by
scanning the library's data when its private symbols (interp_head on 2.7 and 3.6) are gone,
and the version comes from Py_Version or sys.version's text instead of .symtab."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import corefactory
import pytest

VERSIONS = [(2, 7), (3, 6), (3, 8), (3, 12)]


def _relocated_stripped(interp: corefactory.Interpreter, base: Path) -> corefactory.Interpreter:
    copy = corefactory.relocate_interpreter(interp, base / "prefix")
    lib = Path(copy.libpython)
    subprocess.run(["strip", "--strip-all", str(lib)], check=True)
    out = subprocess.run(["readelf", "-S", str(lib)], capture_output=True, text=True, check=True)
    assert ".symtab" not in out.stdout
    return copy


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda v: f"py{v[0]}.{v[1]}")
def stripped_case(request, tmp_path_factory):
    if shutil.which("strip") is None or shutil.which("readelf") is None:
        pytest.skip("binutils (strip, readelf) is not installed")
    interp = next(
        (i for i in corefactory.find_interpreters() if i.version[:2] == request.param and i.shared),
        None,
    )
    if interp is None:
        pytest.skip("no shared-library CPython {}.{} installed".format(*request.param))
    base = tmp_path_factory.mktemp("stripped-{}{}".format(*request.param))
    copy = _relocated_stripped(interp, base)
    try:
        case = corefactory.make_gcore(copy, base / "cores", threads=1)
    except corefactory.CoreUnavailable as exc:
        pytest.skip(str(exc))
    return interp, copy, case


def test_stacks_of_a_stripped_libpython(stripped_case, triage_json) -> None:
    interp, copy, case = stripped_case
    report = triage_json(case.path)
    assert report["error"] is None
    assert report["python_version"] == ".".join(map(str, interp.version[:3]))
    threads = {t["tid"]: t for t in report["threads"] if t["python"]}
    assert sorted(threads) == sorted(case.tids)
    main = [(f["function"], f["line"]) for f in threads[case.tids[0]]["frames"]]
    assert main == [(name, line) for name, line, _src in corefactory.main_stack("sleep")]
    worker = [(f["function"], f["line"]) for f in threads[case.tids[1]]["frames"]][-2:]
    assert worker == [(name, line) for name, line, _src in corefactory.worker_stack()]
    assert threads[case.tids[1]]["name"] == "worker-0"
    lib = next(x for x in report["libraries"] if x["path"] == copy.libpython)
    assert lib["build_id_matches"] is True
