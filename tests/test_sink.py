"""ParquetSink: real reports written locally and to S3 (moto's server), read back by pyarrow and
by DuckDB, with the hidden temporary names both readers must skip."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed")
ds = pytest.importorskip("pyarrow.dataset", reason="pyarrow is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed")
pytest.importorskip("fsspec", reason="fsspec is not installed")

import triage  # noqa: E402
from triage.pipeline.schema import record_to_dict  # noqa: E402
from triage.pipeline.sink import ParquetSink, existing_ids, read_records  # noqa: E402
from triage.report import Collection, SweepRecord  # noqa: E402

SWEEP = "sweep-20261125T0200Z"
DAY, DAY_BEFORE = "2026-11-25", "2026-11-24"

#: The five records' (core_id, fleet, sweep_date, status); the two "ok" ones are real gcores.
LAYOUT = [
    ("ok-new", "web", DAY, "ok"),
    ("ok-old", "batch", DAY, "ok"),
    ("err-notelf", "web", DAY, "not_elf"),
    ("err-empty", "batch", DAY_BEFORE, "empty_file"),
    ("err-missing", "web", DAY_BEFORE, "file_not_found"),
]

#: The files a sweep of LAYOUT writes with the default batch size, relative to the root.
LAYOUT_FILES = [
    f"fleet=batch/sweep_date={DAY_BEFORE}/part-{SWEEP}-0.parquet",
    f"fleet=batch/sweep_date={DAY}/part-{SWEEP}-0.parquet",
    f"fleet=web/sweep_date={DAY_BEFORE}/part-{SWEEP}-0.parquet",
    f"fleet=web/sweep_date={DAY}/part-{SWEEP}-0.parquet",
]

#: DuckDB must never try to download an extension here (no network but package registries).
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


@dataclass
class Sweep:
    records: list[SweepRecord]
    tids: dict[str, list[int]]  # core_id -> the tids of the live process (ok records only)
    main_frames: list[tuple[str, int]]  # (function, line) of the main thread, outermost first

    def by_id(self) -> dict[str, SweepRecord]:
        return {r.core_id: r for r in self.records}


def _record(core_id: str, fleet: str, date: str, path: str, **extra: Any) -> SweepRecord:
    report = triage.analyze_core(path)
    return SweepRecord(
        core_id=core_id,
        sweep_id=SWEEP,
        sweep_date=date,
        fleet=fleet,
        status=report.error.kind if report.error else "ok",
        collection=Collection(
            source_url=path,
            fleet=fleet,
            host="host-1",
            size=report.core.size,
            extra={k: str(v) for k, v in extra.items()},
        ),
        report=report,
        error_message=report.error.message if report.error else None,
        analysis_seconds=report.analysis_seconds,
        worker="tcp://127.0.0.1:1234",
    )


@pytest.fixture(scope="module")
def sweep(cores, interpreters, preferred_interp, tmp_path_factory) -> Sweep:
    """Five records: two real on-demand cores (two interpreters when there are two), and three
    real error reports (a text file, an empty file, a missing path)."""
    import corefactory

    older = [i for i in interpreters if i.version < preferred_interp.version]
    new_case = cores.gcore(preferred_interp, threads=1)
    old_case = cores.gcore(min(older, key=lambda i: i.version), threads=1) if older else new_case
    bad = tmp_path_factory.mktemp("bad-cores")
    (bad / "notacore").write_text("this is not a core\n")
    (bad / "empty.core").write_bytes(b"")
    records = [
        _record("ok-new", "web", DAY, new_case.path, COREDUMP_UNIT="web.service", pid=1),
        _record("ok-old", "batch", DAY, old_case.path),
        _record("err-notelf", "web", DAY, str(bad / "notacore")),
        _record("err-empty", "batch", DAY_BEFORE, str(bad / "empty.core")),
        _record("err-missing", "web", DAY_BEFORE, str(bad / "no-such-core")),
    ]
    assert [(r.core_id, r.fleet, r.sweep_date, r.status) for r in records] == LAYOUT
    main = [(function, line) for function, line, _ in corefactory.main_stack("sleep")]
    return Sweep(records, {"ok-new": new_case.tids, "ok-old": old_case.tids}, main)


def _write(url: str, records: list[SweepRecord], storage_options=None, batch_size=500):
    with ParquetSink(url, storage_options=storage_options, batch_size=batch_size) as sink:
        for record in records:
            sink.add(record)
    return sink


def _python_frames(thread: dict) -> list[tuple[str, int]]:
    return [(f["function"], f["line"]) for f in thread["frames"] if f["kind"] == "python"]


def _check_rows(rows: list[dict], sweep: Sweep) -> None:
    """Rows read back (dicts of the full record) hold exactly what was written."""
    expected = {r.core_id: record_to_dict(r) for r in sweep.records}
    assert sorted(row["core_id"] for row in rows) == sorted(expected)
    for row in rows:
        core_id = row["core_id"]
        want = expected[core_id]
        assert (row["fleet"], row["sweep_date"], row["status"]) == (
            want["fleet"],
            want["sweep_date"],
            want["status"],
        )
        assert row["error_message"] == want["error_message"]
        assert row["report"]["threads"] == want["report"]["threads"]
        if core_id in sweep.tids:
            threads = row["report"]["threads"]
            assert [t["tid"] for t in threads] == sweep.tids[core_id]
            assert _python_frames(threads[0]) == sweep.main_frames
            assert row["report"]["error"] is None
        else:
            assert row["report"]["threads"] == []
            assert row["report"]["error"]["kind"] == want["status"]


def _arrow_rows(table) -> list[dict]:
    return table.to_pylist(maps_as_pydicts="strict")


# --------------------------------------------------------------------------------------------
# DuckDB


def _duckdb(fs=None):
    con = duckdb.connect(config=DUCKDB_CONFIG)
    if fs is not None:
        # No httpfs here (see test_duckdb_has_no_httpfs): DuckDB reads s3:// through s3fs.
        con.register_filesystem(fs)
    return con


def _check_duckdb(con, glob: str, sweep: Sweep) -> None:
    """DuckDB's own hive reading of the dataset: exact rows, nested values and types."""
    source = f"read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
    assert con.sql(f"SELECT count(*) FROM {source}").fetchall() == [(5,)]
    summary = con.sql(
        f"SELECT core_id, fleet, sweep_date, status FROM {source} ORDER BY core_id"
    ).fetchall()
    assert summary == sorted(LAYOUT)
    everything = con.sql(f"SELECT * FROM {source}")
    names = everything.columns
    _check_rows([dict(zip(names, row, strict=True)) for row in everything.fetchall()], sweep)
    tids = con.sql(
        f"SELECT core_id, [t.tid FOR t IN report.threads] FROM {source} "
        "WHERE status = 'ok' ORDER BY core_id"
    ).fetchall()
    assert tids == [("ok-new", sweep.tids["ok-new"]), ("ok-old", sweep.tids["ok-old"])]
    lines = con.sql(
        f"SELECT [f.line FOR f IN report.threads[1].frames IF f.kind = 'python'] "
        f"FROM {source} WHERE core_id = 'ok-new'"
    ).fetchall()
    assert lines == [([line for _, line in sweep.main_frames],)]
    extra = con.sql(
        f"SELECT collection.extra['COREDUMP_UNIT'], collection.extra FROM {source} "
        "WHERE core_id = 'ok-new'"
    ).fetchall()
    assert extra == [("web.service", {"COREDUMP_UNIT": "web.service", "pid": "1"})]
    # DuckDB's default hive typing turns the date partition into a DATE.
    dates = con.sql(
        f"SELECT DISTINCT sweep_date FROM read_parquet('{glob}', hive_partitioning = true) "
        "ORDER BY 1"
    ).fetchall()
    assert dates == [(datetime.date(2026, 11, 24),), (datetime.date(2026, 11, 25),)]


