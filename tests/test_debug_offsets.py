"""3.13+ cores publish their own structure offsets (_Py_DebugOffsets at the start of
_PyRuntime). triage parses the block with the layout of the version it declares, checks it,
and lets it correct the table; a CPython newer than every table is read through it only when
it validates, else it is refused with a clear error.

Cores: a gcore of pyenv's 3.13 (shared build) and kernel cores of Debian sid's 3.13, 3.14,
3.14d (debug build) and 3.15 (static, stripped, their DWARF in -dbg packages), from the test
sysroot (tests/sysroot.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import corefactory
import pytest
import sysroot

from triage.coredump.corefile import parse_core
from triage.coredump.executable import find_executable
from triage.coredump.images import loaded_images
from triage.coredump.memory import CoreMemory
from triage.coredump.source import open_core
from triage.cpython import debug_offsets, runtime
from triage.cpython.fields import declarations
from triage.cpython.layout import load_layout

ROOT = Path(__file__).resolve().parent.parent


def _block(core: str, root: str | None = None):
    """(the published block as triage parses it, the core's version, the block's raw bytes)."""
    with open_core(core) as opened:
        parsed = parse_core(opened)
        images = loaded_images(parsed.mappings)
        files = {
            i.path: (root or "") + i.path for i in images if os.path.isfile((root or "") + i.path)
        }
        memory = CoreMemory(parsed, files)
        exe = find_executable(parsed, memory, None)
        binary = runtime.find_python_binary(images, files, exe.mapping_path)
        assert binary is not None
        address = runtime.runtime_address(binary)
        assert address is not None
        version = runtime.detect_version(memory, binary)
        raw = memory.read(address, 4096)
        block = debug_offsets.read(memory, address, version.short)
        memory.close()
    return block, version, raw


def _published_members() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        m.debug: (m.struct, m.names)
        for d in declarations()
        for m in d.members.values()
        if m.debug and "+" not in m.debug and m.names
    }


def _agree(block, table) -> int:
    """Every declared member the block publishes has the table's offset; returns how many."""
    checked = 0
    for key, (struct, names) in _published_members().items():
        if key not in block.values or not table.has(struct):
            continue
        name = next((n for n in names if table.has(struct, n)), None)
        if name is None:
            continue
        assert block.values[key] == table.offset(struct, name), key
        checked += 1
    return checked


@pytest.fixture(scope="module")
def core_313(tmp_path_factory):
    interp = next(
        (i for i in corefactory.find_interpreters() if i.version[:2] == (3, 13) and i.shared), None
    )
    if interp is None:
        pytest.skip("no CPython 3.13 (shared build) installed")
    try:
        return interp, corefactory.make_gcore(interp, tmp_path_factory.mktemp("dbg"), threads=1)
    except corefactory.CoreUnavailable as exc:
        pytest.skip(str(exc))


def test_published_offsets_agree_with_the_dwarf_table(core_313) -> None:
    _interp, case = core_313
    block, _version, _raw = _block(case.path)
    assert block is not None
    assert block.parsed_with == (3, 13) and not block.free_threaded
    assert _agree(block, load_layout(3, 13)) >= 35


@pytest.mark.parametrize("name", sysroot.SID_PYTHONS)
def test_sid_blocks_validate_and_agree(sid_cores, name: str) -> None:
    """Each sid interpreter's block parses with its own version's layout; its offsets are the
    DWARF table's wherever that table comes from the same build (3.14, 3.15), and wherever
    they differ (3.13.18 against pyenv's 3.13.0, the debug builds) they are what the core
    uses: the overlay applies them."""
    core = sid_cores.crash(name)
    block, version, _raw = _block(core.path, core.interpreter.sysroot)
    assert block is not None
    assert block.parsed_with == version.short
    published = [k for k in _published_members() if k in block.values]
    assert len(published) >= 35
    if name in ("python3.14", "python3.15"):
        assert _agree(block, load_layout(*version.short)) == len(published)
    overlaid = debug_offsets.overlay(load_layout(*version.short), block, version.short)
    assert _agree(block, overlaid) == len(published)


def test_a_block_parsed_with_another_versions_layout_does_not_validate(sid_cores) -> None:
    """3.14 inserted members and sections: its block read with 3.13's layout (or 3.15's with
    3.14's) is caught by the checks, never taken."""
    for name, wrong in (("python3.14", (3, 13)), ("python3.15", (3, 14)), ("python3.13", (3, 14))):
        core = sid_cores.crash(name)
        raw = _block(core.path, core.interpreter.sysroot)[2]
        table = load_layout(*wrong)
        values = {
            n: int.from_bytes(raw[o : o + 8], "little")
            for n, o in table.fields(debug_offsets.BLOCK).items()
            if "." in n or n == "free_threaded"
        }
        assert debug_offsets.validate(values) is not None, (name, wrong)


