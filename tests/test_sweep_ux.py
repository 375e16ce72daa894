"""`triage sweep` and `triage groups` as a user meets them when something is off: a wrong
scheduler address, failed analyses to retry, a `triage` folder in the current directory,
odd files among the cores (a name that is not UTF-8, a FIFO, symbolic link loops), TMPDIR
left as it was, a narrow terminal, bad filter values.

Everything runs for real: `python -m triage` (or the installed `triage` script) in a
subprocess, an embedded Dask cluster, a real `dask scheduler` without workers and its
dashboard, a plain `http.server`, a closed port, all on 127.0.0.1; cores made at test time.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="pyarrow is not installed")
pytest.importorskip("duckdb", reason="duckdb is not installed")
pytest.importorskip("distributed", reason="dask.distributed is not installed")

import corefactory
from s3server import closed_port
from test_sweep import (
    DASK,
    ROOT,
    Run,
    cluster,  # noqa: F401 - a fixture
    installed_cores,  # noqa: F401 - a fixture
    make_corpus,
    records,
    sweep_env,
    sweep_killing_a_worker,
    write_config,
)

#: The error of every sweep whose scheduler is not a Dask scheduler's.
NOT_A_SCHEDULER = (
    "is not a Dask scheduler: it is a web server (the Dask dashboard, say, which is not the "
    "scheduler); give the scheduler's own address (tcp://HOST:PORT, port 8786 by default; the "
    "dashboard is on 8787)"
)


def triage(
    *args: str | os.PathLike[str],
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    script: bool = False,
    timeout: float = 180,
) -> Run:
    """`python -m triage ARGS` (`script`: the installed `triage` command) as a user runs it."""
    command = [str(Path(sys.executable).parent / "triage")] if script else [sys.executable, "-m"]
    if not script:
        command.append("triage")
    argv = [os.fsdecode(a) for a in args]
    started = time.monotonic()
    proc = subprocess.run(
        [*command, *argv],
        capture_output=True,
        text=True,
        env={**sweep_env(), **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def assert_fails(run: Run, message: str, status: int = 1) -> None:
    """One line on stderr, nothing on stdout, the exit status, no traceback."""
    assert "Traceback" not in run.err, run.describe()
    assert (run.rc, run.out, run.lines) == (status, "", [f"triage: error: {message}"]), (
        run.describe()
    )


@pytest.fixture
def one_core(installed_cores, tmp_path: Path) -> Path:  # noqa: F811
    """A directory holding one core."""
    make_corpus(tmp_path / "one", installed_cores[:1], 1)
    return tmp_path / "one"


# --------------------------------------------------------------------------------------------
# 1. --scheduler checked before anything is submitted


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        (
            "http://127.0.0.1:8787",
            "an http:// address is a web server's (the Dask dashboard's, port 8787 by default), "
            "not the scheduler's; give tcp://HOST:PORT (port 8786 by default; `dask scheduler` "
            "prints it as `Scheduler at: tcp://...`)",
        ),
        (
            "https://dask.example:443",
            "an https:// address is a web server's (the Dask dashboard's, port 8787 by default), "
            "not the scheduler's; give tcp://HOST:PORT (port 8786 by default; `dask scheduler` "
            "prints it as `Scheduler at: tcp://...`)",
        ),
        (
            "ftp://127.0.0.1:21",
            "Dask does not serve ftp:// addresses; give tcp://HOST:PORT (or tls://, ws://, "
            "wss://, ucx://)",
        ),
        ("tcp://127.0.0.1", "no port; give tcp://HOST:PORT (8786 is Dask's default)"),
        (
            "tcp://127.0.0.1:http",
            "'http' is not a port number; give tcp://HOST:PORT (8786 is Dask's default)",
        ),
    ],
    ids=["http", "https", "ftp", "no-port", "port-name"],
)
def test_scheduler_address_of_the_wrong_form(tmp_path: Path, address: str, problem: str):
    """Refused before the sources are even listed (the source here does not exist)."""
    out = tmp_path / "dataset"
    run = triage("sweep", tmp_path / "nowhere", "-o", out, "--scheduler", address)
    assert_fails(run, f"Dask scheduler address {address}: {problem}")
    assert not out.exists()


def test_scheduler_where_nothing_listens(one_core: Path, tmp_path: Path):
    address = f"tcp://127.0.0.1:{closed_port()}"
    out = tmp_path / "dataset"
    run = triage("sweep", one_core, "-o", out, "--scheduler", address)
    assert_fails(
        run,
        f"cannot reach the Dask scheduler at {address}: nothing listens there (connection "
        "refused); start the scheduler (`dask scheduler`) or check the address",
    )
    assert run.seconds < 30
    assert not out.exists()


@pytest.fixture
def http_server() -> Iterator[int]:
    """A plain `http.server` on 127.0.0.1; its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("form", ["tcp://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_scheduler_address_of_a_web_server(one_core: Path, tmp_path: Path, http_server, form):
    """An HTTP server waits for a request where a Dask scheduler greets first: told apart in
    seconds, not a hang nor an "out of memory" that blames a core."""
    address = form.format(port=http_server)
    out = tmp_path / "dataset"
    run = triage("sweep", one_core, "-o", out, "--scheduler", address)
    assert_fails(run, f"{address} {NOT_A_SCHEDULER}")
    assert run.seconds < 30
    assert not out.exists()


@pytest.fixture(scope="module")
def lone_scheduler(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """A real `dask scheduler` (with its dashboard) and no worker: (address, dashboard port)."""
    if not DASK.exists():
        pytest.skip(f"the dask command is not installed next to {sys.executable}")
    base = tmp_path_factory.mktemp("lone-scheduler")
    info = base / "scheduler.json"
    argv = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)]
    with open(base / "scheduler.log", "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=base
        )
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or '"dashboard"' not in info.read_text():
            assert proc.poll() is None, (base / "scheduler.log").read_text()
            assert time.monotonic() < deadline, (base / "scheduler.log").read_text()
            time.sleep(0.05)
        data = json.loads(info.read_text())
        yield data["address"], int(data["services"]["dashboard"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_scheduler_without_workers(one_core: Path, tmp_path: Path, lone_scheduler):
    address, _ = lone_scheduler
    out = tmp_path / "dataset"
    run = triage("sweep", one_core, "-o", out, "--scheduler", address, "--wait-for-workers", "2")
    assert_fails(
        run,
        f"the Dask scheduler at {address} has no workers after 2 s; start some (`dask worker "
        f"{address}`) or wait longer (--wait-for-workers SECONDS)",
    )
    assert 2 <= run.seconds < 30
    assert not out.exists()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_scheduler_address_of_its_dashboard(one_core: Path, tmp_path: Path, lone_scheduler, scheme):
    """The dashboard's port of a real cluster, given as the scheduler."""
    _, dashboard = lone_scheduler
    address = f"{scheme}://127.0.0.1:{dashboard}"
    out = tmp_path / "dataset"
    run = triage("sweep", one_core, "-o", out, "--scheduler", address)
    if scheme == "http":
        assert_fails(
            run,
            f"Dask scheduler address {address}: an http:// address is a web server's (the Dask "
            "dashboard's, port 8787 by default), not the scheduler's; give tcp://HOST:PORT "
            "(port 8786 by default; `dask scheduler` prints it as `Scheduler at: tcp://...`)",
        )
    else:
        assert_fails(run, f"{address} {NOT_A_SCHEDULER}")
    assert run.seconds < 30


# --------------------------------------------------------------------------------------------
# 2. failed analyses are retried; the new row replaces the failed one


def core_ids(dataset: Path) -> Counter[str]:
    return Counter(r.core_id for r in records(str(dataset)))


def test_failed_rows_are_retried_and_replaced(installed_cores, tmp_path: Path):  # noqa: F811
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 4)
    out = tmp_path / "dataset"
    tight = write_config(tmp_path / "tight.toml", output=str(out), execution={"time_limit": 0.001})
    first = triage("sweep", tmp_path / "corpus", "--config", tight, "--workers", "1").summary()
    assert (first["analysed"], first["ok"], first["kinds"]) == ("4", "0", "timeout 4")
    assert {r.status for r in records(str(out))} == {"timeout"}

    # --keep-failed: nothing to do.
    kept = triage("sweep", tmp_path / "corpus", "-o", out, "--keep-failed")
    assert (kept.rc, kept.lines) == (
        0,
        [f"triage: nothing new to analyse: 4 cores already in {out}"],
    )
    dry = triage("sweep", tmp_path / "corpus", "-o", out, "--dry-run")
    assert dry.lines == [
        "triage: 4 to analyse (4 of them failed before and are retried; --keep-failed keeps "
        "them), 0 already in the dataset"
    ]
    assert len(dry.out.splitlines()) == 4

    # By default the failed ones are analysed again, and their new rows replace the old.
    run = triage("sweep", tmp_path / "corpus", "-o", out, "--workers", "1")
    summary = run.summary()
    assert run.lines[0] == (
        f"triage: sweep {summary['id']}: 4 cores to analyse (4 of them failed before and are "
        f"retried; --keep-failed keeps them), 0 already in {out}"
    )
    assert (summary["analysed"], summary["ok"], summary["skipped"]) == ("4", "4", "0")
    rows = records(str(out))
    assert len(rows) == 4 and set(core_ids(out).values()) == {1}
    assert sorted(r.collection.source_url for r in rows) == sorted(corpus)
    assert {(r.status, r.sweep_id) for r in rows} == {("ok", summary["id"])}
    # The first sweep's files held only failed rows: gone, not left empty.
    assert [p.name for p in out.rglob("*.parquet")] == [f"part-{summary['id']}-0.parquet"]

    # And a rerun adds nothing.
    again = triage("sweep", tmp_path / "corpus", "-o", out)
    assert again.lines == [f"triage: nothing new to analyse: 4 cores already in {out}"]
    assert len(records(str(out))) == 4


def test_groups_reports_failed_analyses_apart(installed_cores, tmp_path: Path):  # noqa: F811
    """A core cut in half (truncated_core) is in no group; `triage groups` says so apart."""
    corpus = tmp_path / "corpus"
    make_corpus(corpus, installed_cores[:1], 2)
    whole = (corpus / "core-001").read_bytes()
    (corpus / "core-001").unlink()
    (corpus / "core-001").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "dataset"
    summary = triage("sweep", corpus, "-o", out, "--workers", "1").summary()
    assert (summary["ok"], summary["kinds"]) == ("1", "truncated_core 1")
    (failed_row,) = [r for r in records(str(out)) if r.status != "ok"]

    result = json.loads(triage("groups", out, "--format", "json").out)
    assert [g["cores"] for g in result["groups"]] == [1]
    assert result["failed"] == [
        {
            "status": "truncated_core",
            "cores": 1,
            "fleets": ["default"],
            "example_core": str(corpus / "core-001"),
            "example_error": failed_row.error_message,
        }
    ]
    table = triage("groups", out, env={"COLUMNS": "100"})
    assert table.rc == 0, table.describe()
    lines = table.out.splitlines()
    assert lines[lines.index("1 failed analyses (in no group; rerun the sweep to retry them):") + 1]
    assert "  truncated_core: 1 core(s) (default), e.g. " in table.out
    markdown = triage("groups", out, "--format", "markdown").out
    assert "| truncated_core | 1 | default | " in markdown

    # Rerun: retried (the file is still half a core), still one row per core.
    run = triage("sweep", corpus, "-o", out, "--workers", "1")
    assert run.summary()["kinds"] == "truncated_core 1"
    assert set(core_ids(out).values()) == {1} and len(core_ids(out)) == 2


# --------------------------------------------------------------------------------------------
# 3. a folder named triage in the current directory


@pytest.mark.parametrize("folder", ["empty", "raising"])
def test_sweep_from_a_directory_holding_a_triage_folder(
    installed_cores,  # noqa: F811
    tmp_path: Path,
    folder: str,
):
    """The installed `triage` command run where `./triage` is an empty folder, or a package
    that raises when imported: the workers and their analysis children import the real one."""
    script = Path(sys.executable).parent / "triage"
    if not script.exists():
        pytest.skip(f"the triage command is not installed next to {sys.executable}")
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 3)
    here = tmp_path / "here"
    (here / "triage").mkdir(parents=True)
    if folder == "raising":
        (here / "triage" / "__init__.py").write_text("raise RuntimeError('not the package')\n")
    out = tmp_path / "dataset"
    # PYTHONPATH: the script imports this tree's triage (the installed one in CI).
    run = triage(
        "sweep", tmp_path / "corpus", "-o", out, "--workers", "1",
        cwd=here, env={"PYTHONPATH": str(ROOT)}, script=True,
    )  # fmt: skip
    summary = run.summary()
    assert (summary["analysed"], summary["ok"]) == ("3", "3")
    assert sorted(r.collection.source_url for r in records(str(out))) == sorted(corpus)


# --------------------------------------------------------------------------------------------
# 8. nothing left in TMPDIR


def test_sweep_leaves_tmpdir_empty(installed_cores, tmp_path: Path):  # noqa: F811
    corpus = make_corpus(tmp_path / "corpus", installed_cores, 3)
    packed = corefactory.compress(installed_cores[0].path, "zstd", tmp_path / "corpus" / "z.zst")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "dataset"
    run = triage(
        "sweep", tmp_path / "corpus", "-o", out, "--workers", "2", env={"TMPDIR": str(tmpdir)}
    )
    summary = run.summary()
    assert (summary["analysed"], summary["ok"]) == (str(len(corpus) + 1), str(len(corpus) + 1))
    assert Path(packed).exists()
    assert sorted(os.listdir(tmpdir)) == []


# --------------------------------------------------------------------------------------------
# 9. odd names and odd files among the cores


def test_odd_files_get_rows_and_the_sweep_goes_on(installed_cores, tmp_path: Path):  # noqa: F811
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    base = os.fsencode(corpus)
    os.link(installed_cores[0].path, base + b"/core.\xff")  # not UTF-8
    os.link(installed_cores[0].path, corpus / "core.plain")
    os.mkfifo(corpus / "fifo")
    os.symlink("loop-b", corpus / "loop-a")
    os.symlink("loop-a", corpus / "loop-b")
    os.symlink(tmp_path / "gone", corpus / "dangling")
    out = tmp_path / "dataset"

    dry = triage("sweep", corpus, "-o", out, "--dry-run", timeout=60)
    assert dry.rc == 0, dry.describe()
    assert [line.split("\t")[2] for line in dry.out.splitlines()] == [
        f"{corpus}/core.plain",
        f"{corpus}/core.\\xff",  # sorted by name: the byte 0xff after every ASCII one
        f"{corpus}/dangling",
        f"{corpus}/fifo",
        f"{corpus}/loop-a",
        f"{corpus}/loop-b",
    ]

    run = triage("sweep", corpus, "-o", out, "--workers", "1", timeout=120)
    summary = run.summary()
    assert (summary["analysed"], summary["ok"], summary["kinds"]) == (
        "6",
        "2",
        "not_core 1, unreadable 3",
    )
    rows = {r.collection.source_url: r for r in records(str(out))}
    loop = "a symbolic link loop (too many levels of symbolic links); fix or remove the link"
    expected = {
        f"{corpus}/core.\\xff": ("ok", None),
        f"{corpus}/core.plain": ("ok", None),
        f"{corpus}/dangling": (
            "unreadable",
            f"{corpus}/dangling: a symbolic link to {tmp_path / 'gone'}, which does not exist",
        ),
        f"{corpus}/fifo": (
            "not_core",
            f"{corpus}/fifo: a FIFO (named pipe), not a file that can hold a core",
        ),
        f"{corpus}/loop-a": ("unreadable", f"{corpus}/loop-a: {loop}"),
        f"{corpus}/loop-b": ("unreadable", f"{corpus}/loop-b: {loop}"),
    }
    assert {url: (r.status, r.error_message) for url, r in rows.items()} == expected
    odd = rows[f"{corpus}/core.\\xff"]
    assert odd.report.core.path == f"{corpus}/core.\\xff"
    assert odd.report.threads == rows[f"{corpus}/core.plain"].report.threads

    # A rerun: the odd name is known (one row), the unreadable ones are retried and replaced.
    again = triage("sweep", corpus, "-o", out, "--workers", "1", timeout=120)
    assert again.summary()["kinds"] == "unreadable 3"
    assert len(records(str(out))) == 6 and set(core_ids(out).values()) == {1}


# --------------------------------------------------------------------------------------------
# 4, 5. triage groups in a narrow terminal; its filters checked


@pytest.fixture(scope="module")
def fleet_dataset(installed_cores, tmp_path_factory) -> Path:  # noqa: F811
    """Cores of every installed interpreter in two fleets with long names."""
    base = tmp_path_factory.mktemp("groups-width")
    make_corpus(base / "corpus" / "frontend", installed_cores, len(installed_cores))
    make_corpus(base / "corpus" / "backend", installed_cores, len(installed_cores))
    out = base / "dataset"
    fleets = [
        {"name": "web-frontend-production", "match": [f"{base}/corpus/frontend/*"]},
        {"name": "batch-backend-production", "match": [f"{base}/corpus/backend/*"]},
    ]
    config = write_config(base / "fleets.toml", output=str(out), fleets=fleets)
    triage("sweep", base / "corpus", "--config", config, "--workers", "1").summary()
    return out


@pytest.mark.parametrize("columns", [100, 120])
def test_groups_table_fits_the_terminal(fleet_dataset: Path, columns: int):
    result = json.loads(triage("groups", fleet_dataset, "--format", "json").out)
    assert result["groups"]
    run = triage("groups", fleet_dataset, env={"COLUMNS": str(columns)})
    assert run.rc == 0, run.describe()
    lines = run.out.splitlines()
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    for group in result["groups"]:
        rows = [line for line in lines if line.startswith(group["signature_id"] + " ")]
        assert len(rows) == 1, run.out
        for date in (group["first_seen"], group["last_seen"]):
            assert date in rows[0].split()
        # Every frame whole on some line (lines are broken between frames only).
        words = {w for line in lines for w in line.split()}
        assert set(group["top_frames"]) <= words
    for fleet in ("web-frontend-production", "batch-backend-production"):
        assert any(re.search(rf"(^|\s){fleet},?(\s|$)", line) for line in lines), run.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--since", "2026-13-01"),
            "--since 2026-13-01: not a date; give YYYY-MM-DD, e.g. 2026-03-01",
        ),
        (
            ("--until", "yesterday"),
            "--until yesterday: not a date; give YYYY-MM-DD, e.g. 2026-03-01",
        ),
        (
            ("--since", "2026-03-02", "--until", "2026-03-01"),
            "--since 2026-03-02 is after --until 2026-03-01: no sweep is in between",
        ),
        (("--sweeps", "0"), "--sweeps must be at least 1, not 0"),
    ],
    ids=["since-month-13", "until-word", "since-after-until", "sweeps-0"],
)
def test_groups_bad_filter_values(fleet_dataset: Path, args: tuple[str, ...], message: str):
    assert_fails(triage("groups", fleet_dataset, *args), message, status=2)


