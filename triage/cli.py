"""The `triage` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from triage import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

#: The distribution's name on PyPI (the command is `triage`).
DISTRIBUTION = "crash-triage"
#: Top-level modules of the `sweep` extra: a command that needs one says what to install.
SWEEP_EXTRA = ("dask", "distributed", "pyarrow", "fsspec", "s3fs", "duckdb", "rich", "bokeh")
#: The commands that need all of it (`ci` needs it only for a dataset baseline).
PIPELINE_COMMANDS = frozenset({"sweep", "groups", "regroup", "dashboard"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triage",
        description="Crash triage for fleets of Python programs, from ELF core dumps.",
    )
    parser.add_argument("--version", action="version", version=f"triage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    core = sub.add_parser(
        "core",
        help="analyse one core file",
        description="Analyse one core file (plain, gzip, zstd, xz or lz4; recognised by content).",
    )
    core.add_argument("core", metavar="CORE", help="the core file")
    core.add_argument(
        "executable",
        metavar="EXECUTABLE",
        nargs="?",
        help="the executable that ran (default: the one named in the core)",
    )
    where = core.add_mutually_exclusive_group()
    where.add_argument(
        "--lib-search-path",
        metavar="PATHS",
        help="colon-separated directories to search for mapped libraries by file name",
    )
    where.add_argument(
        "--lib-search-root",
        metavar="DIR",
        help="a directory searched recursively for libraries; also tried as a sysroot",
    )
    core.add_argument(
        "-v", "--verbose", action="count", default=0, help="say where each library was found"
    )
    core.add_argument("--no-color", action="store_true", help="never colour (also: NO_COLOR)")
    core.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    core.add_argument(
        "--exhaustive",
        action="store_true",
        help="when symbols do not lead to the interpreter, search all of the core's memory",
    )
    core.add_argument(
        "--locals",
        action="store_true",
        help="show the arguments and local variables of every Python frame",
    )
    core.add_argument(
        "--native",
        action="store_true",
        help="show the native (C) frames too, merged with the Python frames",
    )
    core.add_argument(
        "--native-all",
        action="store_true",
        help="--native, and the threads the interpreter does not know (native frames only)",
    )
    core.add_argument(
        "--native-last",
        action="store_true",
        help="--native, showing only the native frames after each thread's last Python frame",
    )
    core.add_argument(
        "--native-unfiltered",
        action="store_true",
        help="--native, showing also the frames of the interpreter's call machinery that "
        "are hidden by default (as PyStack hides them)",
    )
    core.add_argument(
        "--max-core-size",
        metavar="SIZE",
        type=size_argument,
        help="refuse a core bigger than SIZE once decompressed (e.g. 20G; K, M, G, T are "
        "powers of 1024)",
    )
    core.add_argument(
        "--header-only",
        action="store_true",
        help="only the core file information (process, signal, libraries): no stacks",
    )
    core.set_defaults(func=cmd_core)

    from triage.pipeline.cli import add_ci_parser, add_groups_parser, add_regroup_parser
    from triage.pipeline.cli import add_parser as add_sweep
    from triage.pipeline.dashboard_cli import add_dashboard_parser

    add_sweep(sub)
    add_groups_parser(sub)
    add_regroup_parser(sub)
    add_ci_parser(sub)
    add_dashboard_parser(sub)
    return parser


def size_argument(text: str) -> int:
    """A size option's value in bytes (`20G`); a usage error, saying what is expected, else."""
    from triage.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_core(args: argparse.Namespace) -> int:
    from triage.engine import analyze_core
    from triage.render import NativeView, render_text, render_warnings, use_color

    native = args.native or args.native_all or args.native_last or args.native_unfiltered
    report = analyze_core(
        args.core,
        args.executable,
        lib_search_path=args.lib_search_path,
        lib_search_root=args.lib_search_root,
        python=not args.header_only,
        exhaustive=args.exhaustive,
        locals=args.locals,
        native=native,
        max_core_size=args.max_core_size,
    )
    if args.format == "json":
        from triage.report import to_json

        # JSON is UTF-8 whatever the locale says (RFC 8259); the report's strings are valid
        # Unicode, so any parser reads it.
        sys.stdout.flush()
        sys.stdout.buffer.write((to_json(report) + "\n").encode("utf-8"))
        if report.error is not None:
            _error_line(report.error.message)
        return EXIT_ERROR if report.error else EXIT_OK
    color = use_color(sys.stdout, args.no_color)
    render_warnings(report, color=use_color(sys.stderr, args.no_color))
    roots = args.lib_search_root or []
    source_roots = [roots] if isinstance(roots, str) else roots
    sys.stdout.write(
        render_text(
            report,
            color=color,
            verbose=args.verbose,
            source_roots=source_roots,
            native=NativeView(
                shown=native,
                all_threads=args.native_all,
                last_only=args.native_last,
                unfiltered=args.native_unfiltered,
            ),
        )
    )
    sys.stdout.flush()
    if report.error is not None:
        _error_line(report.error.message)
        return EXIT_ERROR
    return EXIT_OK


def _error_line(message: str) -> None:
    sys.stderr.write("triage: error: " + " ".join(message.split()) + "\n")


def _needs_sweep_extra(command: str, missing: str) -> None:
    _error_line(
        f"triage {command} needs the sweep extra ({missing} is not installed): "
        f"pip install '{DISTRIBUTION}[sweep]'"
    )


def _forgiving_streams() -> None:
    """Text the terminal's encoding cannot show (non-ASCII names under LC_ALL=C with
    PYTHONIOENCODING=ascii, say) is written escaped (`\\xfc`), never a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # replaced or closed streams
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    _forgiving_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in PIPELINE_COMMANDS:
        import importlib.util

        missing = [m for m in SWEEP_EXTRA if importlib.util.find_spec(m) is None]
        if missing:
            _needs_sweep_extra(args.command, missing[0])
            return EXIT_USAGE
    try:
        return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("triage: interrupted\n")
        return 130
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        if module not in (*SWEEP_EXTRA, "tomli"):
            raise
        _needs_sweep_extra(args.command, module)
        return EXIT_USAGE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _failure_status(args.command)
    except MemoryError:
        _error_line(_out_of_memory(args.command))
        return _failure_status(args.command)


def _failure_status(command: str) -> int:
    """The exit status of a command that could not do its job: 1, except for `triage ci`,
    whose 1 means "crashes to fail on" (3: triage itself failed)."""
    return 3 if command == "ci" else EXIT_ERROR


def _out_of_memory(command: str) -> str:
    """What to say when `command` ran out of memory: only `triage core` has a core to blame."""
    if command == "core":
        return (
            "out of memory; give triage more memory (ulimit -v / -d) or analyse this core "
            "on a bigger machine"
        )
    return (
        f"out of memory in `triage {command}` itself (not in the analysis of a core); give it "
        "more memory (ulimit -v / -d), and check the addresses it was given"
    )


def run() -> NoReturn:
    """The `triage` command: `main()`, then a quick exit.

    Once a command has returned, its files are written and closed and its Dask cluster is
    shut down; what is left is the interpreter tearing down every module it imported, which
    after a sweep (Dask, bokeh, pyarrow: ~1000 modules) takes 0.3-0.5 s. The exit handlers
    still run and the standard streams are flushed; only that teardown is skipped."""
    from triage import compat

    status = main()
    if not compat.run_exit_handlers():
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        # closed or a broken pipe: nothing more can be said anyway
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