def test_duckdb_has_no_httpfs():
    """Recorded fact of this machine: httpfs is not installed and cannot be fetched (its
    repository is no package registry), hence register_filesystem(s3fs) for S3 reads."""
    con = duckdb.connect(config=DUCKDB_CONFIG)
    installed = con.sql(
        "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
    ).fetchall()
    if installed == [(True,)]:
        pytest.skip("httpfs is installed here: DuckDB could also read s3:// natively")
    with pytest.raises(duckdb.Error):
        con.sql("LOAD httpfs").fetchall()


# --------------------------------------------------------------------------------------------
# local directory


def _relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_local_dataset_round_trip(sweep, tmp_path):
    root = tmp_path / "sweeps"
    sink = _write(str(root), sweep.records)
    assert sink.rows_written == 5
    # Nothing but the final files: no temporary name is left behind.
    assert _relative_files(root) == LAYOUT_FILES
    assert sorted(sink.files) == [f"{root}/{name}" for name in LAYOUT_FILES]
    assert [pq.read_metadata(root / name).num_rows for name in LAYOUT_FILES] == [1, 1, 1, 2]

    # pyarrow.dataset, plain hive discovery (no schema given).
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 5
    _check_rows(_arrow_rows(table), sweep)
    # The library's reader: validated SweepRecords equal to what went in.
    assert sorted(read_records(str(root)), key=lambda r: r.core_id) == sorted(
        sweep.records, key=lambda r: r.core_id
    )
    assert sorted(r.core_id for r in read_records(str(root), fleet="batch")) == [
        "err-empty",
        "ok-old",
    ]
    # DuckDB's own hive reader.
    _check_duckdb(_duckdb(), f"{root}/**/*.parquet", sweep)
    assert existing_ids(str(root)) == {core_id for core_id, *_ in LAYOUT}


