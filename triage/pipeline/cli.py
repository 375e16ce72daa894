"""`triage sweep`: options, configuration, progress and the closing summary."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from triage.signature import SIGNATURE_VERSION, VERSIONS

if TYPE_CHECKING:
    from triage.pipeline.config import SweepConfig


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="analyse every core under directories or object-storage URLs into a Parquet dataset",
        description="Find cores (by content) under SOURCEs, analyse them in parallel on Dask "
        "and write one row per core to a hive-partitioned Parquet dataset. Reruns skip cores "
        "already in the dataset.",
    )
    p.add_argument("sources", metavar="SOURCE", nargs="*", help="directory or fsspec URL")
    p.add_argument("--output", "-o", metavar="DATASET", help="dataset path or URL")
    p.add_argument("--config", metavar="FILE", help="pipeline configuration (TOML)")
    p.add_argument(
        "--fleet-root",
        metavar="NAME=DIR",
        action="append",
        default=[],
        help="add a library search root to fleet NAME (repeatable; 'default' = unmatched cores)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
        help="an existing Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else embedded)",
    )
    p.add_argument(
        "--wait-for-workers",
        type=float,
        metavar="SECONDS",
        help="how long an existing scheduler may have no workers before the sweep gives up "
        "(default 60)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="embedded cluster worker processes")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="per core (default 300)")
    p.add_argument("--reprocess", action="store_true", help="analyse cores already in the dataset")
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="do not analyse again the cores whose analysis failed before (by default they "
        "are, and the new row replaces the failed one)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be analysed, and stop")
    p.set_defaults(func=cmd_sweep)


def add_groups_parser(sub: Any) -> None:
    p = sub.add_parser(
        "groups",
        help="crashes grouped by signature across sweeps",
        description="Group the dataset's crashes by signature: counts, hosts, fleets, Python "
        "versions, first and last seen, cores per sweep over the last sweeps, and whether "
        "the signature is new in the latest sweep.",
    )
    p.add_argument("dataset", metavar="DATASET", help="dataset path or URL")
    p.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table")
    p.add_argument("--fleet", help="only this fleet")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="only sweeps on or after this date")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="only sweeps on or before this date")
    p.add_argument("--signal", metavar="NAME", help="only this signal, e.g. SIGSEGV")
    p.add_argument("--sweeps", type=int, default=7, metavar="N", help="trend over N sweeps")
    p.add_argument("--config", metavar="FILE", help="take storage_options from this config")
    p.add_argument("--no-color", action="store_true")
    p.set_defaults(func=cmd_groups)


def add_ci_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ci",
        help="triage the cores a CI job left: known or new against a baseline",
        description="Analyse every core under CORE_DIR in this process, print each crash with "
        "its stack and signature, say which are known and which are new against the "
        "baseline, write a Markdown summary (to $GITHUB_STEP_SUMMARY when set) and JUnit "
        "XML. Exit status: 0 nothing to fail on, 1 crashes to fail on (see --fail-on), "
        "2 usage error, 3 triage itself failed: it could not read the cores or the baseline, "
        "or write an output (--junit, --json, --markdown, $GITHUB_STEP_SUMMARY).",
    )
    p.add_argument("core_dir", metavar="CORE_DIR")
    p.add_argument(
        "--baseline",
        metavar="DATASET_OR_FILE",
        help="known crashes: a sweep dataset, or JSON from `triage ci --json` / `triage groups`",
    )
    p.add_argument(
        "--fail-on",
        choices=("any", "new", "never"),
        default="new",
        help="exit 1 on any crash, only on crashes the baseline does not know (default), or never",
    )
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (one testcase per core)")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown summary here too")
    p.add_argument("--json", metavar="FILE", help="write the results (usable as a baseline)")
    p.add_argument("--lib-search-root", metavar="DIR")
    p.add_argument(
        "--locals",
        action="store_true",
        help="show every Python frame's arguments and locals (terminal, Markdown, JUnit)",
    )
    p.add_argument(
        "--native",
        action="store_true",
        help="show the native (C) frames too, merged with the Python frames",
    )
    p.add_argument("--config", metavar="FILE", help="take storage_options from this config")
    p.add_argument("--no-color", action="store_true")
    p.set_defaults(func=cmd_ci)


def cmd_ci(args: argparse.Namespace) -> int:
    from triage.pipeline import ci
    from triage.pipeline.config import ConfigError
    from triage.render import use_color

    outputs = _ci_outputs(args)
    problem = next(filter(None, (_unwritable(option, path) for option, path in outputs)), None)
    if problem:  # before the analysis, which may take long
        return fail(problem, ci.EXIT_TRIAGE_FAILED)
    try:
        paths = ci.find_cores(args.core_dir)
        known = (
            ci.load_baseline(args.baseline, storage_options_from(args.config))
            if args.baseline
            else set()
        )
    except (ci.CiError, ConfigError) as exc:
        fail(str(exc))
        return ci.EXIT_TRIAGE_FAILED
    crashes = ci.analyse(
        paths, known, lib_search_root=args.lib_search_root, locals=args.locals, native=args.native
    )
    ci.print_crashes(crashes, color=use_color(sys.stdout, args.no_color), native=args.native)
    summary = ci.markdown(crashes, args.fail_on, args.baseline)
    contents = {
        "--markdown": (summary.encode(), "ab"),
        "$GITHUB_STEP_SUMMARY": (summary.encode(), "ab"),
        "--junit": (ci.junit(crashes, args.fail_on), "wb"),
        "--json": ((ci.to_json(crashes) + "\n").encode(), "wb"),
    }
    status = None
    for option, target in outputs:
        data, mode = contents[option]
        try:
            with open(target, mode) as f:
                f.write(data)
        except OSError as exc:
            status = fail(
                f"cannot write {option} {target}: {exc.strerror or exc}", ci.EXIT_TRIAGE_FAILED
            )
    if status is not None:
        return status
    failing = ci.failing(crashes, args.fail_on)
    new = sum(not c.known for c in crashes)
    log(
        f"{len(crashes)} crash(es), {new} new, {len(crashes) - new} known; "
        f"failing on {args.fail_on}: {len(failing)}"
    )
    return ci.EXIT_CRASHES if failing else ci.EXIT_OK


def _ci_outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(option, path) of every file `triage ci` writes."""
    given = [
        ("--markdown", args.markdown),
        ("$GITHUB_STEP_SUMMARY", os.environ.get("GITHUB_STEP_SUMMARY")),
        ("--junit", args.junit),
        ("--json", args.json),
    ]
    return [(option, path) for option, path in given if path]