def _triage_without(tmp_path: Path, hidden: str, edit=None):
    """A copy of the triage package without the table `hidden` (and `edit` applied to the
    copy's layouts directory), and a runner of its `triage` command."""
    package = tmp_path / "triage"
    shutil.copytree(ROOT / "triage", package, ignore=shutil.ignore_patterns("__pycache__"))
    layouts = package / "cpython" / "layouts"
    (layouts / f"{hidden}.json").unlink()
    if edit is not None:
        edit(layouts)

    def run(*args: str, copy: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
        if copy:
            env["PYTHONPATH"] = str(tmp_path)  # found before the installed (editable) triage
        return subprocess.run(
            [sys.executable, "-m", "triage", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

    return run


def test_a_newer_python_without_its_table(sid_cores, tmp_path: Path) -> None:
    """A 3.15 core read by a triage whose newest table is 3.14: 3.15's debug-offsets block
    does not parse with 3.14's layout of it, so the answer is the clear error, not frames."""
    core = sid_cores.crash("python3.15")
    run = _triage_without(tmp_path, "3.15")
    argv = ["core", core.path, "--lib-search-root", core.interpreter.sysroot, "--format", "json"]
    hidden = run(*argv)
    assert hidden.returncode == 1, hidden.stderr
    assert "Traceback" not in hidden.stderr
    report = json.loads(hidden.stdout)
    assert report["error"]["kind"] == "unsupported_python_version"
    # no Python frame; the crashed thread's native ones (always unwound) stay
    frames = [f for t in report["threads"] for f in t["frames"]]
    assert report["threads"] and frames and {f["kind"] for f in frames} == {"native"}
    message = report["error"]["message"]
    assert message.startswith("Python 3.15.2 is not supported: its _Py_DebugOffsets match no")
    assert "supported: 2.7, 3.6-3.14, and newer 3.x whose debug offsets validate" in message
    assert hidden.stderr == f"triage: error: {message}\n"


def test_a_newer_python_read_through_its_debug_offsets(sid_cores, tmp_path: Path) -> None:
    """The other outcome: a triage whose newest table (3.14's structs) already knows the
    debug-offsets block of the new version (as when a release keeps the block unchanged) reads
    the 3.15 core through the offsets the core publishes: the same frames as with the 3.15
    table, and a warning that says so."""
    core = sid_cores.crash("python3.15")

    def newest_knows_the_block(layouts: Path) -> None:
        table = json.loads((layouts / "3.14.json").read_text())
        block = load_layout(3, 15)
        table["structs"][debug_offsets.BLOCK] = {
            "size": block.size(debug_offsets.BLOCK),
            "fields": dict(block.fields(debug_offsets.BLOCK)),
        }
        (layouts / "3.14.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")

    run = _triage_without(tmp_path, "3.15", newest_knows_the_block)
    argv = ["core", core.path, "--lib-search-root", core.interpreter.sysroot, "--format", "json"]
    got, full = run(*argv), run(*argv, copy=False)
    assert full.returncode == 0 and got.returncode == 0, got.stderr
    expected, report = json.loads(full.stdout), json.loads(got.stdout)
    frames = [
        [(f["file"], f["function"], f["line"]) for f in t["frames"]] for t in report["threads"]
    ]
    assert frames == [
        [(f["file"], f["function"], f["line"]) for f in t["frames"]] for t in expected["threads"]
    ]
    assert sum(len(f) for f in frames) >= 8
    assert (
        "Python 3.15.2 is newer than every layout table (newest: 3.14): read through its own "
        "_Py_DebugOffsets over the 3.14 table" in report["warnings"]
    )


def test_a_free_threaded_build_is_refused(sid_cores, tmp_path: Path, run_triage) -> None:
    """No free-threaded build is on this machine (Debian's archive has none), so the refusal
    is shown on a real 3.14 core whose _Py_DebugOffsets.free_threaded byte is set, as the
    block of a free-threaded build has it: one line naming the build and what is supported."""
    core = sid_cores.crash("python3.14")
    with open_core(core.path) as opened:
        parsed = parse_core(opened)
        images = loaded_images(parsed.mappings)
        root = core.interpreter.sysroot
        files = {i.path: root + i.path for i in images if os.path.isfile(root + i.path)}
        memory = CoreMemory(parsed, files)
        binary = runtime.find_python_binary(
            images, files, find_executable(parsed, memory, None).mapping_path
        )
        flag = runtime.runtime_address(binary) + load_layout(3, 14).offset(
            debug_offsets.BLOCK, "free_threaded"
        )
        segment = memory.segment_at(flag)
        offset = segment.offset + flag - segment.vaddr
        memory.close()
    mutant = tmp_path / "free-threaded.core"
    shutil.copyfile(core.path, mutant)
    with open(mutant, "r+b") as stream:
        stream.seek(offset)
        assert stream.read(8) == bytes(8)
        stream.seek(offset)
        stream.write((1).to_bytes(8, "little"))
    rc, _out, err = run_triage("core", str(mutant), "--lib-search-root", root)
    assert rc == 1
    assert err == (
        "triage: error: Python 3.14.10 is a free-threaded build (no GIL), which triage cannot "
        "read yet; supported: 2.7, 3.6-3.15 with the GIL\n"
    )
