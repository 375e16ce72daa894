"""`triage sweep` end to end: real cores in a real S3 endpoint (moto's server on 127.0.0.1) and in
local directories, analysed by the real CLI on an embedded Dask cluster and on a real
`dask scheduler` with two `dask worker` processes, written to Parquet locally and to S3, and
read back by pyarrow and by DuckDB.

The corpus (module fixture `fleets`): s3://BUCKET/fleet-a/ and s3://BUCKET/fleet-b/ (BUCKET
is crashes-<random>), each with a core of a RELOCATED interpreter (a copy of 3.12 for fleet-a,
of 3.8 for fleet-b: run from the copy, dumped with gcore, then the copy moved away) that only
its own fleet's `lib_search_root` resolves, next to cores of installed interpreters (3.8,
3.12, 2.7, 3.13), in plain, gzip and zstd forms.

Nothing is mocked; everything is driven through `python -m triage sweep` in a subprocess.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyarrow", reason="pyarrow is not installed")
duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed")
pytest.importorskip("distributed", reason="dask.distributed is not installed")
psutil = pytest.importorskip("psutil", reason="psutil is not installed")

import corefactory  # noqa: E402
from corefactory import CoreCase, CoreUnavailable, Interpreter  # noqa: E402
from s3server import (  # noqa: E402
    S3Server,
    closed_port,
    moto_s3,
    subprocess_env,
    toml_value,
    unique_bucket,
)

from triage.pipeline.sink import open_dataset, read_records  # noqa: E402
from triage.report import SweepRecord  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"
#: The corpus's bucket and the output's (moto's buckets are process-wide: unique names).
BUCKET = unique_bucket("crashes")
OUT_BUCKET = unique_bucket("analytics")

#: DuckDB must never try to download an extension here.
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

#: Every line a sweep writes to stderr (not a terminal) is one of these.
SUMMARY = re.compile(
    r"triage: sweep (?P<id>\S+) done: (?P<analysed>\d+) analysed \((?P<ok>\d+) ok, "
    r"(?P<failed>\d+) failed(?:: (?P<kinds>[^)]*))?\), (?P<skipped>\d+) skipped as already "
    r"analysed, \d+\.\d s, \d+\.\d\d cores/s"
)
START = re.compile(
    r"triage: sweep (?P<id>\S+): (?P<todo>\d+) cores to analyse(?: \((?P<retried>\d+) of "
    r"them failed before and are retried; --keep-failed keeps them\))?, (?P<done>\d+) "
    r"already in (?P<dataset>.+)"
)
PROGRESS = re.compile(
    r"triage: (?P<done>\d+)/(?P<total>\d+) analysed, (?P<errors>\d+) errors, "
    r"\d+\.\d cores/s, ETA \d+ s"
)
DASHBOARD = re.compile(r"triage: Dask dashboard: http://\S+")
SWEEP_ID = re.compile(r"(\d{4})(\d{2})(\d{2})T\d{6}\.\d{6}Z-[0-9a-f]{6}")


# --------------------------------------------------------------------------------------------
# Running the CLI


@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()

    def summary(self, strict: bool = True) -> re.Match[str]:
        """The closing summary; `strict`: every stderr line is one of the sweep's own."""
        assert self.rc == 0, self.describe()
        assert "Traceback" not in self.err, self.describe()
        if strict:
            assert self.foreign_lines() == [], self.describe()
        ours = [line for line in self.lines if line not in self.foreign_lines()]
        start, match = START.fullmatch(ours[0]), SUMMARY.fullmatch(ours[-1])
        assert start and match, self.describe()
        assert start["id"] == match["id"]
        total = int(match["analysed"])
        assert PROGRESS.fullmatch(ours[-2])[0].startswith(f"triage: {total}/{total} ")
        return match

    def foreign_lines(self) -> list[str]:
        """stderr lines that are not the sweep's own (log lines of libraries, say)."""
        ours = (START, PROGRESS, DASHBOARD, SUMMARY)
        return [line for line in self.lines if not any(p.fullmatch(line) for p in ours)]

    def describe(self) -> str:
        command = " ".join(self.args)
        return f"`triage {command}` exit {self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def sweep_env(scheduler: str | None = None) -> dict[str, str]:
    env = subprocess_env()
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "DASK_SCHEDULER_ADDRESS"):
        env.pop(name, None)
    if scheduler is not None:
        env["DASK_SCHEDULER_ADDRESS"] = scheduler
    return env


def triage_sweep(*args: str | Path, scheduler_env: str | None = None, timeout: float = 180) -> Run:
    argv = ["sweep", *map(str, args)]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "triage", *argv],
        capture_output=True,
        text=True,
        env=sweep_env(scheduler_env),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def sweep_date(sweep_id: str) -> str:
    match = SWEEP_ID.fullmatch(sweep_id)
    assert match, sweep_id
    return "-".join(match.groups())


