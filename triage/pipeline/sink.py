"""Write SweepRecords as a hive-partitioned Parquet dataset, locally or to any fsspec URL.

    with ParquetSink("s3://crashes/sweeps", storage_options={...}) as sink:
        for record in records:
            sink.add(record)      # a SweepRecord, or the same as plain data (a sweep's rows)

Layout (partition values are also columns inside each file, so one file reads on its own):

    URL/fleet=NAME/sweep_date=YYYY-MM-DD/part-<sweep_id>-<n>.parquet

Files appear whole or not at all. Each is written under a hidden name first,
`.part-<sweep_id>-<n>.<random>.tmp`, and moved to its final name once complete, so a writer
killed mid-file leaves only such a name. Readers skip it for two separate reasons, and the
name is chosen to satisfy both:

* pyarrow.dataset skips files whose name starts with "." or "_" (its default
  `ignore_prefixes`), whatever they end with;
* DuckDB skips NOTHING by prefix (`read_parquet('URL/**/*.parquet')` reads `_x.parquet` and
  `.x.parquet` too), so the name must not match the reader's `*.parquet` glob.

Read the dataset with a `*.parquet` glob, never `**/*`. With DuckDB's default hive
handling, `sweep_date` comes back as DATE; add `hive_types_autocast=false` to keep it text.

The sink holds at most `batch_size` rows: when that many are buffered, the partition holding
the most is written as one file. Part numbers continue after the highest one already present
for the same sweep_id in a partition, so rerunning a sweep never overwrites its earlier files.
One sink at a time should write a given sweep_id to a given partition. On object stores the
bucket must exist: the sink makes directories only on filesystems that have them.

pyarrow and fsspec are imported on first use.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage.pipeline.schema import (
    PARTITION_COLUMNS,
    arrow_schema,
    from_arrow_row,
    record_to_dict,
    rows_to_arrow,
)
from triage.report import SweepRecord

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    from fsspec import AbstractFileSystem

#: What fleet names and sweep ids may be (as the pipeline config allows fleet names): they
#: become parts of directory and file names (`fleet=NAME`, `part-ID-n`) as they are.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")

#: The Parquet compression of the files written.
COMPRESSION = "zstd"

#: fsspec protocols of object stores: no directories to make (and s3fs's makedirs would
#: create a missing bucket, which a sink must never do).
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl"})

_Key = tuple[str, str, str]  # (fleet, sweep_date, sweep_id)


def filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of `url` and the dataset root's path within it (no trailing /),
    resolved as sources are (local paths take no storage options)."""
    from triage.pipeline.sources import filesystem_of

    fs, path, _local = filesystem_of(url, storage_options)
    return fs, path.rstrip("/") or path


def _has_directories(fs: AbstractFileSystem) -> bool:
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return not protocols & OBJECT_STORE_PROTOCOLS


def partition_dir(root: str, fleet: str, sweep_date: str) -> str:
    """ROOT/fleet=NAME/sweep_date=YYYY-MM-DD."""
    return f"{root}/fleet={fleet}/sweep_date={sweep_date}"


def _check_row(row: dict[str, Any]) -> _Key:
    fleet, sweep_date, sweep_id = row["fleet"], row["sweep_date"], row["sweep_id"]
    if not NAME_PATTERN.fullmatch(fleet):
        raise ValueError(f"fleet {fleet!r} is not a valid partition value ([A-Za-z0-9_.-]+)")
    if not DATE_PATTERN.fullmatch(sweep_date):
        raise ValueError(f"sweep_date {sweep_date!r} is not YYYY-MM-DD")
    if not NAME_PATTERN.fullmatch(sweep_id):
        raise ValueError(f"sweep_id {sweep_id!r} cannot be part of a file name")
    return fleet, sweep_date, sweep_id


