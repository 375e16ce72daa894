"""The Arrow schema derived from the report models, its round trip, and the committed schemas/."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest

from triage.report import (
    Collection,
    CoreFileInfo,
    CoreReport,
    ErrorInfo,
    FrameReport,
    LibraryReport,
    ProcessInfo,
    SignalInfo,
    SweepRecord,
    ThreadReport,
)

ROOT = Path(__file__).resolve().parent.parent
EXPORT_SCRIPT = ROOT / "scripts" / "export_schemas.py"


def _export_module():
    spec = importlib.util.spec_from_file_location("export_schemas", EXPORT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pa():
    return pytest.importorskip("pyarrow", reason="pyarrow is not installed")


# --------------------------------------------------------------------------------------------
# schemas/ is what the script writes now


def test_committed_schemas_are_current(pa):
    rendered = _export_module().render()
    assert sorted(rendered) == [
        "core-report.schema.json",
        "sweep-record.arrow.txt",
        "sweep-record.schema.json",
    ]
    for name, text in rendered.items():
        path = ROOT / "schemas" / name
        assert path.exists(), f"schemas/{name} is missing: run `python scripts/export_schemas.py`"
        assert path.read_text(encoding="utf-8") == text, (
            f"schemas/{name} no longer matches triage/report.py: "
            "run `python scripts/export_schemas.py` and commit schemas/"
        )


def test_export_script_check_mode(pa, tmp_path):
    module = _export_module()
    assert module.main(["--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(module.render())
    assert module.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "core-report.schema.json").write_text("{}\n")
    assert module.stale(tmp_path) == ["core-report.schema.json"]
    assert module.main(["--check", "--dir", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        # `triage core` starts fast: the engine needs none of the pipeline's libraries
        (
            "triage, triage.engine, triage.report, triage.cli, triage.pipeline.schema, "
            "triage.pipeline.sink",
            ("pyarrow", "fsspec", "s3fs", "duckdb"),
        ),
        # signatures are computed in the analysis child and in `triage core`
        ("triage.signature", ("pyarrow", "duckdb", "dask", "distributed", "pydantic")),
    ],
)
def test_engine_does_not_import_pipeline_dependencies(modules: str, heavy: tuple[str, ...]):
    code = f"import sys, {modules}\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------
# the derived Arrow schema


def _field(schema, dotted: str):
    """schema field by dotted path; list levels are stepped through (threads.frames.line)."""
    first, *rest = dotted.split(".")
    field = schema.field(first)
    for name in rest:
        arrow_type = field.type
        if hasattr(arrow_type, "value_field"):  # list<item: struct<...>>
            arrow_type = arrow_type.value_field.type
        field = arrow_type.field(name)
    return field


def test_top_level_columns_follow_the_dataclass(pa):
    from triage.pipeline.schema import arrow_schema

    schema = arrow_schema()
    assert schema.names == [f.name for f in dataclasses.fields(SweepRecord)]
    assert schema.names == [
        "core_id",
        "sweep_id",
        "sweep_date",
        "fleet",
        "status",
        "collection",
        "report",
        "error_message",
        "analysis_seconds",
        "worker",
    ]
    for name in ("core_id", "sweep_id", "sweep_date", "fleet", "status"):
        assert schema.field(name).type == pa.string()
        assert schema.field(name).nullable is False
    assert schema.field("collection").nullable is False
    assert schema.field("report").nullable is False
    assert schema.field("analysis_seconds").type == pa.float64()
    assert schema.field("analysis_seconds").nullable is True
    assert schema.field("worker").type == pa.string()
    assert schema.field("worker").nullable is True


@pytest.mark.parametrize(
    ("path", "expected", "nullable"),
    [
        ("report.threads.frames.line", "int64", True),
        ("report.threads.frames.kind", "string", False),  # Literal["python", "native"]
        ("report.threads.frames.function", "string", False),
        ("report.threads.frames.column", "int64", True),
        ("report.threads.tid", "int64", True),
        ("report.threads.crashed", "bool", False),
        ("report.threads.name", "string", True),
        ("report.threads.status", "list<item: string not null>", False),
        ("report.core.compression", "string", False),  # Literal[...]
        ("report.core.size", "int64", False),
        ("report.core.uncompressed_size", "int64", True),
        ("report.signal.origin", "string", False),
        ("report.signal.fault_address", "uint64", True),
        ("report.libraries.build_id_matches", "bool", True),
        ("report.libraries.start", "int64", False),
        ("report.error.kind", "string", False),
        ("report.analysis_seconds", "double", True),
        ("collection.extra", "map<string, string>", False),
        ("collection.uid", "int64", True),
    ],
)
def test_nested_field_types(pa, path, expected, nullable):
    from triage.pipeline.schema import arrow_schema

    field = _field(arrow_schema(), path)
    assert str(field.type) == expected
    assert field.nullable is nullable


def test_nested_containers(pa):
    from triage.pipeline.schema import arrow_schema

    schema = arrow_schema()
    threads = _field(schema, "report.threads")
    assert pa.types.is_list(threads.type)
    assert threads.nullable is False
    assert threads.type.value_field.nullable is False
    assert [f.name for f in threads.type.value_type] == [
        f.name for f in dataclasses.fields(ThreadReport)
    ]
    frames = _field(schema, "report.threads.frames")
    assert [f.name for f in frames.type.value_type] == [
        "kind",
        "function",
        "file",
        "line",
        "qualname",
        "column",
        "end_line",
        "end_column",
        "locals",
        "address",
        "library",
        "inlined",
        "hidden",
        "by_frame_pointer",
    ]
    # --locals: a nullable list (None when not asked for) of (name, kind, value).
    variables = _field(schema, "report.threads.frames.locals")
    assert variables.nullable is True and pa.types.is_list(variables.type)
    assert [(f.name, f.type, f.nullable) for f in variables.type.value_type] == [
        ("name", pa.string(), False),
        ("kind", pa.string(), False),
        ("value", pa.string(), False),
    ]
    address = _field(schema, "report.threads.frames.address")
    assert (address.type, address.nullable) == (pa.uint64(), True)  # --native return addresses
    # Optional structs are nullable structs; their own fields keep their nullability.
    signal = _field(schema, "report.signal")
    assert pa.types.is_struct(signal.type)
    assert signal.nullable is True
    assert _field(schema, "report.signal.number").nullable is False
    extra = _field(schema, "collection.extra").type
    assert extra.key_type == pa.string()
    assert extra.item_field == pa.field("value", pa.string(), nullable=False)


def test_field_docstrings_are_metadata(pa):
    from triage.pipeline.schema import arrow_schema

    schema = arrow_schema()
    assert _field(schema, "sweep_date").metadata == {
        b"description": b"YYYY-MM-DD of the sweep (a partition key)."
    }
    assert _field(schema, "report.threads.frames.column").metadata == {
        b"description": b"0-based start column (3.11+), as CPython records it."
    }
    assert _field(schema, "report.threads.tid").metadata == {
        b"description": b"Kernel thread id (as in NT_PRSTATUS); None when it could not be told."
    }
    assert (
        _field(schema, "collection.extra")
        .metadata[b"description"]
        .startswith(b"Any other collector metadata")
    )
    # Fields without a docstring carry no metadata.
    assert _field(schema, "sweep_id").metadata is None
    assert _field(schema, "report.threads.frames.line").metadata is None


@dataclasses.dataclass
class _ToyLeaf:
    tag: Literal["a", "b"]
    """The tag."""
    weight: float | None = None


@dataclasses.dataclass
class _ToyRoot:
    name: str
    flag: bool
    count: int
    address: Annotated[int, "arrow:uint64"]
    maybe_address: Annotated[int, "arrow:uint64"] | None
    leaves: list[_ToyLeaf]
    grid: list[list[int | None]]
    labels: dict[str, str]
    leaf: _ToyLeaf | None = None


def test_derivation_rules_on_other_dataclasses(pa):
    from triage.pipeline.schema import arrow_fields

    leaf = pa.struct(
        [pa.field("tag", pa.string(), nullable=False), pa.field("weight", pa.float64())]
    )
    assert pa.schema(arrow_fields(_ToyRoot)) == pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("flag", pa.bool_(), nullable=False),
            pa.field("count", pa.int64(), nullable=False),
            pa.field("address", pa.uint64(), nullable=False),
            pa.field("maybe_address", pa.uint64(), nullable=True),
            pa.field("leaves", pa.list_(pa.field("item", leaf, nullable=False)), nullable=False),
            pa.field(
                "grid",
                pa.list_(pa.field("item", pa.list_(pa.int64()), nullable=False)),
                nullable=False,
            ),
            pa.field(
                "labels",
                pa.map_(pa.string(), pa.field("value", pa.string(), nullable=False)),
                nullable=False,
            ),
            pa.field("leaf", leaf, nullable=True),
        ]
    )


@dataclasses.dataclass
class _BadUnion:
    value: int | str


@dataclasses.dataclass
class _BadKey:
    value: dict[int, str]


@dataclasses.dataclass
class _BadArrowName:
    value: Annotated[int, "arrow:no_such_type"]


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_BadUnion, "_BadUnion.value: a union other than `X | None` has no Arrow type"),
        (_BadKey, "_BadKey.value: map keys must be str"),
        (_BadArrowName, "_BadArrowName.value: 'arrow:no_such_type' names no Arrow type"),
    ],
)
def test_unsupported_hints_are_refused(pa, cls, message):
    from triage.pipeline.schema import arrow_fields

    with pytest.raises(TypeError) as caught:
        arrow_fields(cls)
    assert str(caught.value).startswith(message)


# --------------------------------------------------------------------------------------------
# round trip


def _record() -> SweepRecord:
    """A record with every kind of value: nested lists of structs, nulls, a map, unicode."""
    report = CoreReport(
        core=CoreFileInfo(
            path="s3://cores/web/core.zst", size=1234, compression="zstd", uncompressed_size=98765
        ),
        triage_version="0.1.0",
        executable="/usr/bin/python3.12",
        executable_source="core",
        python_version="3.12.1",
        python_binary="/usr/lib/libpython3.12.so.1.0",
        process=ProcessInfo(
            pid=4242,
            ppid=1,
            sid=4242,
            pgrp=4242,
            uid=1000,
            gid=1000,
            state="R",
            zombie=False,
            nice=-5,
            executable="python3.12",
            arguments="python3.12 -m web --port 80",
            flags=4194560,
        ),
        signal=SignalInfo(
            number=11,
            name="SIGSEGV",
            code=1,
            origin="crash",
            description="The process died due a segmentation fault accessing address: 0x10",
            fault_address=0x10,
        ),
        threads=[
            ThreadReport(
                tid=4242,
                crashed=True,
                name="MainThread",
                interpreter_id=0,
                python=True,
                holds_gil=True,
                status=["Has the GIL"],
                frames=[
                    FrameReport(
                        kind="python",
                        function="<module>",
                        file="/srv/web/main.py",
                        line=10,
                        qualname="<module>",
                        column=0,
                        end_line=10,
                        end_column=12,
                    ),
                    FrameReport(
                        kind="python",
                        function="handle",
                        file="/srv/web/ünïcode.py",
                        line=99,
                        qualname="Handler.handle",
                        column=8,
                        end_line=101,
                        end_column=3,
                    ),
                    FrameReport(kind="native", function="???", file="libc.so.6"),
                ],
            ),
            ThreadReport(tid=4243, name=None, python=False),
            ThreadReport(
                tid=None,
                interpreter_id=1,
                python=True,
                gc_collecting=True,
                status=["Thread terminated", "Garbage collecting"],
                frames=[FrameReport(kind="python", function="f", file="<string>", line=None)],
            ),
        ],
        libraries=[
            LibraryReport(
                path="/usr/lib/libpython3.12.so.1.0",
                start=0x7F0000000000,
                found_path="/usr/lib/libpython3.12.so.1.0",
                build_id="ab" * 20,
                found_build_id="ab" * 20,
                build_id_matches=True,
            ),
            LibraryReport(path="/lib/libgone.so", start=0x7F1000000000),
        ],
        library_search_path=["/sysroot/lib", "/sysroot/usr/lib"],
        missing_libraries=["/lib/libgone.so"],
        warnings=["one", "two"],
        analysis_seconds=0.125,
    )
    return SweepRecord(
        core_id="c0ffee",
        sweep_id="sweep-20261125",
        sweep_date="2026-11-25",
        fleet="web",
        status="ok",
        collection=Collection(
            source_url="s3://cores/web/core.zst",
            fleet="web",
            host="web-1",
            comm="python3.12",
            uid=1000,
            pid=4242,
            signal=11,
            timestamp="2026-11-25T01:02:03Z",
            size=1234,
            etag='"d41d8cd98f00b204e9800998ecf8427e"',
            extra={"COREDUMP_UNIT": "web.service", "note": "ünïcode ✓", "empty": ""},
        ),
        report=report,
        analysis_seconds=0.25,
        worker="tcp://127.0.0.1:40000",
    )


def _error_record() -> SweepRecord:
    return SweepRecord(
        core_id="bad",
        sweep_id="sweep-20261125",
        sweep_date="2026-11-25",
        fleet="web",
        status="not_elf",
        collection=Collection(source_url="/var/crash/notacore"),
        report=CoreReport(
            core=CoreFileInfo(path="/var/crash/notacore", size=5),
            error=ErrorInfo(kind="not_elf", message="not an ELF core"),
        ),
        error_message="not an ELF core",
    )


def test_round_trip_through_arrow_is_exact(pa):
    from triage.pipeline.schema import arrow_schema, from_arrow_row, to_arrow

    records = [_record(), _error_record()]
    table = to_arrow(records)
    assert table.schema == arrow_schema()
    assert table.num_rows == 2
    table.validate(full=True)
    # The nested values as Arrow holds them.
    threads = table.column("report").combine_chunks().field("threads").to_pylist()
    assert [[t["tid"] for t in row] for row in threads] == [[4242, 4243, None], []]
    assert [[[f["line"] for f in t["frames"]] for t in row] for row in threads] == [
        [[10, 99, None], [], [None]],
        [],
    ]
    assert table.column("status").to_pylist() == ["ok", "not_elf"]
    back = [from_arrow_row(row) for row in table.to_pylist()]
    assert back == records
    assert back[0].collection.extra == {
        "COREDUMP_UNIT": "web.service",
        "note": "ünïcode ✓",
        "empty": "",
    }
    assert back[0].report.threads[0].frames[1].file == "/srv/web/ünïcode.py"


def test_round_trip_through_parquet_is_exact(pa):
    pq = pytest.importorskip("pyarrow.parquet")
    from triage.pipeline.schema import arrow_schema, from_arrow_row, to_arrow

    records = [_error_record(), _record()]
    buffer = io.BytesIO()
    pq.write_table(to_arrow(records), buffer)
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert table.schema.remove_metadata() == arrow_schema().remove_metadata()
    assert [from_arrow_row(row) for row in table.to_pylist()] == records


def _real_record(case) -> SweepRecord:
    """The row of a real core's report (analysed here, in-process)."""
    import triage

    report = triage.analyze_core(case.path)
    assert report.error is None and report.signature is not None
    return SweepRecord(
        core_id="real",
        sweep_id="s1",
        sweep_date="2026-11-25",
        fleet="default",
        status="ok",
        collection=Collection(source_url=case.path, size=report.core.size),
        report=report,
    )


