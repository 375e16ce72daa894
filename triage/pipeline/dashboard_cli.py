"""`triage dashboard DATASET -o FILE.html`: options and errors of the dashboard command."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_dashboard_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard",
        help="write the dataset's crashes as one self-contained HTML page",
        description="Write a static HTML page (no network needed to view it) with the top "
        "signatures and their trend over the last sweeps, the signatures new in the latest "
        "sweep, cores by fleet, Python version, signal and analysis status (files that are "
        "not cores and failed analyses apart), filters by fleet, Python version and sweep "
        "dates, and a page per signature (FILE.html#sig=ID): its cores with the command that "
        "reproduces each, hosts, Python versions, timeline and example stack.",
    )
    p.add_argument("dataset", metavar="DATASET", help="dataset path or URL")
    p.add_argument("-o", "--output", metavar="FILE.html", required=True, help="the page to write")
    p.add_argument(
        "--sweeps", type=int, default=14, metavar="N", help="trend over the last N sweeps"
    )
    p.add_argument("--config", metavar="FILE", help="take storage_options from this config")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from triage.pipeline.cli import EXIT_USAGE, fail, storage_options_from
    from triage.pipeline.config import ConfigError
    from triage.pipeline.dashboard import build_dashboard, write_html

    if args.sweeps < 1:
        return fail(f"--sweeps must be at least 1, not {args.sweeps}", EXIT_USAGE)
    try:
        options = storage_options_from(args.config)
        html = build_dashboard(args.dataset, options, sweeps=args.sweeps)
    except (ConfigError, FileNotFoundError) as exc:
        return fail(str(exc))
    except Exception as exc:  # duckdb/fsspec errors: one line, never a traceback
        return fail(f"cannot read dataset {args.dataset}: {exc}")
    try:
        out = write_html(args.output, html)
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    print(f"triage: dashboard written to {out}", file=sys.stderr)
    return 0
