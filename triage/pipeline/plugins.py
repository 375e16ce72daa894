"""Dask worker plugins of the sweep (imported on workers, where distributed is present)."""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from triage.pipeline.task import close_processes, warm_analysis_process


class WarmAnalysisProcess(WorkerPlugin):
    """Start each worker's analysis child as soon as the worker joins, and stop it on exit."""

    name = "triage-warm-analysis-process"

    def __init__(self, memory_limit_mb: int) -> None:
        self.memory_limit_mb = memory_limit_mb

    def setup(self, worker: Any) -> None:
        warm_analysis_process(self.memory_limit_mb)

    def teardown(self, worker: Any) -> None:
        close_processes()