def _unwritable(option: str, path: str) -> str | None:
    """Why `path` cannot be written, found without writing it (None: it may be)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"cannot write {option} {path}: it is a directory; give a file name"
    if not os.path.isdir(directory):
        return f"cannot write {option} {path}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK) and not os.access(path, os.W_OK):
        return f"cannot write {option} {path}: permission denied"
    return None


def add_regroup_parser(sub: Any) -> None:
    p = sub.add_parser(
        "regroup",
        help="recompute the dataset's signatures with the current rules (no cores needed)",
        description="Recompute every row's crash signature from the report stored in the "
        "row (its frames and signal), with each fleet's signature rules from --config, as "
        "the current signature version (or --signature-version), and rewrite the files in "
        "place (each replaced atomically). Moves a dataset of version-1 signatures to "
        "version 2. The rows of a fleet --config does not list keep their signatures (the "
        "dataset does not store the rules they were made with), except to change version, "
        "with the default rules; the default fleet has the default rules.",
    )
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--config", metavar="FILE", help="fleets (signature rules), storage_options")
    p.add_argument(
        "--signature-version",
        type=int,
        choices=VERSIONS,
        default=SIGNATURE_VERSION,
        help=f"the signature version to compute (default: {SIGNATURE_VERSION}, the current)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print, per fleet, how many rows and groups would change; write nothing",
    )
    p.set_defaults(func=cmd_regroup)


def cmd_regroup(args: argparse.Namespace) -> int:
    from triage.pipeline.config import ConfigError, SweepConfig, load_config
    from triage.pipeline.regroup import describe, describe_fleets, regroup, warnings

    try:
        config = load_config(args.config) if args.config else SweepConfig()
        summary = regroup(args.dataset, config, args.signature_version, dry_run=args.dry_run)
    except ConfigError as exc:
        return fail(str(exc))
    except Exception as exc:  # fsspec/pyarrow: one line
        return fail(f"cannot regroup {args.dataset}: {exc}")
    if args.dry_run:
        for line in describe_fleets(summary):
            print(line)
    for line in warnings(summary):
        log(f"warning: {line}")
    log(describe(summary))
    return 0


def storage_options_from(config_path: str | None) -> dict[str, Any]:
    """The storage_options of a configuration file ({} without one)."""
    if not config_path:
        return {}
    from triage.pipeline.config import load_config

    return load_config(config_path).storage_options


def cmd_groups(args: argparse.Namespace) -> int:
    from triage.pipeline import groups
    from triage.pipeline.config import ConfigError
    from triage.pipeline.filters import (
        FilterError,
        check_fleet,
        check_range,
        check_sweeps,
        parse_date,
        parse_signal,
    )
    from triage.render import use_color

    try:
        filters = groups.Filters(
            args.fleet,
            parse_date("--since", args.since),
            parse_date("--until", args.until),
            parse_signal(args.signal),
        )
        check_range(filters.since, filters.until)
        check_sweeps(args.sweeps)
    except FilterError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        options = storage_options_from(args.config)
        if args.fleet is not None:
            check_fleet(args.fleet, groups.dataset_fleets(args.dataset, options), args.dataset)
        result = groups.compute_groups(args.dataset, options, filters, sweeps=args.sweeps)
    except FilterError as exc:
        return fail(str(exc), EXIT_USAGE)
    except (ConfigError, FileNotFoundError) as exc:
        return fail(str(exc))
    except Exception as exc:  # duckdb/fsspec errors: one line, never a traceback
        return fail(f"cannot read dataset {args.dataset}: {exc}")
    if args.format == "json":
        sys.stdout.write(groups.to_json(result) + "\n")
    elif args.format == "csv":
        sys.stdout.write(groups.to_csv(result))
    elif args.format == "markdown":
        sys.stdout.write(groups.to_markdown(result))
    else:
        groups.print_table(result, color=use_color(sys.stdout, args.no_color))
    return 0


def build_config(args: argparse.Namespace) -> SweepConfig:
    """The configuration file (if any) with the command line's options on top."""
    from triage.pipeline.config import ConfigError, Fleet, SweepConfig, load_config, validate_config

    config = load_config(args.config) if args.config else SweepConfig()
    raw = config.model_dump(exclude_none=True)
    if args.sources:
        raw["sources"] = args.sources
    if args.output:
        raw.setdefault("output", {})["dataset"] = args.output
    ex = raw.setdefault("execution", {})
    if args.scheduler:
        ex["scheduler"] = args.scheduler
    if args.workers is not None:
        ex["workers"] = args.workers
    if args.time_limit is not None:
        ex["time_limit"] = args.time_limit
    if args.wait_for_workers is not None:
        ex["wait_for_workers"] = args.wait_for_workers
    fleets = raw.setdefault("fleets", [])
    for item in args.fleet_root:
        name, sep, root = item.partition("=")
        if not sep or not name or not root:
            raise ConfigError(f"--fleet-root {item!r}: expected NAME=DIR")
        match = next((f for f in fleets if f["name"] == name), None)
        if match is None:
            if name != "default":
                raise ConfigError(
                    f"--fleet-root {item!r}: no fleet named {name!r} in the configuration "
                    f"(use default=DIR for cores that match no fleet)"
                )
            match = Fleet(name="default").model_dump()
            fleets.append(match)
        match.setdefault("lib_search_root", []).append(root)
    config = validate_config(raw, args.config or "command line")
    if config.execution.scheduler:
        from triage.pipeline.scheduler import SchedulerError, check_address

        try:
            check_address(config.execution.scheduler)
        except SchedulerError as exc:
            raise ConfigError(str(exc)) from None
    if not config.sources:
        raise ConfigError("nothing to sweep: give SOURCE arguments or `sources` in --config")
    if config.output is None and not args.dry_run:
        raise ConfigError("no output: give --output DATASET or [output] dataset in --config")
    return config


