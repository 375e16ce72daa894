"""A sweep: list the sources, skip what the dataset already holds, analyse the rest on Dask
(embedded LocalCluster or an existing scheduler), write every row, summarise."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from typing import TYPE_CHECKING, Any

from triage import compat
from triage.kinds import SweepStatus
from triage.pipeline import forkserver
from triage.pipeline.config import Fleet, SweepConfig
from triage.pipeline.sources import CoreObject, list_sources
from triage.pipeline.task import Row, SweepInfo, lost_record, sweep_task
from triage.signature import SIGNATURE_VERSION

if TYPE_CHECKING:
    from triage.pipeline.sink import IndexRow


class SweepError(Exception):
    """The sweep cannot start (bad store, credentials, configuration); one line."""


@dataclass
class Plan:
    """What a sweep will do: every object with its fleet, and which are already done."""

    todo: list[tuple[CoreObject, Fleet]]
    skipped: list[tuple[CoreObject, Fleet]]
    signature_version: int = SIGNATURE_VERSION
    """The version of the signatures new rows get: the dataset's own when it holds only an
    older one (its groups stay comparable until `triage regroup`), else the current one."""
    retried: int = 0
    """How many of `todo` are in the dataset already, as failed analyses, analysed again."""
    index: list[IndexRow] = field(default_factory=list)
    """Where each row of the dataset was when the sweep started (`sink.dataset_index`)."""


@dataclass
class Summary:
    """What a sweep did."""

    sweep_id: str
    total: int
    skipped: int
    analysed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    written: dict[str, str] = field(default_factory=dict)
    """core_id -> sweep_id of every row written."""

    @property
    def failed(self) -> int:
        return self.analysed - self.statuses.get("ok", 0)

    @property
    def rate(self) -> float:
        return self.analysed / self.seconds if self.seconds else 0.0


def new_sweep_info(
    config: SweepConfig, now: datetime | None = None, signature_version: int = SIGNATURE_VERSION
) -> SweepInfo:
    """What the tasks of a new sweep share. Its id orders sweeps by when they started (the
    dataset's latest row of a core is the one of the greatest id): to the microsecond, as two
    sweeps may start within one second, then a random part for sweeps of several machines."""
    now = now or datetime.now(timezone.utc)
    return SweepInfo(
        signature_version=signature_version,
        sweep_id=f"{now:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(3)}",
        sweep_date=f"{now:%Y-%m-%d}",
        time_limit=config.execution.time_limit,
        memory_limit_mb=config.execution.memory_limit_mb,
        max_core_size=config.execution.max_core_bytes(),
        storage_options=config.storage_options,
    )


def plan(config: SweepConfig, *, reprocess: bool = False, keep_failed: bool = False) -> Plan:
    """List the sources and the dataset; SourceError/SinkError-like problems raise SweepError.

    A core already in the dataset is skipped, unless `reprocess`, or its latest row is a
    failed analysis (a status other than ok and not_core) and not `keep_failed`."""
    from triage.pipeline.sink import (
        FINAL_STATUSES,
        dataset_index,
        latest_statuses,
        versions_in,
    )
    from triage.pipeline.sources import SourceError

    try:
        objects = list(list_sources(config.sources, config.storage_options))
    except SourceError as exc:
        raise SweepError(str(exc)) from None
    index: list[IndexRow] = []
    versions: set[int] = set()
    if config.output is not None:
        try:
            index = dataset_index(config.output.dataset, config.storage_options)
            versions = versions_in(index)
        except Exception as exc:  # pyarrow/fsspec raise many kinds
            raise SweepError(
                f"cannot read the output dataset {config.output.dataset}: {_one_line(exc)}"
            ) from None
    statuses = {} if reprocess else latest_statuses(index)
    todo, skipped, retried = [], [], 0
    for obj in objects:
        pair = (obj, config.fleet_for(obj.url))
        status = statuses.get(obj.core_id)
        if status is None:
            todo.append(pair)
        elif status in FINAL_STATUSES or keep_failed:
            skipped.append(pair)
        else:
            todo.append(pair)
            retried += 1
    older = versions and max(versions) < SIGNATURE_VERSION
    version = max(versions) if older else SIGNATURE_VERSION
    return Plan(todo, skipped, version, retried, index)


def replace_failures(config: SweepConfig, plan_: Plan, written: dict[str, str]) -> int:
    """Remove the failed rows that newer rows replace: those of the cores this sweep wrote
    again (`written`: core_id -> sweep_id), and any a sweep stopped before it could remove
    them. A rerun leaves one row per core, unless --reprocess kept several analyses."""
    from triage.pipeline.sink import remove_rows, superseded_failures

    assert config.output is not None
    stale = superseded_failures(plan_.index, written)
    if not stale:
        return 0
    try:
        return remove_rows(config.output.dataset, stale, config.storage_options)
    except Exception as exc:  # fsspec/pyarrow: one line; the new rows are written already
        raise SweepError(
            f"the sweep's rows are written, but the failed rows they replace could not be "
            f"removed from {config.output.dataset} ({_one_line(exc)}); the next sweep "
            "removes them"
        ) from None


@contextlib.contextmanager
def dask_client(config: SweepConfig) -> Iterator[Any]:
    """A client of the configured scheduler, or of an embedded LocalCluster whose workers
    start their analysis children as they come up (and whose dashboard is attached on its
    first visit: `lazy_dashboard`)."""
    import dask
    from distributed import Client, LocalCluster

    from triage.pipeline.plugins import WarmAnalysisProcess

    quiet_dask_logs()
    ex = config.execution
    if ex.scheduler:
        client = _connect(ex.scheduler, ex.wait_for_workers)
        try:
            client.register_plugin(WarmAnalysisProcess(ex.memory_limit_mb))
            yield client
        finally:
            client.close()
        return
    # Dask's scratch space (lock files, each worker's directory) in a directory of this
    # sweep's own, removed with the cluster: nothing is left in TMPDIR.
    scratch = tempfile.mkdtemp(prefix="triage-sweep-")
    lazy = compat.lazy_dashboard_supported()
    settings = {**_embedded_cluster_config(), "temporary-directory": scratch}
    try:
        with dask.config.set(settings):
            try:
                cluster = LocalCluster(
                    n_workers=ex.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": not lazy},  # lazy: on first visit
                    plugins={WarmAnalysisProcess(ex.memory_limit_mb)},
                    local_directory=scratch,
                )
            except (OSError, RuntimeError, TimeoutError) as exc:
                raise SweepError(
                    f"cannot start the embedded Dask cluster: {_one_line(exc)}"
                ) from None
            client = Client(cluster)
            try:
                if lazy:
                    cluster.sync(_install_lazy_dashboard, cluster.scheduler)
                yield client
            finally:
                client.close()
                cluster.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _connect(address: str, wait_for_workers: float) -> Any:
    """A client of the scheduler at `address` once it has a worker; SweepError (one line)
    when the address is no Dask scheduler or it has no worker after `wait_for_workers` s."""
    from distributed import Client

    from triage.pipeline.scheduler import SchedulerError, check_address, probe

    try:
        probe(check_address(address))
    except SchedulerError as exc:
        raise SweepError(str(exc)) from None
    try:
        client = Client(address, timeout="5s")
    except (Exception, MemoryError) as exc:  # the probe passed: something odd answers there
        raise SweepError(
            f"cannot use the Dask scheduler at {address}: {_one_line(exc)}; check that the "
            "address is the scheduler's (tcp://HOST:PORT)"
        ) from None
    try:
        client.wait_for_workers(1, timeout=wait_for_workers)
    except (TimeoutError, OSError):
        client.close()
        raise SweepError(
            f"the Dask scheduler at {address} has no workers after {wait_for_workers:g} s; "
            f"start some (`dask worker {address}`) or wait longer (--wait-for-workers SECONDS)"
        ) from None
    except BaseException:
        client.close()
        raise
    return client


#: Dask settings of the embedded cluster. Its workers spend their time waiting on their
#: analysis child; Dask's diagnostics cost more than that: the statistical profiler samples
#: the task thread every 10 ms, event loops tick every 20 ms, memory and system monitors
#: poll. Measured on 100 cores, 2 workers: -0.2 to -0.3 s of a ~3.4 s sweep. The dashboard
#: still shows tasks, progress and (every second) memory; only its profile page is empty.
EMBEDDED_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def _embedded_cluster_config() -> dict[str, Any]:
    """Dask settings of the embedded cluster: EMBEDDED_CLUSTER_CONFIG, and workers forked from
    our forkserver if it runs."""
    if not forkserver.started():  # Dask's default (spawn)
        return dict(EMBEDDED_CLUSTER_CONFIG)
    # Dask would otherwise import numpy, pandas, ... here to preload a forkserver that is
    # already running (with forkserver.WORKER_PRELOAD); without the flag it does just that.
    compat.mark_forkserver_preloaded()
    return {**EMBEDDED_CLUSTER_CONFIG, "distributed.worker.multiprocessing-method": "forkserver"}


async def _install_lazy_dashboard(scheduler: Any) -> None:
    from triage.pipeline.lazy_dashboard import LazyDashboard

    LazyDashboard(scheduler).install()


def quiet_dask_logs() -> None:
    """Only errors from Dask and its web stack: the sweep reports progress itself. Dask's own
    configuration gives some child loggers (distributed.client, ...) levels of their own,
    so every logger under these names is set."""
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(
            ("distributed.", "bokeh.", "tornado.")
        ):
            logger.setLevel(logging.ERROR)


def dashboard_link(client: Any) -> str | None:
    """The Dask dashboard's address, when the scheduler actually serves one."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # an old or odd scheduler: no link rather than a wrong one
        return None
    return getattr(client, "dashboard_link", None) if "dashboard" in services else None


#: How often a sweep looks at its completed tasks (see `execute`): 100 cores, 2 workers,
#: A/B of 6 alternated runs: analysis phase 1.80 s when looking at each completion, 1.60 s
#: when looking every 30 ms, 1.65 s with 100 ms and twice the window.
BATCH_INTERVAL = 0.05


def execute(
    client: Any,
    plan_: Plan,
    info: SweepInfo,
    sink: Any,
    config: SweepConfig,
    on_record: Callable[[Row], None] = lambda r: None,
) -> Summary:
    """Run every task of the plan with a bounded number in flight; write each row as it comes.

    Dask's own cost is ~8 ms of CPU a task here (a third of a small core's), so tasks are
    submitted and their results fetched in batches: every BATCH_INTERVAL at most, whatever
    completed since the last look is gathered in one call and replaced by as many new tasks
    in one `map`. The window (8 tasks a worker) keeps every worker busy in between."""
    from distributed import as_completed

    started = time.perf_counter()
    summary = Summary(info.sweep_id, len(plan_.todo) + len(plan_.skipped), len(plan_.skipped))
    workers = max(1, len(client.scheduler_info().get("workers", {})) or config.execution.workers)
    in_flight = config.execution.max_in_flight or 8 * workers
    pending: dict[str, tuple[CoreObject, Fleet]] = {}
    queue = iter(plan_.todo)

    def submit(count: int) -> list[Any]:
        pairs = list(islice(queue, count))
        if not pairs:
            return []
        keys = [f"triage-core-{obj.core_id}" for obj, _ in pairs]
        pending.update(zip(keys, pairs, strict=True))
        return client.map(
            sweep_task,
            [obj for obj, _ in pairs],
            [fleet for _, fleet in pairs],
            [info] * len(pairs),
            key=keys,
            retries=config.execution.retries,
            pure=False,
        )

    futures = as_completed(submit(in_flight))
    looked = 0.0
    for batch in futures.batches():
        time.sleep(max(0.0, looked + BATCH_INTERVAL - time.monotonic()))  # let a batch gather
        batch += futures.next_batch(block=False)
        looked = time.monotonic()
        settled = [f for f in batch if f.status in SETTLED]
        # A result lost with a dead worker since it completed: Dask computes it again.
        futures.update(f for f in batch if f.status not in SETTLED)
        rows = _rows(client, settled, pending, info)
        for future in settled:
            del pending[future.key]
            future.release()
        futures.update(submit(len(settled)))
        for row in rows:
            sink.add(row)
            summary.analysed += 1
            summary.statuses[row["status"]] += 1
            summary.written[row["core_id"]] = row["sweep_id"]
            on_record(row)
    sink.flush()
    summary.seconds = time.perf_counter() - started
    return summary


#: Future states that are final (a "lost" or "pending" one will complete again).
SETTLED = frozenset({"finished", "error", "cancelled"})


def _rows(
    client: Any, futures: list[Any], pending: dict[str, tuple[CoreObject, Fleet]], info: SweepInfo
) -> list[Row]:
    """The rows of settled futures: their results, gathered in one call; one at a time if
    that fails (a result lost again, and not computable); an error row for a task that failed
    (KilledWorker: its workers kept dying)."""
    finished = [f for f in futures if f.status == "finished"]
    try:
        results = dict(zip([f.key for f in finished], client.gather(finished), strict=True))
    except Exception:
        results = {}
    rows = []
    for future in futures:
        try:
            result = results[future.key] if future.key in results else future.result()
            rows.append(json.loads(result))
        except Exception as exc:
            obj, fleet = pending[future.key]
            status: SweepStatus = (
                "worker_lost" if type(exc).__name__ == "KilledWorker" else "task_error"
            )
            rows.append(lost_record(obj, fleet, info, status, _one_line(exc)))
    return rows


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