def test_existing_ids_of_a_missing_or_empty_dataset(tmp_path):
    assert existing_ids(str(tmp_path / "nothing-here")) == set()
    assert read_records(str(tmp_path / "nothing-here")) == []
    (tmp_path / "empty").mkdir()
    assert existing_ids(str(tmp_path / "empty")) == set()


def test_batches_bound_the_files(sweep, tmp_path):
    base = sweep.records[0]
    records = [replace(base, core_id=f"core-{i}") for i in range(5)]
    root = tmp_path / "batched"
    sink = _write(str(root), records, batch_size=2)
    names = [f"fleet=web/sweep_date={DAY}/part-{SWEEP}-{n}.parquet" for n in range(3)]
    assert _relative_files(root) == names
    assert [pq.read_metadata(root / name).num_rows for name in names] == [2, 2, 1]
    assert [pq.read_table(root / name).column("core_id").to_pylist() for name in names] == [
        ["core-0", "core-1"],
        ["core-2", "core-3"],
        ["core-4"],
    ]
    assert sink.rows_written == 5
    assert existing_ids(str(root)) == {f"core-{i}" for i in range(5)}


def test_buffer_holds_at_most_batch_size_rows(sweep, tmp_path):
    """When batch_size rows are buffered, the largest partition is written."""
    base = sweep.records[2]
    fleets = ["a", "b", "a", "b", "a"]
    records = [replace(base, core_id=f"r{i}", fleet=f) for i, f in enumerate(fleets)]
    root = tmp_path / "interleaved"
    sink = ParquetSink(str(root), batch_size=3)
    written = []
    for record in records:
        sink.add(record)
        written.append(len(sink.files))
    assert written == [0, 0, 1, 1, 2]  # a:[r0, r2] at the 3rd add, b:[r1, r3] at the 5th
    sink.close()
    names = {
        f"fleet=a/sweep_date={DAY}/part-{SWEEP}-0.parquet": ["r0", "r2"],
        f"fleet=a/sweep_date={DAY}/part-{SWEEP}-1.parquet": ["r4"],
        f"fleet=b/sweep_date={DAY}/part-{SWEEP}-0.parquet": ["r1", "r3"],
    }
    assert _relative_files(root) == sorted(names)
    for name, ids in names.items():
        assert pq.read_table(root / name).column("core_id").to_pylist() == ids
    with pytest.raises(ValueError, match="closed"):
        sink.add(base)


def test_rerun_skips_known_ids_and_never_overwrites(sweep, tmp_path):
    root = str(tmp_path / "rerun")
    first, second = sweep.records[:3], sweep.records
    _write(root, first)
    known = existing_ids(root)
    assert known == {"ok-new", "ok-old", "err-notelf"}
    _write(root, [r for r in second if r.core_id not in known])
    # Same sweep id, same partitions: the rerun's files take the next part numbers.
    assert _relative_files(Path(root)) == sorted(
        [
            f"fleet=batch/sweep_date={DAY_BEFORE}/part-{SWEEP}-0.parquet",
            f"fleet=batch/sweep_date={DAY}/part-{SWEEP}-0.parquet",
            f"fleet=web/sweep_date={DAY_BEFORE}/part-{SWEEP}-0.parquet",
            f"fleet=web/sweep_date={DAY}/part-{SWEEP}-0.parquet",
        ]
    )
    _write(root, [replace(sweep.records[0], core_id="late")])
    assert (tmp_path / "rerun" / f"fleet=web/sweep_date={DAY}/part-{SWEEP}-1.parquet").exists()
    assert existing_ids(root) == {core_id for core_id, *_ in LAYOUT} | {"late"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fleet", "a/b", "fleet 'a/b' is not a valid partition value"),
        ("fleet", "", "fleet '' is not a valid partition value"),
        ("fleet", "web fleet", "fleet 'web fleet' is not a valid partition value"),
        ("sweep_date", "25/11/2026", "sweep_date '25/11/2026' is not YYYY-MM-DD"),
        ("sweep_id", "x y", "sweep_id 'x y' cannot be part of a file name"),
    ],
)
def test_bad_partition_values_are_refused(sweep, tmp_path, field, value, message):
    sink = ParquetSink(str(tmp_path / "refused"))
    with pytest.raises(ValueError) as caught:
        sink.add(replace(sweep.records[2], **{field: value}))
    assert str(caught.value).startswith(message)
    sink.close()
    assert not (tmp_path / "refused").exists()