def test_round_trip_of_a_real_report(pa, cores, preferred_interp):
    from triage.pipeline.schema import from_arrow_row, to_arrow

    case = cores.gcore(preferred_interp, threads=1)
    record = _real_record(case)
    (row,) = to_arrow([record]).to_pylist()
    assert [t["tid"] for t in row["report"]["threads"]] == case.tids
    assert from_arrow_row(row) == record


def test_from_arrow_row_refuses_unknown_columns(pa):
    from pydantic import ValidationError

    from triage.pipeline.schema import from_arrow_row, to_arrow

    (row,) = to_arrow([_error_record()]).to_pylist()
    row["surprise"] = 1
    with pytest.raises(ValidationError):
        from_arrow_row(row)


def test_fault_address_above_2_63_fits(pa):
    """si_addr is unsigned 64-bit: a kernel-space fault address must survive Arrow."""
    from triage.pipeline.schema import from_arrow_row, to_arrow

    record = _record()
    record.report.signal.fault_address = 0xFFFFFFFFFF600000  # the vsyscall page
    (row,) = to_arrow([record]).to_pylist()
    assert from_arrow_row(row) == record


def test_plain_rows_are_what_pydantic_dumps(cores, preferred_interp):
    """Sweep rows are built with `report.to_plain` (no pydantic in the analysis children and
    workers); they must be exactly pydantic's JSON-mode dump of the same records."""
    from triage.report import adapter, to_plain

    real = _real_record(cores.gcore(preferred_interp, threads=2))
    report = real.report
    dump = adapter(SweepRecord).dump_python
    for record in (_record(), _error_record(), real):
        plain = to_plain(record)
        assert plain == dump(record, mode="json")
        assert list(plain) == list(dump(record, mode="json"))  # field order too
    assert to_plain(report) == adapter().dump_python(report, mode="json")