def cmd_sweep(args: argparse.Namespace) -> int:
    if not args.dry_run and not args.scheduler:
        from triage.pipeline import forkserver

        # First of all: it imports for the embedded cluster's workers while this process
        # imports its own modules and lists the sources (needless, and harmless, when the
        # configuration file names a scheduler).
        forkserver.start()
    from triage.pipeline.config import ConfigError
    from triage.pipeline.run import (
        SweepError,
        dashboard_link,
        dask_client,
        execute,
        new_sweep_info,
        plan,
        replace_failures,
    )

    try:
        config = build_config(args)
        the_plan = plan(config, reprocess=args.reprocess, keep_failed=args.keep_failed)
    except (ConfigError, SweepError) as exc:
        return fail(str(exc))
    retried = _retried(the_plan.retried)
    if args.dry_run:
        from triage.pipeline.sources import printable

        for obj, fleet in the_plan.todo:
            print(f"{fleet.name}\t{obj.size}\t{printable(obj.url)}")
        log(
            f"{len(the_plan.todo)} to analyse{retried}, {len(the_plan.skipped)} already in "
            "the dataset"
        )
        return 0
    from triage.pipeline.sink import ParquetSink

    assert config.output is not None
    info = new_sweep_info(config, signature_version=the_plan.signature_version)
    if the_plan.signature_version != SIGNATURE_VERSION:
        log(
            f"the dataset's signatures are version {the_plan.signature_version}: new rows get "
            f"that version too, so its groups stay comparable; `triage regroup "
            f"{config.output.dataset}` moves it to version {SIGNATURE_VERSION}"
        )
    if not the_plan.todo:
        log(
            f"nothing new to analyse: {len(the_plan.skipped)} cores already in "
            f"{config.output.dataset}"
        )
        try:  # failed rows a stopped sweep replaced but could not remove yet
            replace_failures(config, the_plan, {})
        except SweepError as exc:
            return fail(str(exc))
        return 0
    # pyarrow and the Arrow schema are needed only when rows are written; import and build
    # them while the cluster starts its workers (this process waits then), not before: the
    # import of Dask here comes first, as it is what the cluster waits on.
    import distributed  # noqa: F401

    threading.Thread(target=_prepare_writer, daemon=True).start()
    try:
        with dask_client(config) as client:
            log(
                f"sweep {info.sweep_id}: {len(the_plan.todo)} cores to analyse{retried}, "
                f"{len(the_plan.skipped)} already in {config.output.dataset}"
            )
            dashboard = dashboard_link(client)
            if dashboard:
                log(f"Dask dashboard: {dashboard}")
            with (
                ParquetSink(
                    config.output.dataset, config.storage_options, config.output.batch_size
                ) as sink,
                Progress(len(the_plan.todo)) as progress,
            ):
                summary = execute(client, the_plan, info, sink, config, progress.update)
        replace_failures(config, the_plan, summary.written)
    except SweepError as exc:
        return fail(str(exc))
    print_summary(summary)
    return 0