# --------------------------------------------------------------------------------------------
# names readers skip


def _garbage_like_a_killed_writer(final_file: bytes) -> bytes:
    """The first half of a real Parquet file: what a writer killed mid-file leaves."""
    return final_file[: len(final_file) // 2]


def _arrow_read(root: Path) -> tuple[list[str], list[str] | str]:
    """pyarrow.dataset's file list of `root` and the core_ids it reads (or its error)."""
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    files = sorted(Path(f).name for f in dataset.files)
    try:
        return files, dataset.to_table().column("core_id").to_pylist()
    except pa.ArrowInvalid as error:
        return files, f"error: {error}"


def _duckdb_read(con, glob: str) -> tuple[list[str], list[str] | str]:
    """DuckDB's file list for `glob` and the core_ids read_parquet reads (or its error)."""
    files = sorted(Path(f).name for (f,) in con.sql(f"SELECT file FROM glob('{glob}')").fetchall())
    query = f"SELECT core_id FROM read_parquet('{glob}', hive_partitioning = true)"
    try:
        return files, [core_id for (core_id,) in con.sql(query).fetchall()]
    except duckdb.Error as error:
        return files, f"error: {error}"


def test_reader_ignore_rules(tmp_path):
    """What each reader skips, which is why the sink's temporary name is `.NAME.tmp`:
    pyarrow.dataset skips a `.` or `_` prefix whatever the suffix; DuckDB skips no prefix
    and reads whatever its `*.parquet` glob matches."""
    root = tmp_path / "ds"
    part = root / "fleet=web" / f"sweep_date={DAY}"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"core_id": ["good"]}), part / "part-s-0.parquet")
    complete = (part / "part-s-0.parquet").read_bytes()
    con = _duckdb()
    glob = f"{root}/**/*.parquet"
    good = ["part-s-0.parquet"]
    assert _arrow_read(root) == (good, ["good"])
    assert _duckdb_read(con, glob) == (good, ["good"])
    sink_name = f".part-{SWEEP}-1.0123abcd.tmp"  # the sink's temporary name
    for name in ["_underscore.parquet", ".dot.parquet", "part-s-1.parquet.tmp", sink_name]:
        (part / name).write_bytes(_garbage_like_a_killed_writer(complete))
        arrow_files, arrow_rows = _arrow_read(root)
        duck_files, duck_rows = _duckdb_read(con, glob)
        (part / name).unlink()
        if name.startswith(("_", ".")):
            assert (arrow_files, arrow_rows) == (good, ["good"]), name
        else:  # pyarrow reads a file of any suffix, and fails on the broken one
            assert arrow_files == sorted([*good, name]), name
            assert arrow_rows.startswith("error: "), name
        if name.endswith(".parquet"):  # DuckDB reads it whatever its prefix, and fails
            assert duck_files == sorted([*good, name]), name
            assert duck_rows.startswith("error: "), name
        else:
            assert (duck_files, duck_rows) == (good, ["good"]), name


def test_partial_file_is_ignored_locally(sweep, tmp_path):
    root = tmp_path / "partial"
    sink = _write(str(root), sweep.records)
    complete = (root / LAYOUT_FILES[-1]).read_bytes()
    leftover = root / f"fleet=web/sweep_date={DAY}/.part-{SWEEP}-1.5f3c9e.tmp"
    leftover.write_bytes(_garbage_like_a_killed_writer(complete))
    with pytest.raises(pa.ArrowInvalid):  # it really is a broken Parquet file
        pq.read_table(leftover)

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 5
    _check_rows(_arrow_rows(table), sweep)
    _check_duckdb(_duckdb(), f"{root}/**/*.parquet", sweep)
    assert existing_ids(str(root)) == {core_id for core_id, *_ in LAYOUT}
    assert len(read_records(str(root))) == 5
    # A new sink's part numbers ignore the leftover too.
    assert sink.files[-1].endswith(f"part-{SWEEP}-0.parquet")
    later = _write(str(root), [replace(sweep.records[0], core_id="later")])
    assert later.files == [f"{root}/fleet=web/sweep_date={DAY}/part-{SWEEP}-1.parquet"]


