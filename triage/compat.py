"""Every use of another library's private interface, in one place, each with a public fallback.

triage reaches past three libraries' public interfaces, for speed only:

* Python's `atexit._run_exitfuncs`: run the exit handlers, then leave with `os._exit`, which
  skips the interpreter's teardown of ~1000 modules after a sweep (0.3-0.5 s). Fallback: the
  normal exit (`sys.exit`), slower but the same outcome.
* Dask's `distributed.utils._forkserver_preload_set`: tells Dask that the forkserver the
  sweep started first thing is already preloaded, so that Dask does not import numpy,
  pandas, ... in the client to preload it again. Fallback: Dask's own preload (slower start).
* Dask's scheduler web application (`distributed.http.routing.RoutingApplication`'s
  `applications` list and `add_application`, and `distributed.dashboard.scheduler.connect`):
  the embedded cluster's dashboard is attached on its first visit instead of at start-up
  (bokeh's import costs ~0.7 s of CPU). Fallback: the dashboard started with the scheduler.

Each check says whether the private path is still there, as the installed library spells
it; tests/test_compat.py fails when an upgrade changes one of them, while the command keeps
working through the fallback.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
from typing import Any


def run_exit_handlers() -> bool:
    """Run and clear the `atexit` handlers now; False (nothing run) when this Python has no
    such hook, and the caller must exit the normal way."""
    hook = getattr(atexit, "_run_exitfuncs", None)
    if not callable(hook):
        return False
    hook()
    return True


def forkserver_preload_flag() -> bool:
    """Whether Dask still has `distributed.utils._forkserver_preload_set` (a cheap check at
    every sweep; tests/test_compat.py checks that Dask's own code still reads it)."""
    import distributed.utils

    return isinstance(getattr(distributed.utils, "_forkserver_preload_set", None), bool)


def mark_forkserver_preloaded() -> bool:
    """Tell Dask the forkserver is preloaded; False when Dask no longer has that flag (it
    then preloads itself, as without triage's forkserver)."""
    if not forkserver_preload_flag():
        return False
    import distributed.utils

    distributed.utils._forkserver_preload_set = True
    return True


#: The module whose `connect(application, http_server, scheduler)` attaches Dask's dashboard.
DASHBOARD_MODULE = "distributed.dashboard.scheduler"


def lazy_dashboard_supported() -> bool:
    """Whether the scheduler's web application can take an application later (and has the
    list to drop it from), and Dask's dashboard module is there to connect (tests/
    test_compat.py checks the same on a real RoutingApplication)."""
    try:
        from distributed.http.routing import RoutingApplication
    except ImportError:
        return False
    if not callable(getattr(RoutingApplication, "add_application", None)):
        return False
    return importlib.util.find_spec(DASHBOARD_MODULE) is not None


def add_web_application(scheduler: Any, application: Any) -> None:
    """Serve `application` on the scheduler's HTTP server, behind its own routes."""
    scheduler.http_application.add_application(application)


def remove_web_application(scheduler: Any, application: Any) -> None:
    scheduler.http_application.applications.remove(application)


def connect_dashboard(scheduler: Any) -> None:
    """Attach Dask's dashboard to a running scheduler (imports bokeh)."""
    module = importlib.import_module(DASHBOARD_MODULE)
    module.connect(scheduler.http_application, scheduler.http_server, scheduler)