def test_groups_unknown_fleet_names_the_datasets_fleets(fleet_dataset: Path):
    assert_fails(
        triage("groups", fleet_dataset, "--fleet", "web"),
        f"--fleet web: {fleet_dataset} has no such fleet; its fleets: "
        "batch-backend-production, web-frontend-production",
        status=2,
    )


def test_groups_signal_names(fleet_dataset: Path):
    """SIGSTOP, STOP, stop and 19 are one signal (gcore's); an unknown name lists the known."""
    outputs = {
        value: triage("groups", fleet_dataset, "--format", "json", "--signal", value)
        for value in ("SIGSTOP", "STOP", "stop", "19")
    }
    assert {run.rc for run in outputs.values()} == {0}
    assert len({run.out for run in outputs.values()}) == 1
    assert json.loads(outputs["SIGSTOP"].out)["groups"]
    run = triage("groups", fleet_dataset, "--signal", "SIGNOPE")
    assert (run.rc, run.out, len(run.lines)) == (2, "", 1), run.describe()
    assert run.lines[0].startswith(
        "triage: error: --signal SIGNOPE: unknown signal; give a name or a number, one of SIGHUP, "
    )
    assert ", SIGSEGV, " in run.lines[0] and run.lines[0].endswith("(SIG may be left out: SEGV)")


