"""The private interfaces triage uses (triage/compat.py) are still what the installed
libraries have. A failure here means an upgrade changed one: triage keeps working through
the public fallback, only slower, until compat.py follows the library."""

from __future__ import annotations

import subprocess
import sys

from triage import compat


def test_exit_handlers_run_through_atexit_hook():
    program = (
        "import atexit, os, sys\n"
        "from triage import compat\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "print('hook', compat.run_exit_handlers(), flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.stdout.splitlines() == ["handler ran", "hook True"]


def test_dask_reads_the_forkserver_preload_flag():
    import inspect

    import distributed.utils

    assert compat.forkserver_preload_flag()
    assert "_forkserver_preload_set" in inspect.getsource(distributed.utils)
    saved = distributed.utils._forkserver_preload_set
    try:
        assert compat.mark_forkserver_preloaded()
        assert distributed.utils._forkserver_preload_set is True
    finally:
        distributed.utils._forkserver_preload_set = saved


def test_scheduler_web_application_takes_and_drops_applications():
    """The lazy dashboard's hooks, on a real RoutingApplication: an application added later
    serves what the scheduler's own routes do not, and is dropped again."""
    from distributed.http.routing import RoutingApplication
    from tornado import web

    assert compat.lazy_dashboard_supported()

    class Scheduler:
        http_application = RoutingApplication([])

    extra = web.Application([])
    compat.add_web_application(Scheduler, extra)
    assert Scheduler.http_application.applications == [extra]
    compat.remove_web_application(Scheduler, extra)
    assert Scheduler.http_application.applications == []
    import distributed.dashboard.scheduler as dashboard

    assert callable(dashboard.connect)
