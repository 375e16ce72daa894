"""The process the embedded cluster's workers are forked from, started first thing.

Dask starts worker processes with `spawn` by default: each new worker is a fresh interpreter
that imports Dask and the task code again (0.5-1 s each here). A forkserver started at the
very beginning of `triage sweep` imports them once, on another core, while the command
imports its own modules and lists the sources; every worker (and every replacement of a
worker that died) is then forked from it, ready. This module imports nothing heavy, so the
command can start it before anything else.
"""

from __future__ import annotations

import multiprocessing
import os

#: What the forkserver imports before it forks workers (embedded_worker: workers ignore
#: SIGINT, see there).
WORKER_PRELOAD = (
    "distributed",
    "triage.pipeline.task",
    "triage.pipeline.plugins",
    "triage.pipeline.embedded_worker",
)

_started = False


def start() -> bool:
    """Start the workers' forkserver now; False where the platform has none."""
    global _started
    from triage.pipeline.childenv import child_environment, current_directory_shadows

    if "forkserver" not in multiprocessing.get_all_start_methods() or current_directory_shadows():
        return False  # Dask spawns its workers, which take this process's sys.path
    from multiprocessing import forkserver

    # The forkserver (`python -c`) and every process it forks import this triage, not a
    # `triage` folder of the current directory (childenv).
    os.environ.update(child_environment())

    # The workers log as Dask configures them when they import it. A Ctrl-C printed each
    # worker's warnings about its cancelled task, and a worker whose heartbeat meets the
    # scheduler closing at the end of a sweep logs an ERROR with a traceback (seen once in
    # a CI run on a loaded machine) among the sweep's lines. What a sweep must say about a
    # core is in its row; the embedded workers log only what is critical.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_PRELOAD))
    forkserver.ensure_running()
    _started = True
    return True


def started() -> bool:
    """Whether `start` started it (the embedded cluster then forks its workers from it)."""
    return _started