def write_config(
    path: Path,
    *,
    sources: list[str] | None = None,
    output: str | None = None,
    batch_size: int | None = None,
    execution: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    fleets: Sequence[dict[str, Any]] = (),
) -> Path:
    """A pipeline configuration TOML file."""
    text = []
    if sources is not None:
        text.append(f"sources = {toml_value(sources)}\n")
    if output is not None:
        text.append(f"[output]\ndataset = {toml_value(output)}\n")
        if batch_size is not None:
            text.append(f"batch_size = {batch_size}\n")
    if execution:
        text.append(
            "[execution]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in execution.items())
        )
    if storage_options:
        text.append(
            "[storage_options]\n"
            + "".join(f"{k} = {toml_value(v)}\n" for k, v in storage_options.items())
        )
    for fleet in fleets:
        text.append("[[fleets]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fleet.items()))
    path.write_text("\n".join(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Reading a dataset back


def records(url: str, options: dict[str, Any] | None = None) -> list[SweepRecord]:
    return sorted(read_records(url, options), key=lambda r: (r.core_id, r.sweep_id))


def dataset_files(root: Path) -> list[str]:
    """Every file under a local dataset, relative, sorted (hidden names included)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def parquet_count(root: Path) -> int:
    return len(list(root.rglob("*.parquet")))


def duckdb_connect(fs: Any = None) -> Any:
    con = duckdb.connect(config=DUCKDB_CONFIG)
    if fs is not None:
        con.register_filesystem(fs)  # no httpfs here: DuckDB reads s3:// through s3fs
    return con


def duckdb_source(glob: str) -> str:
    return f"read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"


def python_frames(thread: Any) -> list[tuple[str, int | None]]:
    return [(f.function, f.line) for f in thread.frames if f.kind == "python"]


def all_frames(record: SweepRecord) -> list[tuple[int | None, list[tuple[Any, ...]]]]:
    """Every thread's tid and every frame (kind, function, file, line) of a record."""
    return [
        (t.tid, [(f.kind, f.function, f.file, f.line, f.qualname) for f in t.frames])
        for t in record.report.threads
    ]


def s3_core_id(url: str, etag: str) -> str:
    """The documented identity of an object with an etag: sha256(url + "\\n" + etag)[:32]."""
    return hashlib.sha256(f"{url}\n{etag}".encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# The corpus


@dataclass
class Relocation:
    original: Path  # where the copy ran from (no longer exists)
    moved: Path  # where it is now: the fleet's sysroot

    def libpython(self, case: CoreCase) -> tuple[str, str]:
        """(libpython path in the core, the same file under the sysroot)."""
        original = case.interpreter.libpython
        assert original is not None and original.startswith(str(self.original) + "/")
        return original, str(self.moved / os.path.relpath(original, self.original))


@dataclass
class Core:
    key: str
    case: CoreCase
    fleet: str
    compression: str
    relocation: Relocation | None = None
    url: str = ""
    size: int = 0
    etag: str = ""

    @property
    def core_id(self) -> str:
        return s3_core_id(self.url, self.etag)

    @property
    def python_version(self) -> str:
        return "{}.{}.{}".format(*self.case.interpreter.version)


@dataclass
class Fleets:
    s3: S3Server
    cores: list[Core]
    roots: dict[str, str]  # fleet name -> its sysroot
    base: Path

    def by_id(self) -> dict[str, Core]:
        return {core.core_id: core for core in self.cores}

    def fleet_specs(self, roots: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The two [[fleets]] tables, with `roots` (fleet -> root) as their search roots."""
        specs = []
        for name in ("fleet-a", "fleet-b"):
            spec: dict[str, Any] = {"name": name, "match": [f"s3://{BUCKET}/{name}/*"]}
            if roots and name in roots:
                spec["lib_search_root"] = [roots[name]]
            specs.append(spec)
        return specs

    def config(self, name: str, output: str | None, roots: dict[str, str] | None = None) -> Path:
        return write_config(
            self.base / name,
            sources=[f"s3://{BUCKET}/fleet-a/", f"s3://{BUCKET}/fleet-b/"],
            output=output,
            execution={"workers": 2, "time_limit": 120},
            storage_options=self.s3.options,
            fleets=self.fleet_specs(roots),
        )


def _need(interpreters: list[Interpreter], major: int, minor: int) -> Interpreter:
    interp = corefactory.preferred_interpreter(interpreters, [(major, minor)])
    if interp is None:
        pytest.skip(f"no shared-build Python {major}.{minor} on this machine")
    return interp


def _relocated_core(interp: Interpreter, base: Path, name: str) -> tuple[CoreCase, Relocation]:
    original, moved = base / f"{name}-python", base / f"{name}-sysroot"
    copy = corefactory.relocate_interpreter(interp, original)
    try:
        case = corefactory.make_gcore(copy, base / f"{name}-cores", threads=1)
    except CoreUnavailable as exc:
        pytest.skip(str(exc))
    os.rename(original, moved)
    return case, Relocation(original, moved)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def fleets(s3, cores, interpreters, tmp_path_factory) -> Iterator[Fleets]:
    """Six cores in s3://crashes/fleet-{a,b}/ (see the module doc) and an output bucket."""
    py38, py312 = _need(interpreters, 3, 8), _need(interpreters, 3, 12)
    extra = [corefactory.preferred_interpreter(interpreters, [v]) for v in [(2, 7), (3, 13)]]
    extra = [i for i in extra if i is not None]
    if not extra:
        pytest.skip("neither a shared-build Python 2.7 nor 3.13 on this machine")
    py27, py313 = (extra * 2)[:2] if len(extra) == 1 else extra
    base = tmp_path_factory.mktemp("sweep-fleets")
    reloc_a_case, reloc_a = _relocated_core(py312, base, "fleet-a")
    reloc_b_case, reloc_b = _relocated_core(py38, base, "fleet-b")
    corpus = [
        Core("fleet-a/web-1/core.relocated", reloc_a_case, "fleet-a", "none", reloc_a),
        Core("fleet-a/web-2/core.new.zst", cores.gcore(py313, threads=1), "fleet-a", "zstd"),
        Core("fleet-a/core.old.gz", cores.gcore(py38, threads=1), "fleet-a", "gzip"),
        Core("fleet-b/core.relocated.gz", reloc_b_case, "fleet-b", "gzip", reloc_b),
        Core("fleet-b/etl/core.legacy.zst", cores.gcore(py27, threads=1), "fleet-b", "zstd"),
        Core("fleet-b/core.plain", cores.gcore(py312, threads=1), "fleet-b", "none"),
    ]
    s3.create_bucket(BUCKET)
    s3.create_bucket(OUT_BUCKET)
    packed = base / "packed"
    packed.mkdir()
    for n, core in enumerate(corpus):
        path = core.case.path
        if core.compression != "none":
            suffix = corefactory.COMPRESSION_SUFFIXES[core.compression]
            path = corefactory.compress(path, core.compression, packed / f"{n}{suffix}")
        info = s3.put(BUCKET, core.key, path)
        core.url, core.size, core.etag = info["url"], info["size"], info["etag"]
    roots = {"fleet-a": str(reloc_a.moved), "fleet-b": str(reloc_b.moved)}
    yield Fleets(s3, sorted(corpus, key=lambda c: c.url), roots, base)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class FleetRuns:
    """The two embedded-cluster sweeps every fleet test reads."""

    with_roots: Run  # to s3://analytics/sweeps
    with_roots_url: str
    without_roots: Run  # to a local directory
    without_roots_dir: Path
    rows: list[SweepRecord]  # of with_roots
    rows_without: list[SweepRecord]


@pytest.fixture(scope="module")
def fleet_runs(fleets: Fleets) -> FleetRuns:
    url = f"s3://{OUT_BUCKET}/sweeps"
    with_roots = triage_sweep("--config", fleets.config("roots.toml", url, fleets.roots))
    local = fleets.base / "no-roots-dataset"
    without = triage_sweep("--config", fleets.config("no-roots.toml", str(local)))
    return FleetRuns(
        with_roots,
        url,
        without,
        local,
        records(url, fleets.s3.options),
        records(str(local)),
    )


def check_ok_row(record: SweepRecord, core: Core, sweep_id: str) -> None:
    """A row of a fully analysed core: exact identity, collection, threads, frames, version."""
    assert record.status == "ok", (core.key, record.status, record.error_message)
    assert record.error_message is None
    assert record.report.error is None
    assert (record.core_id, record.fleet) == (core.core_id, core.fleet)
    assert (record.sweep_id, record.sweep_date) == (sweep_id, sweep_date(sweep_id))
    assert (record.collection.source_url, record.collection.size, record.collection.etag) == (
        core.url,
        core.size,
        core.etag,
    )
    report = record.report
    assert report.python_version == core.python_version
    assert (report.core.path, report.core.size, report.core.compression) == (
        core.url,
        core.size,
        core.compression,
    )
    assert [t.tid for t in report.threads] == core.case.tids
    main = [(function, line) for function, line, _ in corefactory.main_stack("sleep")]
    assert python_frames(report.threads[0]) == main
    worker = [(function, line) for function, line, _ in corefactory.worker_stack()]
    assert python_frames(report.threads[1])[-len(worker) :] == worker
    assert report.process is not None and report.process.pid == core.case.pid
    assert record.analysis_seconds is not None and record.analysis_seconds > 0
    assert record.worker is not None and record.worker.startswith("tcp://127.0.0.1:")
    if core.relocation is None:
        assert (report.missing_libraries, report.warnings) == ([], [])
        return
    # Every file the process mapped from the copy is found at its place under the fleet's
    # root, except the executable: a search root is searched for shared libraries only (the
    # analysis needs no executable when libpython is found). Today's engine behaviour.
    reloc = core.relocation
    exe = core.case.exec_path
    assert (report.missing_libraries, report.warnings) == ([exe], [f"Failed to locate {exe}"])
    assert report.executable == exe
    in_core, under_root = reloc.libpython(core.case)
    assert report.python_binary == in_core
    libraries = {lib.path: lib for lib in report.libraries}
    assert libraries[in_core].found_path == under_root
    assert libraries[in_core].build_id_matches is True
    from_copy = [p for p in core.case.maps or [] if p.startswith(str(reloc.original) + "/")]
    assert in_core in from_copy
    for path in from_copy:
        if path != exe:
            found = str(reloc.moved / os.path.relpath(path, reloc.original))
            assert (libraries[path].found_path, libraries[path].build_id_matches) == (found, True)
    assert report.library_search_path
    assert all(p.startswith(str(reloc.moved) + "/") for p in report.library_search_path)


# --------------------------------------------------------------------------------------------
# 1. fleets, relocated interpreters, S3 sources


def test_fleets_with_their_roots_analyse_every_core(fleets: Fleets, fleet_runs: FleetRuns):
    run = fleet_runs.with_roots
    summary = run.summary()
    assert (summary["analysed"], summary["ok"], summary["failed"], summary["skipped"]) == (
        "6",
        "6",
        "0",
        "0",
    )
    assert summary["kinds"] is None
    url = fleet_runs.with_roots_url
    assert run.lines[0] == f"triage: sweep {summary['id']}: 6 cores to analyse, 0 already in {url}"
    assert run.out == ""
    rows = fleet_runs.rows
    assert [r.core_id for r in rows] == sorted(fleets.by_id())
    for record in rows:
        check_ok_row(record, fleets.by_id()[record.core_id], summary["id"])
    versions = sorted(r.report.python_version for r in rows)
    assert {v.rsplit(".", 1)[0] for v in versions} >= {"3.8", "3.12"}
    assert Counter((r.fleet, r.report.core.compression) for r in rows) == Counter(
        (c.fleet, c.compression) for c in fleets.cores
    )


def test_without_the_roots_relocated_cores_are_not_found(fleets: Fleets, fleet_runs: FleetRuns):
    run = fleet_runs.without_roots
    summary = run.summary()
    assert (summary["analysed"], summary["ok"], summary["failed"], summary["kinds"]) == (
        "6",
        "4",
        "2",
        "python_binary_not_found 2",
    )
    rows = fleet_runs.rows_without
    assert [r.core_id for r in rows] == sorted(fleets.by_id())
    for record in rows:
        core = fleets.by_id()[record.core_id]
        if core.relocation is None:
            check_ok_row(record, core, summary["id"])
            continue
        message = (
            f"the process ran {core.case.exec_path}, which is not on this machine; point "
            "--lib-search-path or --lib-search-root at a copy of it (or pass the executable)"
        )
        assert (record.status, record.fleet, record.error_message) == (
            "python_binary_not_found",
            core.fleet,
            message,
        )
        assert record.report.error is not None
        assert (record.report.error.kind, record.report.error.message) == (
            "python_binary_not_found",
            message,
        )
        # What the core itself says is still there: the process and its threads.
        assert record.report.process is not None and record.report.process.pid == core.case.pid
        assert sorted(t.tid for t in record.report.threads) == sorted(core.case.tids)
        in_core, _ = core.relocation.libpython(core.case)
        assert in_core in record.report.missing_libraries


# --------------------------------------------------------------------------------------------
# 2. the dataset on S3 and on a local disk, read by pyarrow and DuckDB


def _check_duckdb(con: Any, glob: str, fleets: Fleets, rows: list[SweepRecord]) -> None:
    source = duckdb_source(glob)
    assert con.sql(f"SELECT count(*) FROM {source}").fetchall() == [(6,)]
    got = con.sql(
        f"SELECT core_id, fleet, sweep_date, sweep_id, status, report.python_version, "
        f"collection.source_url, [t.tid FOR t IN report.threads] FROM {source} ORDER BY core_id"
    ).fetchall()
    assert got == [
        (
            r.core_id,
            r.fleet,
            r.sweep_date,
            r.sweep_id,
            r.status,
            r.report.python_version,
            r.collection.source_url,
            [t.tid for t in r.report.threads],
        )
        for r in rows
    ]
    lines = con.sql(
        f"SELECT core_id, [f.line FOR f IN report.threads[1].frames IF f.kind = 'python'] "
        f"FROM {source} WHERE status = 'ok' ORDER BY core_id"
    ).fetchall()
    main = [line for _, line, _ in corefactory.main_stack("sleep")]
    assert lines == [(r.core_id, main) for r in rows if r.status == "ok"]
    per_fleet = con.sql(f"SELECT fleet, count(*) FROM {source} GROUP BY fleet ORDER BY 1")
    assert per_fleet.fetchall() == sorted(Counter(c.fleet for c in fleets.cores).items())


def test_s3_dataset_read_back(fleets: Fleets, fleet_runs: FleetRuns):
    sweep_id = fleet_runs.with_roots.summary()["id"]
    day = sweep_date(sweep_id)
    assert fleets.s3.keys(OUT_BUCKET) == [
        f"sweeps/fleet={fleet}/sweep_date={day}/part-{sweep_id}-0.parquet"
        for fleet in ("fleet-a", "fleet-b")
    ]
    dataset = open_dataset(fleet_runs.with_roots_url, fleets.s3.options)
    assert dataset is not None and dataset.count_rows() == 6
    assert sorted(
        r.core_id
        for r in read_records(fleet_runs.with_roots_url, fleets.s3.options, fleet="fleet-b")
    ) == sorted(c.core_id for c in fleets.cores if c.fleet == "fleet-b")
    con = duckdb_connect(fleets.s3.fs)
    glob = f"{fleet_runs.with_roots_url}/**/*.parquet"
    _check_duckdb(con, glob, fleets, fleet_runs.rows)
    # Each core is in its own fleet's partition.
    files = con.sql(
        f"SELECT core_id, filename FROM read_parquet('{glob}', filename = true) ORDER BY core_id"
    ).fetchall()
    assert files == [
        (
            c.core_id,
            f"{fleet_runs.with_roots_url}/fleet={c.fleet}/sweep_date={day}/part-{sweep_id}-0.parquet",
        )
        for c in sorted(fleets.cores, key=lambda c: c.core_id)
    ]


def test_local_dataset_read_back(fleets: Fleets, fleet_runs: FleetRuns):
    sweep_id = fleet_runs.without_roots.summary()["id"]
    day = sweep_date(sweep_id)
    root = fleet_runs.without_roots_dir
    assert dataset_files(root) == [
        f"fleet={fleet}/sweep_date={day}/part-{sweep_id}-0.parquet"
        for fleet in ("fleet-a", "fleet-b")
    ]
    dataset = open_dataset(str(root))
    assert dataset is not None and dataset.count_rows() == 6
    con = duckdb_connect()
    _check_duckdb(con, f"{root}/**/*.parquet", fleets, fleet_runs.rows_without)
    statuses = con.sql(
        f"SELECT status, count(*) FROM {duckdb_source(f'{root}/**/*.parquet')} "
        "GROUP BY status ORDER BY 1"
    ).fetchall()
    assert statuses == [("ok", 4), ("python_binary_not_found", 2)]


# --------------------------------------------------------------------------------------------
# 3. a real dask scheduler and two dask workers


class DaskCluster:
    """`dask scheduler` and `dask worker --nthreads 1 --no-nanny` processes on 127.0.0.1."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.base / f"{name}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=sweep_env(),
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")[-3000:]

    def start(self) -> None:
        info = self.base / "scheduler.json"
        proc = self._spawn(
            "scheduler",
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(info),
            ],
        )
        deadline = time.monotonic() + 60
        while not info.exists() or '"address"' not in info.read_text():
            assert proc.poll() is None, self.log("scheduler")
            assert time.monotonic() < deadline, self.log("scheduler")
            time.sleep(0.05)
        self.address = json.loads(info.read_text())["address"]
        for name in ("w1", "w2"):
            self.start_worker(name)
        self.wait_for({"w1", "w2"})

    def start_worker(self, name: str) -> None:
        (self.base / name).mkdir(exist_ok=True)
        self._spawn(
            name,
            [
                str(DASK),
                "worker",
                self.address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                name,
                "--memory-limit",
                "0",
                "--local-directory",
                str(self.base / name),
            ],
        )

    def workers(self) -> dict[str, str]:
        """Worker name -> address, as the scheduler knows them now."""
        from distributed import Client

        with Client(self.address, timeout="10s") as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
        return {str(w["name"]): address for address, w in info.items()}

    def wait_for(self, names: set[str], timeout: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            if set(workers) == names:
                return workers
            for name in names:
                assert self.procs[name].poll() is None, self.log(name)
            assert time.monotonic() < deadline, (workers, names)
            time.sleep(0.1)

    def stop(self) -> None:
        """Workers first (they close at once while their scheduler is there), then it."""
        workers = [p for name, p in self.procs.items() if name != "scheduler"]
        for group in (workers, [self.procs["scheduler"]]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[DaskCluster]:
    if not DASK.exists():
        pytest.skip(f"the dask command is not installed next to {sys.executable}")
    running = DaskCluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _comparable(record: SweepRecord) -> tuple[Any, ...]:
    report = record.report
    return (
        record.core_id,
        record.fleet,
        record.status,
        record.error_message,
        report.python_version,
        report.executable,
        all_frames(record),
        report.signature,
        report.libraries,
        report.library_search_path,
        report.missing_libraries,
        record.collection,
    )


def test_external_cluster_gives_the_same_rows(fleets: Fleets, fleet_runs: FleetRuns, cluster):
    """--scheduler with the roots given as --fleet-root, and DASK_SCHEDULER_ADDRESS with the
    roots in the configuration: the rows of the embedded cluster, made by the two workers."""
    embedded = fleet_runs.rows
    workers = set(cluster.wait_for({"w1", "w2"}).values())

    out1 = fleets.base / "external-option"
    run1 = triage_sweep(
        "--config",
        fleets.config("external-no-roots.toml", str(out1)),
        "--scheduler",
        cluster.address,
        "--fleet-root",
        f"fleet-a={fleets.roots['fleet-a']}",
        "--fleet-root",
        f"fleet-b={fleets.roots['fleet-b']}",
    )
    out2 = fleets.base / "external-env"
    run2 = triage_sweep(
        "--config",
        fleets.config("external-roots.toml", str(out2), fleets.roots),
        scheduler_env=cluster.address,
    )
    for run, out in [(run1, out1), (run2, out2)]:
        summary = run.summary()
        assert (summary["analysed"], summary["ok"]) == ("6", "6")
        rows = records(str(out))
        assert [_comparable(r) for r in rows] == [_comparable(r) for r in embedded]
        for record in rows:
            check_ok_row(record, fleets.by_id()[record.core_id], summary["id"])
        assert {r.worker for r in rows} <= workers


def test_swapped_roots_resolve_nothing(fleets: Fleets, fleet_runs: FleetRuns, cluster):
    """Each relocated interpreter is resolved by its own fleet's root only."""
    out = fleets.base / "swapped"
    swapped = {"fleet-a": fleets.roots["fleet-b"], "fleet-b": fleets.roots["fleet-a"]}
    run = triage_sweep(
        "--config",
        fleets.config("swapped.toml", str(out), swapped),
        "--scheduler",
        cluster.address,
    )
    summary = run.summary()
    assert summary["kinds"] == "python_binary_not_found 2"
    got = {r.core_id: r.status for r in records(str(out))}
    assert got == {r.core_id: r.status for r in fleet_runs.rows_without}
    assert sorted(c for c, s in got.items() if s != "ok") == sorted(
        c.core_id for c in fleets.cores if c.relocation is not None
    )


# --------------------------------------------------------------------------------------------
# Local corpora of many cores (copies by hard link: identity is by URL)


@pytest.fixture(scope="module")
def installed_cores(cores, interpreters) -> list[CoreCase]:
    """gcores of up to four installed interpreters (3.8, 3.12, 3.13, 2.7 when present)."""
    wanted = [(3, 8), (3, 12), (3, 13), (2, 7)]
    found = [corefactory.preferred_interpreter(interpreters, [v]) for v in wanted]
    found = [i for i in found if i is not None]
    if not found:
        pytest.skip("no shared-build Python interpreter on this machine")
    return [cores.gcore(interp, threads=1) for interp in found]


def make_corpus(directory: Path, cases: list[CoreCase], count: int) -> dict[str, CoreCase]:
    """`count` links named core-NNN to the cases in turn; url -> case."""
    directory.mkdir(parents=True)
    corpus = {}
    for n in range(count):
        case = cases[n % len(cases)]
        path = directory / f"core-{n:03d}"
        try:
            os.link(case.path, path)
        except OSError:  # another filesystem
            shutil.copyfile(case.path, path)
        corpus[str(path)] = case
    return corpus


def sweep_killing_a_worker(
    argv: list[str], out: Path, victim: subprocess.Popen[Any]
) -> tuple[Run, list[psutil.Process], int]:
    """Run the sweep `argv` (`python -m triage sweep ...`); once it has written its first
    Parquet file, and before its last, SIGKILL the worker process `victim`. The sweep's run,
    the worker's children as they were when it was killed, and the Parquet files written
    by then."""
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=sweep_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    ) as sweep:
        try:
            wait_for_parquet(out, sweep)
            children = psutil.Process(victim.pid).children(recursive=True)
            victim.send_signal(signal.SIGKILL)
            assert sweep.poll() is None, "the sweep ended before its worker was killed"
            written = parquet_count(out)
            victim.wait()
            out_text, err_text = sweep.communicate(timeout=240)
        finally:
            if sweep.poll() is None:
                sweep.kill()
    run = Run(argv[3:], sweep.returncode, out_text.decode(), err_text.decode(), 0)
    return run, children, written


def wait_for_parquet(root: Path, proc: subprocess.Popen[Any], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while parquet_count(root) == 0:
        assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before any file"
        assert time.monotonic() < deadline, "no Parquet file appeared"
        time.sleep(0.01)


def check_exactly_once(root: Path, corpus: dict[str, CoreCase]) -> list[SweepRecord]:
    rows = records(str(root))
    urls = [r.collection.source_url for r in rows]
    assert sorted(urls) == sorted(corpus), "every core exactly once"
    assert len({r.core_id for r in rows}) == len(corpus)
    assert Counter(r.status for r in rows) == Counter({"ok": len(corpus)})
    for record in rows:
        case = corpus[record.collection.source_url]
        assert [t.tid for t in record.report.threads] == case.tids
    con = duckdb_connect()
    source = duckdb_source(f"{root}/**/*.parquet")
    assert con.sql(f"SELECT count(*), count(DISTINCT core_id) FROM {source}").fetchall() == [
        (len(corpus), len(corpus))
    ]
    return rows


# --------------------------------------------------------------------------------------------
# 4. a worker killed in the middle of a sweep


def test_worker_killed_mid_sweep(cluster, installed_cores, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 40)
    out = tmp_path / "dataset"
    config = write_config(
        tmp_path / "sweep.toml", output=str(out), batch_size=4, execution={"retries": 2}
    )
    workers = cluster.wait_for({"w1", "w2"})
    victim = cluster.procs["w1"]
    argv = [
        sys.executable,
        "-m",
        "triage",
        "sweep",
        str(tmp_path / "corpus"),
        "--config",
        str(config),
        "--scheduler",
        cluster.address,
        "--time-limit",
        "120",
    ]
    try:
        run, children, written = sweep_killing_a_worker(argv, out, victim)
        # Killed half-way: the sweep had written a few files of 4 rows.
        assert 1 <= written < len(corpus) // 4 - 1
        assert children, "the worker had started its analysis child"
        summary = run.summary(strict=False)
        assert (summary["analysed"], summary["ok"], summary["failed"]) == ("40", "40", "0")
        rows = check_exactly_once(out, corpus)
        assert {r.worker for r in rows} <= set(workers.values())
        assert workers["w2"] in {r.worker for r in rows}
        # The killed worker's analysis child does not outlive it.
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
    finally:
        # Put the cluster back as it was for the tests that follow.
        if victim.poll() is not None:
            cluster.start_worker("w1")
        cluster.wait_for({"w1", "w2"})
    # Only the sweep's own lines, and sometimes Dask's "Couldn't gather 1 keys, rescheduling"
    # warning (see test_dask_warnings_are_silenced).
    assert all("distributed.client - WARNING" in line for line in run.foreign_lines())


def test_embedded_dashboard_is_attached_on_first_visit():
    """The embedded scheduler starts without bokeh (0.7 s of CPU nobody may use); the printed
    address serves Dask's dashboard from the first visit on, and the scheduler's own pages
    all along."""
    import urllib.request

    from triage.pipeline.config import SweepConfig
    from triage.pipeline.run import dashboard_link, dask_client

    def is_bokeh(app: Any) -> bool:
        return any(cls.__name__ == "BokehTornado" for cls in type(app).__mro__)

    config = SweepConfig.model_validate({"execution": {"workers": 1}})
    with dask_client(config) as client:
        link = dashboard_link(client)
        assert link is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/status", link)
        routing = client.cluster.scheduler.http_application
        assert not any(is_bokeh(app) for app in routing.applications)
        with urllib.request.urlopen(link.replace("/status", "/health"), timeout=30) as r:
            assert r.read() == b"ok"
        with urllib.request.urlopen(link, timeout=60) as r:  # redirected once, to itself
            page = r.read().decode()
            assert (r.status, r.url) == (200, link)
        assert "<title>Dask Diagnostic UI</title>" in page and "Bokeh" in page
        assert [is_bokeh(app) for app in routing.applications] == [True]
        workers = link.replace("/status", "/workers")
        with urllib.request.urlopen(workers, timeout=30) as r:
            assert (r.status, r.url) == (200, workers)
            assert "<title>Dask Diagnostic UI</title>" in r.read().decode()


def test_dask_warnings_are_silenced(cluster):
    """The sweep sets Dask's loggers to ERROR so that its stderr holds its own lines only; but
    dask's logging configuration gives `distributed.client` its own level (WARNING), which the
    parent's does not override: a worker lost while its result is gathered prints
    "<date> - distributed.client - WARNING - Couldn't gather 1 keys, rescheduling (...)"
    among the sweep's lines (seen in test_worker_killed_mid_sweep, when the timing is such).
    Checked in-process, where it is deterministic."""
    import logging

    from triage.pipeline.config import SweepConfig
    from triage.pipeline.run import dask_client

    names = ["distributed", "bokeh", "tornado"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(tuple(names))]
    saved = {name: logging.getLogger(name).level for name in names}
    config = SweepConfig.model_validate({"execution": {"scheduler": cluster.address}})
    try:
        with dask_client(config):
            loud = sorted(
                name
                for name in logging.root.manager.loggerDict
                if name.startswith("distributed")
                and logging.getLogger(name).isEnabledFor(logging.WARNING)
            )
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    assert loud == []


# --------------------------------------------------------------------------------------------
# 5. reruns and --reprocess


def test_rerun_adds_nothing(fleets: Fleets, fleet_runs: FleetRuns, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(fleet_runs.without_roots_dir, root)
    before = dataset_files(root)
    config = fleets.config("rerun.toml", str(root))
    # The two failed analyses (python_binary_not_found) are kept: see test_sweep_ux.py for
    # their retry, the default.
    run = triage_sweep("--config", config, "--keep-failed")
    assert run.lines == [f"triage: nothing new to analyse: 6 cores already in {root}"], (
        run.describe()
    )
    assert run.out == ""
    assert dataset_files(root) == before
    assert len(records(str(root))) == 6
    dry = triage_sweep("--config", config, "--dry-run", "--keep-failed")
    assert (dry.out, dry.lines) == ("", ["triage: 0 to analyse, 6 already in the dataset"]), (
        dry.describe()
    )
    assert dataset_files(root) == before
    assert (run.rc, dry.rc) == (0, 0), run.describe() + dry.describe()


def test_rerun_of_a_local_directory_exits_zero(installed_cores, cluster, tmp_path):
    """The same with local sources, several times: a rerun that finds nothing new must exit 0
    every time (it reads the dataset's core_ids, then stops). The dataset has one file per
    core (batch_size 1), which made the exit-time abort likely (pyarrow reader threads
    holding fsspec buffers after the command returned: std::terminate at exit)."""
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 16)
    out = tmp_path / "dataset"
    config = write_config(tmp_path / "sweep.toml", output=str(out), batch_size=1)
    first = triage_sweep(
        tmp_path / "corpus", "--config", config, "--scheduler", cluster.address
    ).summary()
    assert (first["analysed"], first["ok"]) == ("16", "16")
    before = dataset_files(out)
    assert len(before) == 16
    statuses = []
    for _ in range(12):
        run = triage_sweep(tmp_path / "corpus", "--config", config)
        assert run.out == ""
        assert run.lines[0] == f"triage: nothing new to analyse: 16 cores already in {out}"
        statuses.append((run.rc, run.lines[1:]))
    dry = triage_sweep(tmp_path / "corpus", "--config", config, "--dry-run")
    assert (dry.out, dry.lines[0]) == ("", "triage: 0 to analyse, 16 already in the dataset")
    statuses.append((dry.rc, dry.lines[1:]))
    assert dataset_files(out) == before
    assert sorted(r.collection.source_url for r in records(str(out))) == sorted(corpus)
    # Last: no run may abort as it exits (SIGABRT, "terminate called without an active
    # exception"), which it did intermittently before the dataset was read single-threaded.
    assert statuses == [(0, [])] * 13


def test_reprocess_appends_a_new_sweep(fleets: Fleets, fleet_runs: FleetRuns, cluster, tmp_path):
    """--reprocess analyses everything again and APPENDS: every analysed core then has two
    rows, one per sweep_id; a failed analysis is replaced by the new one (the two relocated
    cores, python_binary_not_found both times, keep their second row only). Asserted so that
    changing it is deliberate."""
    root = tmp_path / "dataset"
    shutil.copytree(fleet_runs.without_roots_dir, root)
    before = dataset_files(root)
    first_id = fleet_runs.without_roots.summary()["id"]
    run = triage_sweep(
        "--config",
        fleets.config("reprocess.toml", str(root)),
        "--reprocess",
        "--scheduler",
        cluster.address,
    )
    summary = run.summary()
    assert run.lines[0] == f"triage: sweep {summary['id']}: 6 cores to analyse, 0 already in {root}"
    assert (summary["analysed"], summary["ok"], summary["skipped"]) == ("6", "4", "0")
    second_id = summary["id"]
    assert second_id != first_id
    day = sweep_date(second_id)
    assert dataset_files(root) == sorted(
        before
        + [f"fleet={f}/sweep_date={day}/part-{second_id}-0.parquet" for f in ("fleet-a", "fleet-b")]
    )
    rows = records(str(root))
    assert len(rows) == 10
    assert Counter(r.sweep_id for r in rows) == {first_id: 4, second_id: 6}
    assert Counter(r.core_id for r in rows) == {
        c.core_id: 1 if c.relocation else 2 for c in fleets.cores
    }
    old = {r.core_id: _comparable(r) for r in rows if r.sweep_id == first_id}
    new = {r.core_id: _comparable(r) for r in rows if r.sweep_id == second_id}
    assert {k: v for k, v in new.items() if k in old} == old
    assert {k: v[2] for k, v in new.items() if k not in old} == {
        c.core_id: "python_binary_not_found" for c in fleets.cores if c.relocation
    }


# --------------------------------------------------------------------------------------------
# 6. junk among the cores


@dataclass
class Junk:
    directory: Path  # the files on disk; the same under s3://crashes/junk/
    truncated: Any  # the engine's own report of the truncated core, analysed in place

    NAMES = ("notes.txt", "libpython.so", "text.gz", "empty", "truncated.core")

    def expected(self, base: str) -> dict[str, tuple[str, str]]:
        """url -> (status, error_message) of each file under `base` (ending in /)."""
        assert self.truncated.error is not None
        here = str(self.directory / "truncated.core")
        assert here in self.truncated.error.message
        return {
            base + "notes.txt": ("not_core", f"{base}notes.txt: not an ELF file"),
            base + "libpython.so": (
                "not_core",
                f"{base}libpython.so: an ELF shared library, not a core",
            ),
            base + "text.gz": (
                "not_core",
                f"{base}text.gz: a gzip archive of something that is not a core",
            ),
            base + "empty": ("not_core", f"{base}empty: an empty file"),
            # What the engine says of the file, naming the core as the dataset knows it.
            base + "truncated.core": (
                self.truncated.error.kind,
                self.truncated.error.message.replace(here, base + "truncated.core"),
            ),
        }


@pytest.fixture(scope="module")
def junk(fleets: Fleets, installed_cores, tmp_path_factory) -> Junk:
    """A text file, a shared library, a gzip of text, an empty file and the first half of a
    real core, in a directory and in s3://crashes/junk/."""
    import gzip

    import triage

    # A shared library that is not also an executable (libc.so.6 is: it has PT_INTERP).
    library = installed_cores[0].interpreter.libpython
    if library is None:
        pytest.skip("the interpreter has no libpython to use as a shared library")
    core = Path(installed_cores[0].path).read_bytes()
    bodies = {
        "notes.txt": b"crash notes, not a core\n",
        "libpython.so": Path(library).read_bytes(),
        "text.gz": gzip.compress(b"some text\n" * 100),
        "empty": b"",
        "truncated.core": core[: len(core) // 2],
    }
    assert tuple(bodies) == Junk.NAMES
    directory = tmp_path_factory.mktemp("junk")
    for name, body in bodies.items():
        (directory / name).write_bytes(body)
        fleets.s3.put(BUCKET, f"junk/{name}", body)
    truncated = triage.analyze_core(str(directory / "truncated.core"))
    assert truncated.error is not None and truncated.error.kind == "truncated_core"
    return Junk(directory, truncated)


@pytest.mark.parametrize("where", ["s3", "local"])
def test_junk_becomes_error_rows(fleets: Fleets, junk: Junk, where: str, request, tmp_path):
    """On S3 with the embedded cluster; in a directory with the external one."""
    out = tmp_path / "dataset"
    if where == "s3":
        base, options, scheduler = f"s3://{BUCKET}/junk/", fleets.s3.options, []
    else:
        base, options = f"{junk.directory}/", None
        scheduler = ["--scheduler", request.getfixturevalue("cluster").address]
    config = write_config(
        tmp_path / "junk.toml",
        sources=[base],
        output=str(out),
        execution={"workers": 1},
        storage_options=options,
    )
    run = triage_sweep("--config", config, *scheduler)
    assert run.rc == 0, run.describe()
    expected = junk.expected(base)
    rows = {r.collection.source_url: r for r in records(str(out))}
    # On S3 too: the empty object is `not_core` (a ranged GET of an empty object is refused
    # by S3, so none is made), and the truncated core's message names the object's URL, not
    # the worker's scratch copy.
    assert {url: (r.status, r.error_message) for url, r in rows.items()} == expected
    summary = run.summary()
    assert (summary["analysed"], summary["ok"], summary["failed"], summary["kinds"]) == (
        "5",
        "0",
        "5",
        "not_core 4, truncated_core 1",
    )
    for url, record in rows.items():
        status, message = expected[url]
        assert record.fleet == "default"
        assert "\n" not in message
        assert record.report.error is not None
        assert (record.report.error.kind, record.report.error.message) == (status, message)
        assert record.report.core.path == url
        if status == "not_core":
            assert record.report.threads == []
        else:
            assert record.report.threads == junk.truncated.threads


# --------------------------------------------------------------------------------------------
# 7. the sweep itself killed half-way, then rerun


def test_sweep_killed_half_way_then_rerun(installed_cores, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 24)
    out = tmp_path / "dataset"
    config = write_config(tmp_path / "sweep.toml", output=str(out), batch_size=2)
    argv = [
        sys.executable,
        "-m",
        "triage",
        "sweep",
        str(tmp_path / "corpus"),
        "--config",
        str(config),
        "--workers",
        "1",
    ]
    with subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=sweep_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    ) as client:
        try:
            wait_for_parquet(out, client)
            client.send_signal(signal.SIGKILL)
            client.wait()
            # Its cluster's workers and their analysis children go away with it.
            leftover = _leftover_processes(client.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(client.pid, signal.SIGKILL)  # our own session: nothing else in it
    written = records(str(out))
    assert 2 <= len(written) < len(corpus), "killed half-way"
    assert len({r.core_id for r in written}) == len(written)

    run = triage_sweep(tmp_path / "corpus", "--config", config, "--workers", "1")
    summary = run.summary()
    left = len(corpus) - len(written)
    assert run.lines[0] == (
        f"triage: sweep {summary['id']}: {left} cores to analyse, {len(written)} already in {out}"
    )
    assert (summary["analysed"], summary["ok"], summary["skipped"]) == (
        str(left),
        str(left),
        str(len(written)),
    )
    check_exactly_once(out, corpus)
    assert leftover == [], "processes of the killed sweep still running"


def test_sweep_interrupted_keeps_its_rows(installed_cores, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): the rows analysed
    so far are written, the sweep says `interrupted` and nothing else (no Dask warnings from
    the workers), exits 130, leaves no process behind; a rerun does the rest."""
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 400)  # ~60 cores/s a worker
    out = tmp_path / "dataset"
    argv = [sys.executable, "-m", "triage", "sweep", str(tmp_path / "corpus"), "-o", str(out)]
    with subprocess.Popen(
        [*argv, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=sweep_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    ) as client:
        try:
            assert client.stderr is not None
            first = client.stderr.readline()  # "sweep ID: 400 cores to analyse, ..."
            assert first.startswith("triage: sweep "), first
            time.sleep(1.0)  # some cores analysed, not all
            os.killpg(client.pid, signal.SIGINT)
            rest = client.stderr.read()
            rc = client.wait(timeout=60)
            leftover = _leftover_processes(client.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(client.pid, signal.SIGKILL)
    lines = [line for line in rest.splitlines() if not DASHBOARD.fullmatch(line)]
    assert (rc, lines[-1]) == (130, "triage: interrupted"), rest
    assert all(line.startswith("triage: ") for line in lines), rest
    assert leftover == [], "processes of the interrupted sweep still running"
    written = records(str(out))
    assert 1 <= len(written) < len(corpus), "interrupted half-way"
    assert {r.status for r in written} == {"ok"}
    run = triage_sweep(tmp_path / "corpus", "-o", out, "--workers", "1")
    assert run.summary()["analysed"] == str(len(corpus) - len(written))
    check_exactly_once(out, corpus)


def _leftover_processes(session_id: int) -> list[str]:
    """The processes of a sweep's session (it was started in one of its own) still running
    20 s after the sweep's own process ended."""
    session = [p for p in psutil.process_iter(["pid"]) if _session(p) == session_id]
    _, alive = psutil.wait_procs(session, timeout=20)
    return [" ".join(p.cmdline()[:4]) for p in alive if p.is_running()]


def _session(proc: Any) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# 8. bad input stops the sweep before any work


def _assert_fails(run: Run, message: str, output: Path) -> None:
    assert "Traceback" not in run.err, run.describe()
    assert (run.rc, run.out, run.lines) == (1, "", [f"triage: error: {message}"]), run.describe()
    assert not output.exists()


def test_missing_source_directory(tmp_path):
    out = tmp_path / "dataset"
    run = triage_sweep(tmp_path / "nowhere", "--output", out)
    _assert_fails(run, f"source {tmp_path / 'nowhere'} does not exist; check the path or URL", out)


def test_unreachable_s3_endpoint(tmp_path):
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    out = tmp_path / "dataset"
    config = write_config(
        tmp_path / "closed.toml",
        sources=[f"s3://{BUCKET}/fleet-a/"],
        output=str(out),
        storage_options={
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            "config_kwargs": {"retries": {"max_attempts": 0}},
        },
    )
    run = triage_sweep("--config", config)
    _assert_fails(
        run,
        f"source s3://{BUCKET}/fleet-a/ is unreachable (Could not connect to the endpoint URL: "
        f'"{endpoint}/{BUCKET}/fleet-a"); check the endpoint URL and the network',
        out,
    )
    assert run.seconds < 20


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[execution]\nworkerz = 2\n", "execution.workerz: unknown key (check its spelling)"),
        ("sourcez = []\n", "sourcez: unknown key (check its spelling)"),
        (
            '[execution]\ntime_limit = "soon"\n',
            "execution.time_limit: Input should be a valid number, unable to parse string as a "
            "number",
        ),
        (
            '[[fleets]]\nname = "a"\nlib_search_root = "/srv"\n',
            "fleets[0].lib_search_root: Input should be a valid list",
        ),
    ],
    ids=["unknown-key", "unknown-top-level-key", "wrong-type", "wrong-type-in-a-fleet"],
)
def test_invalid_configuration(tmp_path, body: str, problem: str):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    out = tmp_path / "dataset"
    run = triage_sweep(tmp_path, "--config", config, "--output", out)
    _assert_fails(run, f"{config}: {problem}", out)


def test_fleet_root_of_an_unknown_fleet(tmp_path):
    out = tmp_path / "dataset"
    run = triage_sweep(tmp_path, "--output", out, "--fleet-root", f"nosuch={tmp_path}")
    _assert_fails(
        run,
        f"--fleet-root 'nosuch={tmp_path}': no fleet named 'nosuch' in the configuration "
        "(use default=DIR for cores that match no fleet)",
        out,
    )


def test_unreachable_scheduler(installed_cores, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 1)
    assert len(corpus) == 1
    out = tmp_path / "dataset"
    address = f"tcp://127.0.0.1:{closed_port()}"
    run = triage_sweep(tmp_path / "corpus", "--output", out, "--scheduler", address)
    assert run.seconds < 30
    _assert_fails(
        run,
        f"cannot reach the Dask scheduler at {address}: nothing listens there (connection "
        "refused); start the scheduler (`dask scheduler`) or check the address",
        out,
    )


# --------------------------------------------------------------------------------------------
# 9. --dry-run


def test_dry_run_lists_and_writes_nothing(fleets: Fleets, tmp_path):
    url = f"s3://{OUT_BUCKET}/dry-run"
    local = tmp_path / "dataset"
    expected = "".join(f"{c.fleet}\t{c.size}\t{c.url}\n" for c in fleets.cores)
    for output, name in [(url, "dry-s3.toml"), (str(local), "dry-local.toml")]:
        run = triage_sweep("--config", fleets.config(name, output, fleets.roots), "--dry-run")
        assert (run.rc, run.out, run.lines) == (
            0,
            expected,
            ["triage: 6 to analyse, 0 already in the dataset"],
        ), run.describe()
    assert fleets.s3.keys(OUT_BUCKET, "dry-run") == []
    assert not local.exists()


# --------------------------------------------------------------------------------------------
# 10. a core that takes too long


def test_time_limit_makes_timeout_rows(installed_cores, cluster, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 4)
    out = tmp_path / "dataset"
    config = write_config(tmp_path / "tiny.toml", output=str(out), execution={"time_limit": 0.001})
    run = triage_sweep(tmp_path / "corpus", "--config", config, "--scheduler", cluster.address)
    summary = run.summary()
    assert (summary["analysed"], summary["ok"], summary["kinds"]) == ("4", "0", "timeout 4")
    rows = records(str(out))
    assert sorted(r.collection.source_url for r in rows) == sorted(corpus)
    for record in rows:
        assert record.status == "timeout"
        assert record.error_message == (
            "the analysis took longer than the 0.001 s limit and was stopped"
        )
        assert record.report.threads == []
    # The same workers go on: the same cores with a sane limit are analysed.
    again = triage_sweep(
        tmp_path / "corpus",
        "--config",
        config,
        "--scheduler",
        cluster.address,
        "--time-limit",
        "120",
        "--reprocess",
    )
    summary = again.summary()
    assert (summary["analysed"], summary["ok"]) == ("4", "4")
    rows = [r for r in records(str(out)) if r.sweep_id == summary["id"]]
    assert sorted(r.collection.source_url for r in rows) == sorted(corpus)
    assert {r.status for r in rows} == {"ok"}


DEEP_THREADS, DEEP_DEPTH = 4, 40_000


@pytest.fixture(scope="module")
def deep_core(tmp_path_factory: pytest.TempPathFactory, preferred_interp: Interpreter) -> Path:
    """A gcore core of 4 threads each 40,000 Python calls deep: its analysis needs well over
    64 MB of heap (160,000 frames), and well under the default 1 GB."""
    directory = tmp_path_factory.mktemp("deep")
    try:
        return corefactory.make_deep_stacks_core(
            preferred_interp, directory, DEEP_THREADS, DEEP_DEPTH
        )
    except CoreUnavailable as exc:
        pytest.skip(str(exc))


def test_memory_limit_makes_a_row_and_the_sweep_goes_on(deep_core: Path, installed_cores, tmp_path):
    """The heap guard: a core whose analysis outgrows `memory_limit_mb` becomes a
    `memory_limit` row; the worker and the other cores are unharmed; with the default limit
    the same core is analysed in full."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    os.link(deep_core, corpus / "core-deep")
    os.link(installed_cores[0].path, corpus / "core-small")
    out = tmp_path / "dataset"
    config = write_config(
        tmp_path / "tight.toml", output=str(out), execution={"memory_limit_mb": 64, "workers": 1}
    )
    summary = triage_sweep(corpus, "--config", config).summary()
    assert (summary["analysed"], summary["ok"], summary["kinds"]) == ("2", "1", "memory_limit 1")
    by_name = {Path(r.collection.source_url).name: r for r in records(str(out))}
    deep, small = by_name["core-deep"], by_name["core-small"]
    assert (deep.status, deep.error_message) == (
        "memory_limit",
        "the analysis needed more than 64 MB of heap",
    )
    assert deep.report.threads == [] and deep.report.error.kind == "memory_limit"
    assert small.status == "ok" and small.report.threads
    assert deep.worker == small.worker  # one worker did both: it was not killed
    # With the default limit (1024 MB) the same core is analysed, every frame of it.
    summary = triage_sweep(corpus, "--output", out, "--workers", "1", "--reprocess").summary()
    assert (summary["analysed"], summary["ok"]) == ("2", "2")
    again = next(
        r
        for r in records(str(out))
        if r.sweep_id == summary["id"] and r.collection.source_url.endswith("core-deep")
    )
    # down() x (DEPTH + 1) and bottom(), under <module> and main() in the main thread and
    # under Thread._bootstrap, _bootstrap_inner and run in the others.
    deep_frames = DEEP_DEPTH + 2
    assert sorted(len(t.frames) for t in again.report.threads) == [deep_frames + 2] + [
        deep_frames + 3
    ] * (DEEP_THREADS - 1)


# --------------------------------------------------------------------------------------------
# 11. the ready-made configurations


def test_ready_made_configurations_validate():
    from triage.pipeline.config import load_config

    paths = sorted((ROOT / "pipelines").glob("*.toml"))
    assert [p.name for p in paths] == ["ci-job.toml", "host-coredump.toml", "nightly-s3.toml"]
    configs = {p.name: load_config(p) for p in paths}
    nightly = configs["nightly-s3.toml"]
    assert [f.name for f in nightly.fleets] == ["web", "batch"]
    assert nightly.fleet_for("s3://crash-cores/nightly/web/host1/core.1").name == "web"
    assert nightly.fleet_for("s3://crash-cores/nightly/etl-7/core.1").name == "batch"
    assert nightly.fleet_for("s3://crash-cores/nightly/other/core.1").name == "default"
    assert configs["host-coredump.toml"].sources == ["/var/lib/systemd/coredump"]
    assert configs["ci-job.toml"].output is not None
    assert configs["ci-job.toml"].output.batch_size == 100


def test_ci_job_configuration_dry_run(installed_cores, tmp_path):
    """The CI configuration's relative paths are relative to where the job runs."""
    (tmp_path / "cores").mkdir()
    core = tmp_path / "cores" / "core.1234"
    os.link(installed_cores[0].path, core)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "triage",
            "sweep",
            "--config",
            str(ROOT / "pipelines/ci-job.toml"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env=sweep_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"ci\t{core.stat().st_size}\t{core}\n",
        "triage: 1 to analyse, 0 already in the dataset\n",
    )
    assert not (tmp_path / "triage-dataset").exists()


def test_sweep_dates_are_utc_today(fleet_runs: FleetRuns):
    day = sweep_date(fleet_runs.with_roots.summary()["id"])
    today = dt.datetime.now(dt.timezone.utc).date()
    assert day in {str(today), str(today - dt.timedelta(days=1))}
    assert {r.sweep_date for r in fleet_runs.rows} == {day}