# --------------------------------------------------------------------------------------------
# S3 (moto's server on 127.0.0.1)


@dataclass
class S3:
    endpoint: str
    options: dict

    @property
    def fs(self):
        import fsspec

        return fsspec.filesystem("s3", **self.options)

    def new_bucket(self) -> str:
        name = f"sweeps-{uuid.uuid4().hex[:12]}"
        self.fs.call_s3("create_bucket", Bucket=name)
        self.fs.invalidate_cache()
        return name


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install s3fs)")
    moto_server = pytest.importorskip(
        "moto.server", reason="moto's server is not installed (pip install 'moto[server]')"
    )
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            options = {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
            yield S3(endpoint, options)
        finally:
            server.stop()


def test_s3_dataset_round_trip(sweep, s3):
    bucket = s3.new_bucket()
    url = f"s3://{bucket}/sweeps"
    sink = _write(url, sweep.records, storage_options=s3.options)
    assert sink.rows_written == 5
    fs = s3.fs
    fs.invalidate_cache()
    assert sorted(fs.find(f"{bucket}")) == [f"{bucket}/sweeps/{name}" for name in LAYOUT_FILES]

    # pyarrow.dataset over s3fs, plain hive discovery.
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    dataset = ds.dataset(
        f"{bucket}/sweeps",
        format="parquet",
        partitioning="hive",
        filesystem=PyFileSystem(FSSpecHandler(fs)),
    )
    table = dataset.to_table()
    assert table.num_rows == 5
    _check_rows(_arrow_rows(table), sweep)
    assert sorted(read_records(url, s3.options), key=lambda r: r.core_id) == sorted(
        sweep.records, key=lambda r: r.core_id
    )
    assert existing_ids(url, s3.options) == {core_id for core_id, *_ in LAYOUT}
    assert existing_ids(f"s3://{bucket}/elsewhere", s3.options) == set()

    # DuckDB: its own glob, hive and Parquet reading, through s3fs.
    _check_duckdb(_duckdb(fs), f"s3://{bucket}/sweeps/**/*.parquet", sweep)
    # DuckDB over the pyarrow dataset object.
    con = _duckdb()
    con.register("sweep", dataset)
    assert con.sql("SELECT count(*) FROM sweep").fetchall() == [(5,)]
    assert con.sql(
        "SELECT core_id, fleet, sweep_date, status FROM sweep ORDER BY core_id"
    ).fetchall() == sorted(LAYOUT)


def test_s3_batches_and_partial_file(sweep, s3):
    bucket = s3.new_bucket()
    url = f"s3://{bucket}/sweeps"
    base = sweep.records[0]
    records = [replace(base, core_id=f"core-{i}") for i in range(5)]
    sink = _write(url, records, storage_options=s3.options, batch_size=2)
    prefix = f"{bucket}/sweeps/fleet=web/sweep_date={DAY}"
    names = [f"{prefix}/part-{SWEEP}-{n}.parquet" for n in range(3)]
    assert sink.files == names
    fs = s3.fs
    fs.invalidate_cache()
    assert sorted(fs.find(bucket)) == names
    # A writer killed before its rename: half a Parquet file under the temporary name.
    fs.pipe(f"{prefix}/.part-{SWEEP}-3.77aa00.tmp", _garbage_like_a_killed_writer(fs.cat(names[0])))
    fs.invalidate_cache()
    assert len(fs.find(bucket)) == 4

    from pyarrow.fs import FSSpecHandler, PyFileSystem

    dataset = ds.dataset(
        f"{bucket}/sweeps",
        format="parquet",
        partitioning="hive",
        filesystem=PyFileSystem(FSSpecHandler(fs)),
    )
    assert sorted(dataset.to_table().column("core_id").to_pylist()) == [
        f"core-{i}" for i in range(5)
    ]
    rows_per_file = []
    for name in names:
        with fs.open(name, "rb") as stream:
            rows_per_file.append(pq.read_metadata(stream).num_rows)
    assert rows_per_file == [2, 2, 1]
    assert existing_ids(url, s3.options) == {f"core-{i}" for i in range(5)}
    con = _duckdb(fs)
    rows = con.sql(
        f"SELECT core_id, [t.tid FOR t IN report.threads] FROM "
        f"read_parquet('s3://{bucket}/sweeps/**/*.parquet', hive_partitioning = true) "
        "ORDER BY core_id"
    ).fetchall()
    assert rows == [(f"core-{i}", sweep.tids["ok-new"]) for i in range(5)]


def test_s3_missing_bucket_is_an_error_not_created(sweep, s3):
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    sink = ParquetSink(f"s3://{bucket}/sweeps", storage_options=s3.options)
    sink.add(sweep.records[2])
    with pytest.raises(FileNotFoundError):
        sink.close()
    fs = s3.fs
    fs.invalidate_cache()
    assert not fs.exists(bucket)
    assert existing_ids(f"s3://{bucket}/sweeps", s3.options) == set()


def test_every_fleet_name_the_config_allows_is_a_partition(sweep, tmp_path):
    from triage.pipeline.config import Fleet

    root = tmp_path / "names"
    names = ["_canary", ".hidden", "..", "a.b-c_d", "0"]
    records = [
        replace(sweep.records[2], core_id=name, fleet=Fleet(name=name).name) for name in names
    ]
    _write(str(root), records)
    assert _relative_files(root) == sorted(
        f"fleet={name}/sweep_date={DAY}/part-{SWEEP}-0.parquet" for name in names
    )
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    pairs = [(row["core_id"], row["fleet"]) for row in table.to_pylist()]
    assert sorted(pairs) == sorted((name, name) for name in names)
    assert existing_ids(str(root)) == set(names)
    con = _duckdb()
    rows = con.sql(
        f"SELECT core_id, fleet FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert sorted(rows) == sorted((name, name) for name in names)


def _without(field: Any, path: list[str]) -> Any:
    """`field` with the (possibly nested, through lists) member at `path` removed."""
    kind = field.type
    if pa.types.is_list(kind):
        return field.with_type(pa.list_(_without(kind.value_field, path)))
    members = [kind.field(i) for i in range(kind.num_fields)]
    kept = [
        member if member.name != path[0] else _without(member, path[1:])
        for member in members
        if not (member.name == path[0] and len(path) == 1)
    ]
    return field.with_type(pa.struct(kept))


def test_files_of_an_older_schema_still_read(sweep, tmp_path):
    """A dataset outlives triage versions: a file written before a column (here `worker`) and
    a nested field (each frame's `column`) were added reads beside new files, with nulls
    for what it lacks, in every reader: the rerun check, the records, DuckDB's groups."""
    from triage.pipeline.groups import compute_groups
    from triage.pipeline.schema import arrow_schema

    root = tmp_path / "dataset"
    new, old = sweep.records[:3], [replace(r, sweep_id="sweep-old") for r in sweep.records[3:]]
    old += [replace(sweep.records[0], core_id="ok-old-schema", sweep_id="sweep-old")]
    _write(str(root), new)
    schema = pa.schema(
        [
            _without(f, ["threads", "frames", "column"]) if f.name == "report" else f
            for f in arrow_schema()
            if f.name != "worker"
        ]
    )
    rows = [record_to_dict(r) for r in old]
    for row in rows:
        del row["worker"]
        for thread in row["report"]["threads"]:
            for frame in thread["frames"]:
                del frame["column"]
    directory = root / "fleet=web" / f"sweep_date={DAY}"
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schema), directory / "part-sweep-old-0.parquet"
    )

    everything = [*new, *old]
    assert existing_ids(str(root)) == {r.core_id for r in everything}
    back = {(r.core_id, r.sweep_id): r for r in read_records(str(root))}
    assert set(back) == {(r.core_id, r.sweep_id) for r in everything}
    for record in new:
        assert back[record.core_id, record.sweep_id] == record
    aged = back["ok-old-schema", "sweep-old"]
    assert aged.worker is None
    frames = [f for t in aged.report.threads for f in t.frames]
    assert frames and all(f.column is None for f in frames)
    original = sweep.records[0]
    assert [(f.function, f.line) for t in aged.report.threads for f in t.frames] == [
        (f.function, f.line) for t in original.report.threads for f in t.frames
    ]
    groups = compute_groups(str(root))
    assert sum(g.cores for g in groups.groups) == len(
        {r.core_id for r in everything if r.report.signature}
    )
