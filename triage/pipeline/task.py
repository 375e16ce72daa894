"""The work of one core on a worker: fetch it from its source, check it is a core, analyse it
in the isolated child, and return the dataset row. Never raises for a bad core.

The row is a SweepRecord as plain data (`report.to_plain`, what `schema.record_to_dict`
gives): the analysis child sends the report that way and the worker adds the sweep's
columns, so no report is validated or converted again between the child and the Parquet file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from triage.coredump.sniff import sniff_core
from triage.kinds import SweepStatus
from triage.pipeline.collection import collection_for
from triage.pipeline.config import Fleet
from triage.pipeline.isolate import AnalysisProcess, Outcome
from triage.pipeline.sources import CoreObject, SourceError, fetch, printable, read_head
from triage.report import (
    Collection,
    CoreFileInfo,
    CoreReport,
    ErrorInfo,
    SweepRecord,
    to_plain,
)
from triage.signature import SIGNATURE_VERSION, Rules

#: A dataset row: a SweepRecord as plain data (`report.to_plain`).
Row = dict[str, Any]


@dataclass(frozen=True)
class SweepInfo:
    """What every task of one sweep shares."""

    sweep_id: str
    sweep_date: str
    time_limit: float = 300.0
    memory_limit_mb: int = 1024
    storage_options: dict[str, Any] = field(default_factory=dict)
    signature_version: int = SIGNATURE_VERSION
    """The version of the signatures the dataset holds (they stay comparable)."""
    max_core_size: int | None = None
    """Bytes a core may have once decompressed (execution.max_core_size), None: no limit."""


_lock = threading.Lock()
_processes: dict[int, AnalysisProcess] = {}


def warm_analysis_process(memory_limit_mb: int) -> None:
    """Start this process's analysis child now, so it imports while tasks are on their way."""
    with _lock:
        _analysis_process(memory_limit_mb).warm()


def _analysis_process(memory_limit_mb: int) -> AnalysisProcess:
    """The worker's own long-lived analysis child (its caches survive from core to core)."""
    proc = _processes.get(memory_limit_mb)
    if proc is None:
        proc = _processes[memory_limit_mb] = AnalysisProcess(memory_limit_mb)
    return proc


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return socket.gethostname()


def sweep_task(obj: CoreObject, fleet: Fleet, info: SweepInfo) -> bytes:
    """The Dask task of one core: its row as JSON. Dask handles bytes in O(1) where a nested
    dict costs it a recursive size estimate and pickling (~3 ms a core, on the worker)."""
    row = analyze_object(obj, fleet, info)
    try:
        return json.dumps(row, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a file name that is not UTF-8: shown with escapes
        return json.dumps(printable_data(row), ensure_ascii=False).encode()


def printable_data(value: Any) -> Any:
    """Plain data with every string valid UTF-8 (`sources.printable`), as Parquet needs."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable_data(v) for v in value]
    return value


def analyze_object(obj: CoreObject, fleet: Fleet, info: SweepInfo) -> Row:
    """Analyse one core object for a sweep; every failure becomes the row's status."""
    if obj.problem is not None:  # not a file to open (a FIFO, a link loop): say so
        status, problem = obj.problem
        row = lost_record(obj, fleet, info, status, f"{obj.url}: {problem}")
        row.update(analysis_seconds=0.0, worker=_worker_name())
        return row
    collection = collection_for(obj, info.storage_options)
    scratch = tempfile.mkdtemp(prefix="triage-task-")
    try:
        outcome = _analyze(obj, fleet, info, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    row = _row(obj, fleet, info, outcome.status, collection, outcome.message)
    report = outcome.report or row["report"]
    _name_the_object(report, outcome, obj.url, scratch)
    if not report["core"]["size"]:
        report["core"]["size"] = obj.size
    row.update(
        report=report,
        error_message=outcome.message,  # as _name_the_object left it
        analysis_seconds=round(outcome.seconds, 6),
        worker=_worker_name(),
    )
    return row


def _row(
    obj: CoreObject,
    fleet: Fleet,
    info: SweepInfo,
    status: SweepStatus,
    collection: Collection,
    message: str | None,
) -> Row:
    """A row of the object, its report that of a core that could not be read (`message`);
    the sweep's columns come from the SweepRecord model itself."""
    return to_plain(
        SweepRecord(
            core_id=obj.core_id,
            sweep_id=info.sweep_id,
            sweep_date=info.sweep_date,
            fleet=fleet.name,
            status=status,
            collection=collection,
            report=CoreReport(
                core=CoreFileInfo(path=obj.url, size=obj.size),
                error=None if status == "ok" else ErrorInfo(kind=status, message=message or status),
            ),
            error_message=message,
        )
    )


def _name_the_object(report: Row, outcome: Outcome, url: str, scratch: str) -> None:
    """Say the object's URL where the analysis saw the worker's scratch copy of it."""
    local = report["core"]["path"]
    report["core"]["path"] = url
    if local != url and local.startswith(scratch):
        if report["error"] is not None:
            report["error"]["message"] = report["error"]["message"].replace(local, url)
        if outcome.message:
            outcome.message = outcome.message.replace(local, url)


def _analyze(obj: CoreObject, fleet: Fleet, info: SweepInfo, scratch: str) -> Outcome:
    """Check the object's first bytes, then fetch it (if remote) and analyse it."""
    try:
        _compression, problem = sniff_core(read_head(obj, info.storage_options))
        if problem is not None:
            return Outcome("not_core", None, f"{obj.url}: {problem}", 0.0)
        local = fetch(obj, scratch, info.storage_options)
    except SourceError as exc:
        return Outcome(exc.kind if exc.kind != "not_found" else "vanished", None, exc.message, 0.0)
    with _lock:
        return _analysis_process(info.memory_limit_mb).analyze(
            local,
            info.time_limit,
            executable=fleet.executable,
            lib_search_root=fleet.lib_search_root or None,
            lib_search_path=fleet.lib_search_path or None,
            rules=Rules.from_fleet(fleet, info.signature_version),
            native=fleet.native_stacks,
            max_core_size=info.max_core_size,
        )


def lost_record(
    obj: CoreObject, fleet: Fleet, info: SweepInfo, status: SweepStatus, message: str
) -> Row:
    """The row for a core whose task could not run at all (its workers kept dying)."""
    collection = Collection(source_url=obj.url, size=obj.size, etag=obj.etag, mtime=obj.mtime)
    return printable_data(_row(obj, fleet, info, status, collection, message))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def close_processes() -> None:
    """Stop the analysis children of this process (tests, worker teardown)."""
    with _lock:
        for proc in _processes.values():
            proc.close()
        _processes.clear()


os.register_at_fork(after_in_child=_processes.clear)
