"""The embedded cluster's dashboard, attached on its first visit.

Dask's dashboard is a bokeh application, and importing it costs ~0.7 s of CPU: a fifth of
a 100-core sweep on two cores, spent whether or not anybody looks. So the embedded scheduler
starts with its HTTP server (health, metrics, JSON API: the address printed at once) but
without bokeh, and the first request for a dashboard page imports bokeh (in a thread, while
the scheduler's loop goes on), attaches Dask's own dashboard as usual, and redirects to the
same address, which the dashboard then serves. A failure to attach answers 503 with the
reason and does not touch the sweep.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from tornado import web

from triage import compat


class _FirstVisit(web.RequestHandler):
    """Any page the scheduler itself does not serve, until the dashboard is attached."""

    def initialize(self, dashboard: LazyDashboard) -> None:
        self.dashboard = dashboard

    async def get(self, *args: Any) -> None:
        problem = await self.dashboard.attach()
        if problem is None:
            self.redirect(self.request.uri or "/")
            return
        self.set_status(503)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"the Dask dashboard cannot be started: {problem}\n")


class LazyDashboard:
    """Stands in for the dashboard on a scheduler started with `dashboard=False`."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.app = web.Application([(r"/.*", _FirstVisit, {"dashboard": self})])
        self.attached = False
        self._lock: asyncio.Lock | None = None

    def install(self) -> None:
        """Serve the first visit (call on the scheduler's event loop)."""
        compat.add_web_application(self.scheduler, self.app)

    async def attach(self) -> str | None:
        """Attach Dask's dashboard once; None when it is attached, else why not."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self.attached:
                return None
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, importlib.import_module, compat.DASHBOARD_MODULE)
                compat.connect_dashboard(self.scheduler)
            except Exception as exc:  # bokeh missing or broken: say so, keep the sweep going
                return f"{type(exc).__name__}: {exc}"
            compat.remove_web_application(self.scheduler, self.app)
            self.attached = True
            return None
