"""3.13+ cores publish their own structure offsets (_Py_DebugOffsets at the start of
_PyRuntime). Every offset triage takes from there must agree with the table derived from
DWARF, so that a newer CPython without a table is read the same way."""

from __future__ import annotations

import corefactory
import pytest

from triage.coredump.corefile import parse_core
from triage.coredump.images import loaded_images
from triage.coredump.memory import CoreMemory
from triage.coredump.source import open_core
from triage.cpython import debug_offsets, runtime
from triage.cpython.layout import load_layout


@pytest.fixture(scope="module")
def core_313(tmp_path_factory):
    interp = next(
        (i for i in corefactory.find_interpreters() if i.version[:2] >= (3, 13) and i.shared), None
    )
    if interp is None:
        pytest.skip("no CPython 3.13 or newer (shared build) installed")
    try:
        return interp, corefactory.make_gcore(interp, tmp_path_factory.mktemp("dbg"), threads=1)
    except corefactory.CoreUnavailable as exc:
        pytest.skip(str(exc))


def test_published_offsets_agree_with_the_dwarf_table(core_313) -> None:
    interp, case = core_313
    table = load_layout(*interp.version[:2])
    with open_core(case.path) as opened:
        core = parse_core(opened)
        images = loaded_images(core.mappings)
        files = {i.path: i.path for i in images}
        memory = CoreMemory(core, files)
        binary = runtime.find_python_binary(images, files, None)
        assert binary is not None
        values = debug_offsets.read_debug_offsets(memory, runtime.runtime_address(binary), table)
        overlaid = debug_offsets.overlay(table, values, interp.version[:2])
        memory.close()
    checked = 0
    for key, (struct, field) in debug_offsets.MAPPING.items():
        if not all(part in values for part in key.split("+")):
            continue
        if field == "@size":
            assert overlaid.size(struct) == table.size(struct), key
        else:
            assert overlaid.offset(struct, field) == table.offset(struct, field), key
        checked += 1
    assert checked >= 40  # nearly every mapped entry is published by 3.13
    assert overlaid.derived_from.endswith("_Py_DebugOffsets from the core")