def _retried(count: int) -> str:
    """What the sweep's first line says of the failed analyses it retries."""
    if not count:
        return ""
    return f" ({count} of them failed before and are retried; --keep-failed keeps them)"


def _prepare_writer() -> None:
    import pyarrow.parquet  # noqa: F401 - imported here, off the path of the first write

    from triage.pipeline.schema import arrow_schema

    arrow_schema()


def log(message: str) -> None:
    print(f"triage: {message}", file=sys.stderr, flush=True)


#: Exit status of a usage error (a bad option value), as argparse gives.
EXIT_USAGE = 2


def fail(message: str, status: int = 1) -> int:
    """Say `message` on one line of stderr; returns `status` (1: the command failed)."""
    print("triage: error: " + " ".join(message.split()), file=sys.stderr)
    return status


class Progress:
    """A progress bar on a terminal (done/total, rate, ETA, errors), log lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.errors = 0
        self.started = time.monotonic()
        self.last_log = self.started
        self.bar: Any = None

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("analysing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} cores/s"),
                TextColumn("[red]{task.fields[errors]} errors"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("sweep", total=self.total, rate=0.0, errors=0)
        return self

    def update(self, record: Any) -> None:
        self.done += 1
        self.errors += record["status"] != "ok"
        now = time.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, rate=rate, errors=self.errors)
        elif now - self.last_log >= 5 or self.done == self.total:
            self.last_log = now
            left = (self.total - self.done) / rate if rate else 0
            log(
                f"{self.done}/{self.total} analysed, {self.errors} errors, "
                f"{rate:.1f} cores/s, ETA {left:.0f} s"
            )

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def print_summary(summary: Any) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items()) if k != "ok")
    failed = f"{summary.failed} failed" + (f": {kinds}" if kinds else "")
    log(
        f"sweep {summary.sweep_id} done: {summary.analysed} analysed "
        f"({summary.statuses.get('ok', 0)} ok, {failed}), "
        f"{summary.skipped} skipped as already analysed, {summary.seconds:.1f} s, "
        f"{summary.rate:.2f} cores/s"
    )