def test_dashboard_sweeps_is_a_usage_error(fleet_dataset: Path, tmp_path: Path):
    run = triage("dashboard", fleet_dataset, "-o", tmp_path / "d.html", "--sweeps", "0")
    assert_fails(run, "--sweeps must be at least 1, not 0", status=2)
    assert not (tmp_path / "d.html").exists()


ODD_FILES = ("core.bomb.zst", "core.plain", "core.\\xfe", "fifo", "loop")


def odd_files(corpus: Path, real: Path) -> None:
    """In `corpus`: a real core, the same under a name that is not UTF-8, a FIFO, a link
    loop, and a bomb: a zstd archive of the core's first megabyte followed by 256 MiB of
    zeros (0.1 MB on disk)."""
    import zstandard

    os.link(real, corpus / "core.plain")
    os.link(real, os.fsencode(corpus) + b"/core.\xfe")
    os.mkfifo(corpus / "fifo")
    os.symlink("loop", corpus / "loop")
    with (
        open(real, "rb") as src,
        open(corpus / "core.bomb.zst", "wb") as out,
        zstandard.ZstdCompressor().stream_writer(out) as writer,
    ):
        writer.write(src.read(1 << 20))
        zeros = bytes(1 << 20)
        for _ in range(256):
            writer.write(zeros)
    assert (corpus / "core.bomb.zst").stat().st_size < 200_000