class ParquetSink:
    """Buffers rows and writes them as Parquet files of at most `batch_size` rows."""

    def __init__(
        self, url: str, storage_options: dict[str, Any] | None = None, batch_size: int = 500
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url = url
        self.batch_size = batch_size
        self.fs, self.root = filesystem(url, storage_options)
        #: Final paths of the files written so far (paths within `fs`), in order.
        self.files: list[str] = []
        #: Rows written so far.
        self.rows_written = 0
        self._buffers: dict[_Key, list[dict[str, Any]]] = {}
        self._buffered = 0
        self._next_part: dict[_Key, int] = {}
        self._closed = False

    # -- writing

    def add(self, record: SweepRecord | dict[str, Any]) -> None:
        """Buffer one record (or row: a SweepRecord as plain data, as `record_to_dict` gives);
        writes a file when `batch_size` are buffered."""
        if self._closed:
            raise ValueError("the sink is closed")
        row = record if isinstance(record, dict) else record_to_dict(record)
        key = _check_row(row)
        self._buffers.setdefault(key, []).append(row)
        self._buffered += 1
        if self._buffered >= self.batch_size:
            largest = max(self._buffers, key=lambda k: len(self._buffers[k]))
            self._write(largest)

    def flush(self) -> None:
        """Write every buffered record (one file per partition holding any)."""
        for key in list(self._buffers):
            self._write(key)

    def close(self) -> None:
        """Flush; the sink takes no more records. Closing twice does nothing."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Records already analysed are kept even when the sweep fails: a rerun skips them.
        self.close()

    def _part_number(self, key: _Key, directory: str) -> int:
        """The next part number for `key`: one above the highest already in `directory`."""
        if key not in self._next_part:
            pattern = re.compile(rf"part-{re.escape(key[2])}-(\d+)\.parquet")
            highest = -1
            if self.fs.exists(directory):
                for path in self.fs.ls(directory, detail=False):
                    match = pattern.fullmatch(path.rstrip("/").rsplit("/", 1)[-1])
                    if match:
                        highest = max(highest, int(match.group(1)))
            self._next_part[key] = highest + 1
        number = self._next_part[key]
        self._next_part[key] = number + 1
        return number

    def _write(self, key: _Key) -> None:

        records = self._buffers[key]
        table = rows_to_arrow(records)
        fleet, sweep_date, sweep_id = key
        directory = partition_dir(self.root, fleet, sweep_date)
        if _has_directories(self.fs):
            self.fs.makedirs(directory, exist_ok=True)
        number = self._part_number(key, directory)
        final = f"{directory}/part-{sweep_id}-{number}.parquet"
        write_atomically(self.fs, table, final)
        del self._buffers[key]
        self._buffered -= len(records)
        self.files.append(final)
        self.rows_written += len(records)


def write_atomically(fs: AbstractFileSystem, table: Any, final: str) -> None:
    """Write `table` as Parquet at `final`, visible only once complete: first under a hidden
    temporary name next to it, then moved into place (replacing any file there)."""
    import pyarrow.parquet as pq

    directory, name = final.rsplit("/", 1)
    temporary = f"{directory}/.{name.removesuffix('.parquet')}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(temporary, "wb") as stream:
            pq.write_table(table, stream, compression=COMPRESSION)
        fs.mv(temporary, final)
    except BaseException:
        try:
            if fs.exists(temporary):
                fs.rm(temporary)
        except Exception:  # the original error matters more; a .tmp is ignored anyway
            pass
        raise


def dataset_files(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The visible Parquet files of the dataset (paths within its filesystem), sorted."""
    fs, root = filesystem(url, storage_options)
    if not fs.exists(root):
        return []
    return sorted(
        p
        for p in fs.glob(root + "/**/*.parquet")
        if not any(part.startswith((".", "_")) for part in p[len(root) :].split("/"))
    )


# -- reading


def open_dataset(url: str, storage_options: dict[str, Any] | None = None) -> ds.Dataset | None:
    """The dataset at `url` as a pyarrow Dataset of `arrow_schema()` (None if there is none).

    Hive partitioning on fleet and sweep_date; files named `.*` or `_*` are skipped.
    """
    fs, root = filesystem(url, storage_options)
    if not fs.exists(root):
        return None  # before importing pyarrow: a first sweep need not pay for it here
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    from triage.pipeline.schema import partition_schema

    # Local datasets through pyarrow's own filesystem; others through fsspec.
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    local = bool(protocols & {"file", "local"})
    return ds.dataset(
        root,
        schema=arrow_schema(),
        format="parquet",
        filesystem=None if local else PyFileSystem(FSSpecHandler(fs)),
        partitioning=ds.partitioning(partition_schema(), flavor="hive"),
        ignore_prefixes=[".", "_"],
    )


def existing_ids(url: str, storage_options: dict[str, Any] | None = None) -> set[str]:
    """The core_ids already in the dataset at `url` (reads only that column; empty if none)."""
    dataset = open_dataset(url, storage_options)
    if dataset is None:
        return set()
    # Single-threaded: pyarrow's reader threads holding fsspec (Python) buffers can outlive a
    # short command and abort the interpreter at exit (std::terminate in ~PyBuffer).
    table = dataset.to_table(columns=["core_id"], use_threads=False)
    return set(table.column("core_id").to_pylist())


#: Statuses of rows that are final: the core was analysed (`ok`) or is no core at all
#: (`not_core`). Any other status is a failed analysis, which the next sweep retries.
FINAL_STATUSES = frozenset({"ok", "not_core"})


@dataclass(frozen=True)
class IndexRow:
    """Where one row of the dataset is, and what it says of its core."""

    path: str
    core_id: str
    sweep_id: str
    status: str
    signature_version: int | None = None


def dataset_index(url: str, storage_options: dict[str, Any] | None = None) -> list[IndexRow]:
    """Every row of the dataset at `url` as (file, core_id, sweep_id, status); reads only
    those columns, file by file."""
    dataset = open_dataset(url, storage_options)
    if dataset is None:
        return []
    import pyarrow.dataset as ds

    wanted = {name: ds.field(name) for name in ("core_id", "sweep_id", "status")}
    wanted["signature_version"] = ds.field("report", "signature", "version")
    rows = []
    for fragment in dataset.get_fragments():
        table = fragment.to_table(columns=wanted, use_threads=False)
        columns = [table.column(name).to_pylist() for name in wanted]
        rows += [IndexRow(fragment.path, *values) for values in zip(*columns, strict=True)]
    return rows


def versions_in(index: list[IndexRow]) -> set[int]:
    """The signature versions the rows of `index` hold."""
    return {row.signature_version for row in index if row.signature_version is not None}


def latest_statuses(index: list[IndexRow]) -> dict[str, str]:
    """Each core's status in its latest row (the one of the greatest sweep_id)."""
    latest: dict[str, IndexRow] = {}
    for row in index:
        seen = latest.get(row.core_id)
        if seen is None or row.sweep_id > seen.sweep_id:
            latest[row.core_id] = row
    return {core: row.status for core, row in latest.items()}


def superseded_failures(index: list[IndexRow], newer: dict[str, str]) -> list[IndexRow]:
    """The failed rows of `index` that a later row of the same core replaces: one of the
    index, or one of `newer` (core_id -> sweep_id of rows written since the index was read).
    Rows that are final stay (`--reprocess` keeps every analysis)."""
    latest = dict(newer)
    for row in index:
        if row.sweep_id > latest.get(row.core_id, ""):
            latest[row.core_id] = row.sweep_id
    return [
        row
        for row in index
        if row.status not in FINAL_STATUSES and row.sweep_id < latest[row.core_id]
    ]


def remove_rows(
    url: str, rows: list[IndexRow], storage_options: dict[str, Any] | None = None
) -> int:
    """Rewrite each file holding some of `rows` without them (replaced atomically; a file
    left empty is deleted). Returns how many rows were removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, _root = filesystem(url, storage_options)
    by_file: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        by_file.setdefault(row.path, set()).add((row.core_id, row.sweep_id))
    removed = 0
    for path, unwanted in sorted(by_file.items()):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, use_threads=False)
        ids, sweeps = table.column("core_id").to_pylist(), table.column("sweep_id").to_pylist()
        keep = [(c, s) not in unwanted for c, s in zip(ids, sweeps, strict=True)]
        if all(keep):
            continue
        removed += keep.count(False)
        if any(keep):
            write_atomically(fs, table.filter(pa.array(keep)), path)
        else:
            fs.rm(path)
    return removed


def signature_versions(url: str, storage_options: dict[str, Any] | None = None) -> set[int]:
    """The signature versions the dataset at `url` holds."""
    return versions_in(dataset_index(url, storage_options))


def read_records(
    url: str, storage_options: dict[str, Any] | None = None, *, fleet: str | None = None
) -> list[SweepRecord]:
    """Every record of the dataset at `url` (of one fleet if given), in no particular order."""
    import pyarrow.dataset as ds

    dataset = open_dataset(url, storage_options)
    if dataset is None:
        return []
    where = ds.field(PARTITION_COLUMNS[0]) == fleet if fleet is not None else None
    table = dataset.to_table(filter=where, use_threads=False)
    return [from_arrow_row(row) for row in table.to_pylist()]