def test_a_bomb_among_odd_files_is_one_row_and_the_sweep_goes_on(
    installed_cores,  # noqa: F811
    tmp_path: Path,
):
    """With `execution.max_core_size`, the bomb of `odd_files` is a `core_too_large` row,
    the rest as always, one row per file, nothing left in TMPDIR."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    odd_files(corpus, Path(installed_cores[0].path))
    config = write_config(
        tmp_path / "bounded.toml",
        output=str(tmp_path / "dataset"),
        execution={"max_core_size": "64M", "workers": 1},
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = triage("sweep", corpus, "--config", config, env={"TMPDIR": str(scratch)}, timeout=180)
    summary = run.summary()
    assert (summary["analysed"], summary["ok"]) == ("5", "2"), run.describe()
    rows = {r.collection.source_url: r for r in records(str(tmp_path / "dataset"))}
    assert sorted(rows) == sorted(f"{corpus}/{name}" for name in ODD_FILES)
    bomb = rows[f"{corpus}/core.bomb.zst"]
    assert bomb.status == "core_too_large"
    assert "more than the maximum core size of 64.0 MiB" in bomb.error_message
    assert [rows[f"{corpus}/{n}"].status for n in ("fifo", "loop")] == ["not_core", "unreadable"]
    assert list(scratch.iterdir()) == []


def test_max_core_size_that_is_not_a_size_is_refused(tmp_path: Path):
    config = write_config(tmp_path / "bad.toml", execution={"max_core_size": "lots"})
    run = triage("sweep", tmp_path, "-o", tmp_path / "out", "--config", config, timeout=60)
    assert run.rc == 1 and "Traceback" not in run.err, run.describe()
    assert len(run.lines) == 1 and "max_core_size" in run.lines[0] and "20G" in run.lines[0]


def test_killed_worker_and_odd_files_one_row_per_file(
    cluster,  # noqa: F811
    installed_cores,  # noqa: F811
    tmp_path: Path,
):
    """40 cores and the odd files of `odd_files` on a real two-worker cluster, one worker
    killed half-way (its analysis child with it): every file gets exactly one row."""
    corpus = tmp_path / "corpus"
    cores = make_corpus(corpus, installed_cores, 40)
    odd_files(corpus, Path(installed_cores[0].path))
    out = tmp_path / "dataset"
    config = write_config(
        tmp_path / "sweep.toml",
        output=str(out),
        batch_size=4,
        execution={"retries": 2, "max_core_size": "64M"},
    )
    cluster.wait_for({"w1", "w2"})
    victim = cluster.procs["w1"]
    argv = [sys.executable, "-m", "triage", "sweep", str(corpus), "--config", str(config)]
    argv += ["--scheduler", cluster.address, "--time-limit", "120"]
    run, _children, written = sweep_killing_a_worker(argv, out, victim)
    assert written >= 1
    summary = run.summary(strict=False)
    assert (summary["analysed"], summary["ok"]) == ("45", "42"), run.describe()
    urls = Counter(r.collection.source_url for r in records(str(out)))
    expected = {*cores, *(f"{corpus}/{name}" for name in ODD_FILES)}
    assert set(urls) == expected and set(urls.values()) == {1}
