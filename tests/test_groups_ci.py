"""`triage groups`, `triage regroup` and `triage ci` on datasets and core directories made of
real crash cores (tests/corefactory.py), as a user runs them: the command in a subprocess,
its output parsed back.

The dataset is two nightly sweeps, written with ParquetSink from real reports
(`triage.analyze_core` of each core), with the sweep ids, dates, hosts and fleets set here:

    sweep 20261101T020000Z-aaaaaa (2026-11-01)   A1 segv  (first interpreter)   web   h1
                                                 B  abort (second interpreter)  batch h2
    sweep 20261102T020000Z-bbbbbb (2026-11-02)   A2 segv  (second interpreter)  batch h2
                                                 C  sigbus (first interpreter)  web   h1

A1 and A2 are two cores of one crash site (same signature on every Python version), B and C
are other crashes. Cores are made with PYTEST_CURRENT_TEST removed from the environment, so
their reports name no test; the last test runs a real pytest session that crashes.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from xml.etree import ElementTree as ET

import corefactory
import pytest
from corefactory import CoreCase, CoreUnavailable, Interpreter

from triage.engine import analyze_core
from triage.pipeline.schema import record_to_dict
from triage.pipeline.sink import ParquetSink, read_records
from triage.pipeline.sources import core_id
from triage.report import Collection, CoreReport, SweepRecord
from triage.signature import Rules, compute_signature

S1, D1 = "20261101T020000Z-aaaaaa", "2026-11-01"
S2, D2 = "20261102T020000Z-bbbbbb", "2026-11-02"

CALL_CHAIN = ["target:third_func", "target:second_func", "target:first_func", "target:<module>"]
#: ctypes.string_at(address) faults in strlen(), called by _ctypes' string_at (signature v2).
SEGV_SITE = ["libc.so!strlen", "_ctypes.so!string_at", "ctypes:string_at"]
SEGV_TEXT = " | ".join(["SIGSEGV", *SEGV_SITE, *CALL_CHAIN[:3]])
ABORT_TEXT = "SIGABRT (abort) | python!os_abort | " + " | ".join(CALL_CHAIN)
SIGBUS_TEXT = "SIGBUS | " + " | ".join(CALL_CHAIN)
SIGQUIT_TEXT = "SIGQUIT | " + " | ".join(CALL_CHAIN)

#: The columns of `triage groups --format csv|markdown`, as a user sees them.
COLUMNS = [
    "signature_id",
    "cores",
    "hosts",
    "new",
    "first_seen",
    "last_seen",
    "fleets",
    "python_versions",
    "trend",
    "signature",
]

#: The regroup rules of part 2 (fleet "web" only).
REGROUP_TOML = """\
[[fleets]]
name = "web"
signature_frames = 2
signature_skip = ["ctypes:*"]
"""
REGROUP_RULES = Rules(frames=2, skip=("ctypes:*",))

#: No ci run may write to a real job summary of whatever runs this suite.
NO_SUMMARY: dict[str, str | None] = {"GITHUB_STEP_SUMMARY": None}


# --------------------------------------------------------------------------------------------
# Cores and the dataset


@dataclass
class Core:
    case: CoreCase
    report: CoreReport

    @property
    def path(self) -> str:
        return self.case.path

    @property
    def sig_id(self) -> str:
        assert self.report.signature is not None
        return self.report.signature.id

    @property
    def text(self) -> str:
        assert self.report.signature is not None
        return self.report.signature.text


@dataclass
class Crashes:
    a1: Core  # segv, first interpreter
    b: Core  # abort, second interpreter
    a2: Core  # segv, second interpreter (another core of A's crash site)
    c: Core  # sigbus, first interpreter
    q: Core  # sigquit, first interpreter (in no baseline)


def _two_interpreters() -> tuple[Interpreter, Interpreter]:
    interps = [i for i in corefactory.find_interpreters() if i.version[0] == 3]
    if not interps:
        pytest.skip("no Python 3 interpreter found (~/.pyenv/versions/*/bin, /usr/bin/python3*)")
    first = corefactory.preferred_interpreter(interps, [(3, 12)]) or interps[-1]
    second = corefactory.preferred_interpreter(interps, [(3, 8)]) or next(
        (i for i in interps if i.short_version != first.short_version), first
    )
    return first, second


@contextmanager
def _without_pytest_test() -> Iterator[None]:
    """Make cores outside any pytest test: the target program inherits os.environ."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crashes]:
    first, second = _two_interpreters()
    root = tmp_path_factory.mktemp("groups-ci-cores")
    made = {}
    try:
        with _without_pytest_test():
            for name, interp, kind in (
                ("a1", first, "segv"),
                ("b", second, "abort"),
                ("a2", second, "segv"),
                ("c", first, "sigbus"),
                ("q", first, "sigquit"),
            ):
                case = corefactory.make_crash(interp, root / name, kind)
                report = analyze_core(case.path)
                assert report.error is None, report.error
                made[name] = Core(case, report)
    except CoreUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(str(exc))
    # The crash sites this file is about, as every interpreter reports them.
    assert made["a1"].text == made["a2"].text == SEGV_TEXT
    assert made["b"].text == ABORT_TEXT
    assert made["c"].text == SIGBUS_TEXT
    assert made["q"].text == SIGQUIT_TEXT
    assert made["a1"].path != made["a2"].path
    yield Crashes(**made)
    shutil.rmtree(root, ignore_errors=True)  # tens of megabytes


def _record(core: Core, sweep: tuple[str, str], fleet: str, host: str) -> SweepRecord:
    size = os.path.getsize(core.path)
    mtime = f"{os.path.getmtime(core.path):.6f}"
    return SweepRecord(
        core_id=core_id(core.path, size, None, mtime),
        sweep_id=sweep[0],
        sweep_date=sweep[1],
        fleet=fleet,
        status="ok",
        collection=Collection(source_url=core.path, fleet=fleet, host=host, size=size, mtime=mtime),
        report=core.report,
        analysis_seconds=0.1,
    )


def _records(crashes: Crashes) -> dict[str, SweepRecord]:
    return {
        "a1": _record(crashes.a1, (S1, D1), "web", "h1"),
        "b": _record(crashes.b, (S1, D1), "batch", "h2"),
        "a2": _record(crashes.a2, (S2, D2), "batch", "h2"),
        "c": _record(crashes.c, (S2, D2), "web", "h1"),
    }


def _write(dataset: Path, records: list[SweepRecord]) -> None:
    with ParquetSink(str(dataset)) as sink:
        for record in records:
            sink.add(record)


@pytest.fixture(scope="module")
def records(crashes: Crashes) -> dict[str, SweepRecord]:
    return _records(crashes)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, records: dict[str, SweepRecord]) -> Path:
    """The two sweeps, one sink per sweep as `triage sweep` would write them."""
    path = tmp_path_factory.mktemp("groups-ci-data") / "dataset"
    _write(path, [records["a1"], records["b"]])
    _write(path, [records["a2"], records["c"]])
    return path


def groups_json(run_triage, dataset: Path, *args: str) -> dict:
    rc, out, err = run_triage("groups", str(dataset), "--format", "json", *args)
    assert rc == 0, err
    assert "Traceback" not in err
    return json.loads(out)


def by_id(result: dict) -> dict[str, dict]:
    return {g["signature_id"]: g for g in result["groups"]}


def expected_groups(crashes: Crashes) -> list[dict]:
    """`triage groups --format json` of the two-sweep dataset, group by group, in order."""
    a1, b, a2, c = crashes.a1, crashes.b, crashes.a2, crashes.c
    a = {
        "signature_id": a1.sig_id,
        "signature": SEGV_TEXT,
        "cores": 2,
        "hosts": 2,
        "fleets": ["batch", "web"],
        # version order, not text order: 3.8.18 before 3.12.1
        "python_versions": sorted(
            {a1.report.python_version, a2.report.python_version},
            key=lambda v: tuple(int(p) for p in v.split(".")),
        ),
        "signals": ["SIGSEGV"],
        "first_seen": D1,
        "last_seen": D2,
        "new": False,
        "trend": [1, 1],
        "example_core": a2.path,  # the latest sweep's core
        "top_frames": [*SEGV_SITE, *CALL_CHAIN[:3]],
    }
    b_group = {
        "signature_id": b.sig_id,
        "signature": ABORT_TEXT,
        "cores": 1,
        "hosts": 1,
        "fleets": ["batch"],
        "python_versions": [b.report.python_version],
        "signals": ["SIGABRT"],
        "first_seen": D1,
        "last_seen": D1,
        "new": False,
        "trend": [1, 0],
        "example_core": b.path,
        "top_frames": ["python!os_abort", *CALL_CHAIN],
    }
    c_group = {
        "signature_id": c.sig_id,
        "signature": SIGBUS_TEXT,
        "cores": 1,
        "hosts": 1,
        "fleets": ["web"],
        "python_versions": [c.report.python_version],
        "signals": ["SIGBUS"],
        "first_seen": D2,
        "last_seen": D2,
        "new": True,
        "trend": [0, 1],
        "example_core": c.path,
        "top_frames": CALL_CHAIN,
    }
    # Most cores first; equal counts by signature id.
    return [a, *sorted([b_group, c_group], key=lambda g: g["signature_id"])]


# --------------------------------------------------------------------------------------------
# 1. triage groups


def test_groups_json_two_sweeps(run_triage, dataset: Path, crashes: Crashes) -> None:
    result = groups_json(run_triage, dataset)
    assert result["sweeps"] == [S1, S2]
    assert result["latest_sweep"] == S2
    assert result["groups"] == expected_groups(crashes)


def test_groups_csv(run_triage, dataset: Path, crashes: Crashes) -> None:
    rc, out, err = run_triage("groups", str(dataset), "--format", "csv")
    assert rc == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == COLUMNS
    expected = [
        [
            g["signature_id"],
            str(g["cores"]),
            str(g["hosts"]),
            "NEW" if g["new"] else "",
            g["first_seen"],
            g["last_seen"],
            ",".join(g["fleets"]),
            ",".join(g["python_versions"]),
            " ".join(map(str, g["trend"])),
            g["signature"],
        ]
        for g in expected_groups(crashes)
    ]
    assert rows[1:] == expected


def _markdown_cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |"), line
    cells = re.split(r"(?<!\\)\|", line[1:-1])
    return [cell.strip().replace("\\|", "|") for cell in cells]


def test_groups_markdown(run_triage, dataset: Path, crashes: Crashes) -> None:
    rc, out, err = run_triage("groups", str(dataset), "--format", "markdown")
    assert rc == 0, err
    lines = out.splitlines()
    assert _markdown_cells(lines[0]) == COLUMNS
    assert lines[1] == "|" + "---|" * len(COLUMNS)
    rows = [_markdown_cells(line) for line in lines[2:]]
    groups = expected_groups(crashes)
    assert [r[0] for r in rows] == [g["signature_id"] for g in groups]
    assert [r[3] for r in rows] == ["NEW" if g["new"] else "" for g in groups]
    assert [r[8] for r in rows] == [" ".join(map(str, g["trend"])) for g in groups]
    assert [r[9] for r in rows] == [g["signature"] for g in groups]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # signature -> (cores, hosts, first_seen, last_seen, new, trend). Filters narrow what
        # is counted (cores, hosts, trend); first/last seen and `new` are the signature's
        # history in the whole dataset.
        (
            ("--fleet", "web"),
            {"a": (1, 1, D1, D2, False, [1, 0]), "c": (1, 1, D2, D2, True, [0, 1])},
        ),
        (
            ("--fleet", "batch"),
            {"a": (1, 1, D1, D2, False, [0, 1]), "b": (1, 1, D1, D1, False, [1, 0])},
        ),
        (("--signal", "SIGBUS"), {"c": (1, 1, D2, D2, True, [0, 1])}),
        (
            ("--until", D1),
            {"a": (1, 1, D1, D2, False, [1, 0]), "b": (1, 1, D1, D1, False, [1, 0])},
        ),
        (
            ("--since", D2),
            {"a": (1, 1, D1, D2, False, [0, 1]), "c": (1, 1, D2, D2, True, [0, 1])},
        ),
    ],
    ids=["fleet-web", "fleet-batch", "signal-SIGBUS", "until", "since"],
)
def test_groups_filters(
    run_triage, dataset: Path, crashes: Crashes, args: tuple[str, ...], expected: dict
) -> None:
    """Each filter gives exactly its subset; the trend's columns stay the dataset's sweeps."""
    ids = {"a": crashes.a1.sig_id, "b": crashes.b.sig_id, "c": crashes.c.sig_id}
    result = groups_json(run_triage, dataset, *args)
    assert result["sweeps"] == [S1, S2]
    groups = by_id(result)
    assert set(groups) == {ids[name] for name in expected}
    for name, (cores, hosts, first, last, new, trend) in expected.items():
        g = groups[ids[name]]
        got = (g["cores"], g["hosts"], g["first_seen"], g["last_seen"], g["new"], g["trend"])
        want = (cores, hosts, first, last, new, trend)
        assert tuple(w if w is None else x for x, w in zip(got, want, strict=True)) == want, name


def test_groups_fleet_filter_python_versions(run_triage, dataset: Path, crashes: Crashes) -> None:
    groups = by_id(groups_json(run_triage, dataset, "--fleet", "web"))
    assert groups[crashes.a1.sig_id]["python_versions"] == [crashes.a1.report.python_version]
    assert groups[crashes.a1.sig_id]["fleets"] == ["web"]
    assert groups[crashes.a1.sig_id]["example_core"] == crashes.a1.path


def test_groups_since_keeps_new(run_triage, dataset: Path, crashes: Crashes) -> None:
    """`new` is "first seen in the latest sweep of the dataset" (Group.new): A was seen on
    2026-11-01, so a --since window starting the next day must not call it NEW."""
    groups = by_id(groups_json(run_triage, dataset, "--since", D2))
    assert groups[crashes.a1.sig_id]["new"] is False
    assert groups[crashes.c.sig_id]["new"] is True


@pytest.fixture(scope="module")
def reprocessed(
    tmp_path_factory: pytest.TempPathFactory, dataset: Path, records: dict[str, SweepRecord]
) -> Path:
    """The dataset plus A1 analysed again in the second sweep (`--reprocess`): same core_id."""
    path = tmp_path_factory.mktemp("groups-ci-reprocess") / "dataset"
    shutil.copytree(dataset, path)
    _write(path, [replace(records["a1"], sweep_id=S2, sweep_date=D2, analysis_seconds=0.2)])
    assert len(read_records(str(path))) == 5
    return path


def test_groups_reprocessed_core_counts_once(
    run_triage, reprocessed: Path, crashes: Crashes
) -> None:
    result = groups_json(run_triage, reprocessed)
    groups = by_id(result)
    assert sum(g["cores"] for g in result["groups"]) == 4
    a = groups[crashes.a1.sig_id]
    assert (a["cores"], a["hosts"], a["fleets"]) == (2, 2, ["batch", "web"])
    assert a["last_seen"] == D2
    expected = {g["signature_id"]: g for g in expected_groups(crashes)}
    assert groups[crashes.b.sig_id] == expected[crashes.b.sig_id]
    assert groups[crashes.c.sig_id] == expected[crashes.c.sig_id]


def test_groups_reprocessed_core_keeps_first_seen(
    run_triage, reprocessed: Path, crashes: Crashes
) -> None:
    """Analysing A1 again on 2026-11-02 does not make its crash first seen then, nor NEW."""
    a = by_id(groups_json(run_triage, reprocessed))[crashes.a1.sig_id]
    assert (a["first_seen"], a["new"]) == (D1, False)


def test_groups_missing_dataset(run_triage, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    rc, out, err = run_triage("groups", str(missing), "--format", "json")
    assert rc == 1
    assert out == ""
    assert err.splitlines() == [f"triage: error: dataset {missing} does not exist"]


def test_column_paths_are_checked_against_the_schema(
    dataset: Path, records: dict[str, SweepRecord]
) -> None:
    """The read side's column paths: each part a field of the Arrow schema of the report
    models, refused by name otherwise, and the SQL given reads that column."""
    from triage.pipeline.query import connect
    from triage.pipeline.schema import UnknownColumn, column

    assert column("report.signature.id") == '"report"."signature"."id"'
    assert column("fleet") == '"fleet"'
    refused = {
        "report.signature.ids": "report.signature.ids: report.signature has no field 'ids' "
        "(its fields: text, id, version, reason, frames, all_frames, thread)",
        "reports.signature.id": "reports.signature.id: the dataset row has no field 'reports' "
        "(its fields: core_id, sweep_id, sweep_date, fleet, status, collection, report, "
        "error_message, analysis_seconds, worker)",
        "report.threads.tid": "report.threads.tid: report.threads is a list, "
        "not a struct of columns",
        "collection.extra.boot_id": "collection.extra.boot_id: collection.extra is a map, "
        "not a struct of columns",
        "collection.host.name": "collection.host.name: collection.host is a string, "
        "not a struct of columns",
    }
    for path, message in refused.items():
        with pytest.raises(UnknownColumn) as caught:
            column(path)
        assert str(caught.value) == message

    con, rows = connect(str(dataset))
    found = con.execute(
        f"SELECT {column('collection.host')}, {column('report.signature.id')} FROM ({rows})"
    ).fetchall()
    hosts = {"a1": "h1", "b": "h2", "a2": "h2", "c": "h1"}
    assert sorted(found) == sorted(
        (host, records[name].report.signature.id) for name, host in hosts.items()
    )


# --------------------------------------------------------------------------------------------
# 2. triage regroup


def _key(record: SweepRecord) -> tuple[str, str]:
    return record.core_id, record.sweep_id


def _without_signature(record: SweepRecord) -> dict:
    data = record_to_dict(record)
    data["report"].pop("signature")
    return data


def _mtimes(dataset: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in dataset.rglob("*") if p.is_file()}


#: What regroup says of fleet batch, which REGROUP_TOML does not list.
BATCH_KEPT = (
    "triage: warning: fleet(s) batch of the dataset are not in the configuration: their rows "
    "keep the signatures they have (the dataset does not store the rules they were made "
    "with); list them under [[fleets]] in --config, with their signature rules, to regroup "
    "them"
)


def test_regroup_after_rule_change(
    run_triage, tmp_path: Path, dataset: Path, records: dict[str, SweepRecord], crashes: Crashes
) -> None:
    data = tmp_path / "dataset"
    shutil.copytree(dataset, data)
    config = tmp_path / "rules.toml"
    config.write_text(REGROUP_TOML)
    before = {_key(r): r for r in read_records(str(data))}
    assert before == {_key(r): r for r in records.values()}

    rc, _out, err = run_triage("regroup", str(data), "--config", str(config))
    assert rc == 0, err
    assert err.splitlines() == [
        BATCH_KEPT,
        "triage: regrouped 4 rows in 4 files as signature version 2: 2 signatures changed",
    ]

    after = {_key(r): r for r in read_records(str(data))}
    assert set(after) == set(before)
    web_texts = {
        # strlen is generic (a prefix frame, not counted): two frames after it
        "a1": "SIGSEGV | libc.so!strlen | _ctypes.so!string_at | target:third_func",
        "c": "SIGBUS | target:third_func | target:second_func",
    }
    for name, record in records.items():
        new = after[_key(record)]
        assert _without_signature(new) == _without_signature(record), name
        if name in web_texts:
            assert new.report.signature is not None
            assert new.report.signature.text == web_texts[name]
            assert new.report.signature == compute_signature(record.report, REGROUP_RULES)
            assert new.report.signature.id != record.report.signature.id
        else:  # fleet batch has no rules in the file: the default ones, unchanged
            assert new.report.signature == record.report.signature, name
    assert [p.name for p in data.rglob("*") if p.name.endswith(".tmp")] == []
    assert len(list(data.rglob("*.parquet"))) == 4

    # triage groups now groups by the new ids: A's web core apart from its batch core.
    a_web = compute_signature(crashes.a1.report, REGROUP_RULES)
    c_web = compute_signature(crashes.c.report, REGROUP_RULES)
    assert a_web is not None and c_web is not None
    groups = by_id(groups_json(run_triage, data))
    assert {k: (g["signature"], g["cores"], g["fleets"]) for k, g in groups.items()} == {
        a_web.id: (web_texts["a1"], 1, ["web"]),
        c_web.id: (web_texts["c"], 1, ["web"]),
        crashes.a2.sig_id: (SEGV_TEXT, 1, ["batch"]),
        crashes.b.sig_id: (ABORT_TEXT, 1, ["batch"]),
    }

    # Again: nothing to change, no file rewritten.
    mtimes = _mtimes(data)
    rc, _out, err = run_triage("regroup", str(data), "--config", str(config))
    assert rc == 0, err
    assert err.splitlines() == [
        BATCH_KEPT,
        "triage: regrouped 4 rows in 4 files as signature version 2: 0 signatures changed",
    ]
    assert _mtimes(data) == mtimes
    assert {_key(r): r for r in read_records(str(data))} == after


def _written_before_v2(record: SweepRecord) -> SweepRecord:
    """The row a triage before signature version 2 wrote of the same core: no native frame
    (sweeps never unwound), the version-1 signature."""
    threads = [
        replace(t, frames=[f for f in t.frames if f.kind == "python"], status=[])
        for t in record.report.threads
    ]
    report = replace(record.report, threads=threads)
    report.signature = compute_signature(report, Rules(version=1))
    return replace(record, report=report)


def test_regroup_moves_a_version_1_dataset_to_version_2(
    run_triage, tmp_path: Path, records: dict[str, SweepRecord]
) -> None:
    """A dataset of version-1 rows: sweeps keep writing version 1 into it (their plan says
    so, and the task computes it), until `triage regroup` moves every row to version 2 from
    the stored frames."""
    from triage.pipeline.config import Output, SweepConfig
    from triage.pipeline.run import plan
    from triage.pipeline.sink import signature_versions

    data = tmp_path / "dataset"
    old = {name: _written_before_v2(r) for name, r in records.items()}
    _write(data, list(old.values()))
    assert signature_versions(str(data)) == {1}
    config = SweepConfig(sources=[str(tmp_path / "none")], output=Output(dataset=str(data)))
    (tmp_path / "none").mkdir()
    assert plan(config).signature_version == 1

    rc, _out, err = run_triage("regroup", str(data))
    assert rc == 0, err
    assert err.splitlines() == [
        "triage: warning: fleet(s) batch, web of the dataset are not in the configuration: "
        "their rows of another signature version were recomputed as version 2 with the "
        "default rules; if they had rules of their own, list them under [[fleets]] in "
        "--config and regroup again",
        "triage: regrouped 4 rows in 4 files as signature version 2: 4 signatures changed",
    ]
    after = {r.core_id: r for r in read_records(str(data))}
    assert signature_versions(str(data)) == {2}
    assert plan(config).signature_version == 2
    for name, record in old.items():
        new = after[record.core_id]
        assert _without_signature(new) == _without_signature(record), name
        # version 2 of what the row holds: the Python frames of these old rows
        assert new.report.signature == compute_signature(record.report), name
    # Rows with the same text in both versions (a signal sent from outside: Python frames)
    # differ by their id only; the crash in C gets its Python callers only, as stored.
    assert after[old["c"].core_id].report.signature.text == SIGBUS_TEXT
    segv = after[old["a1"].core_id].report.signature
    assert segv.text == "SIGSEGV | ctypes:string_at | " + " | ".join(CALL_CHAIN)
    assert segv.version == 2 and segv.id != old["a1"].report.signature.id

    # Rows written since version 2 keep the crashed thread's native frames: regroup gives
    # exactly what triage core gives.
    fresh = tmp_path / "fresh"
    _write(fresh, list(records.values()))
    rc, _out, err = run_triage("regroup", str(fresh))
    assert rc == 0, err
    assert err.splitlines()[-1].endswith(": 0 signatures changed")


def test_regroup_dry_run_writes_nothing(
    run_triage, tmp_path: Path, dataset: Path, crashes: Crashes
) -> None:
    """Per fleet: rows that change signature, groups that move; no file touched."""
    data = tmp_path / "dataset"
    shutil.copytree(dataset, data)
    config = tmp_path / "rules.toml"
    config.write_text(REGROUP_TOML)
    mtimes = _mtimes(data)
    rc, out, err = run_triage("regroup", str(data), "--config", str(config), "--dry-run")
    assert rc == 0, err
    assert out.splitlines() == [
        "fleet batch: 0 of 2 rows change signature; 0 groups move, into 0 groups; "
        "2 rows kept (fleet not in the configuration)",
        "fleet web: 2 of 2 rows change signature; 2 groups move, into 2 groups",
    ]
    assert err.splitlines() == [
        BATCH_KEPT,
        "triage: would regroup 4 rows in 4 files as signature version 2: 2 signatures would "
        "change; nothing written",
    ]
    assert _mtimes(data) == mtimes


def test_regroup_without_config_keeps_the_fleets_signatures(
    run_triage, tmp_path: Path, dataset: Path, records: dict[str, SweepRecord]
) -> None:
    """Rules once given to fleet web (REGROUP_TOML) are not undone by a regroup without
    --config: the dataset does not say what they were, so web's rows keep their signatures."""
    data = tmp_path / "dataset"
    shutil.copytree(dataset, data)
    config = tmp_path / "rules.toml"
    config.write_text(REGROUP_TOML)
    rc, _out, err = run_triage("regroup", str(data), "--config", str(config))
    assert rc == 0, err
    regrouped = {_key(r): r.report.signature for r in read_records(str(data))}
    mtimes = _mtimes(data)
    rc, _out, err = run_triage("regroup", str(data))
    assert rc == 0, err
    assert err.splitlines() == [
        "triage: warning: fleet(s) batch, web of the dataset are not in the configuration: "
        "their rows keep the signatures they have (the dataset does not store the rules they "
        "were made with); list them under [[fleets]] in --config, with their signature "
        "rules, to regroup them",
        "triage: regrouped 4 rows in 4 files as signature version 2: 0 signatures changed",
    ]
    assert {_key(r): r.report.signature for r in read_records(str(data))} == regrouped
    assert _mtimes(data) == mtimes


def test_sweep_task_computes_the_datasets_version(crashes: Crashes) -> None:
    from triage.pipeline.config import Fleet
    from triage.pipeline.sources import list_sources
    from triage.pipeline.task import SweepInfo, analyze_object, close_processes

    (obj,) = list(list_sources([crashes.a1.path]))
    try:
        infos = {v: SweepInfo("s", D1, time_limit=120, signature_version=v) for v in (1, 2)}
        rows = {v: analyze_object(obj, Fleet(name="web"), info) for v, info in infos.items()}
    finally:
        close_processes()
    assert rows[1]["report"]["signature"]["version"] == 1
    assert rows[1]["report"]["signature"]["text"] == (
        "SIGSEGV | ctypes:string_at | " + " | ".join(CALL_CHAIN)
    )
    assert rows[2]["report"]["signature"]["text"] == SEGV_TEXT


# --------------------------------------------------------------------------------------------
# 3. triage ci


def core_dir(directory: Path, **cores: Core) -> Path:
    """A job's core directory: each core under the given file name (hard links)."""
    directory.mkdir(parents=True)
    for name, core in cores.items():
        try:
            os.link(core.path, directory / name)
        except OSError:  # another filesystem
            shutil.copyfile(core.path, directory / name)
    return directory


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Path]:
    """The job's core directory (not made yet), removed afterwards: its hard links would keep
    megabytes of cores alive in pytest's kept temporary directories."""
    path = tmp_path / "cores"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Suite:
    tests: int
    failures: int
    cases: dict[str, tuple[str, str | None]]
    """testcase name -> (file, failure message or None)."""


def parse_junit(path: Path) -> Suite:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuite"
    assert root.get("errors") == "0"
    cases = {}
    for case in root.findall("testcase"):
        failures = case.findall("failure")
        assert len(failures) <= 1
        cases[case.get("name")] = (
            case.get("file"),
            failures[0].get("message") if failures else None,
        )
    assert len(cases) == len(root.findall("testcase"))
    return Suite(int(root.get("tests")), int(root.get("failures")), cases)


@pytest.fixture(scope="module")
def baseline_json(run_triage, tmp_path_factory: pytest.TempPathFactory, crashes: Crashes) -> Path:
    """`triage ci --json` of an earlier job that crashed at A's site (the second core)."""
    root = tmp_path_factory.mktemp("groups-ci-baseline")
    job = core_dir(root / "job", **{"core-earlier": crashes.a2})
    out_json = root / "baseline.json"
    rc, _out, err = run_triage("ci", str(job), "--json", str(out_json), env=NO_SUMMARY)
    shutil.rmtree(job)
    assert rc == 1, err  # no baseline: a new crash, failing by default
    saved = json.loads(out_json.read_text())
    assert [(c["core"], c["known"], c["signature_id"]) for c in saved["crashes"]] == [
        (str(job / "core-earlier"), False, crashes.a2.sig_id)
    ]
    return out_json


def test_ci_empty_core_dir(run_triage, tmp_path: Path, job: Path) -> None:
    empty = job
    empty.mkdir()
    (empty / "notes.txt").write_text("not a core\n")
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    rc, out, err = run_triage(
        "ci", str(empty), "--junit", str(junit), env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert rc == 0, err
    assert out == "triage: no core files were left behind\n"
    assert err.splitlines() == ["triage: 0 crash(es), 0 new, 0 known; failing on new: 0"]
    suite = parse_junit(junit)
    assert (suite.tests, suite.failures, suite.cases) == (0, 0, {})
    assert summary.read_text() == (
        "## triage: crashes in this job\n\nNo core files were left behind.\n"
    )


@pytest.mark.parametrize(("fail_on", "rc"), [("new", 0), ("any", 1), ("never", 0)])
def test_ci_known_crash_fail_on(
    run_triage,
    tmp_path: Path,
    job: Path,
    crashes: Crashes,
    baseline_json: Path,
    fail_on: str,
    rc: int,
) -> None:
    """Another core of a crash the baseline has seen (another Python version, too) is known."""
    job = core_dir(job, **{"core-segv": crashes.a1})
    junit = tmp_path / "junit.xml"
    got, out, err = run_triage(
        "ci",
        str(job),
        "--baseline",
        str(baseline_json),
        "--fail-on",
        fail_on,
        "--junit",
        str(junit),
        env=NO_SUMMARY,
    )
    assert got == rc, err
    assert f"=== 1/1: known crash: {job / 'core-segv'}\n" in out
    assert f"Signature {crashes.a1.sig_id}: {SEGV_TEXT}\n" in out
    assert err.splitlines() == [f"triage: 1 crash(es), 0 new, 1 known; failing on {fail_on}: {rc}"]
    suite = parse_junit(junit)
    failure = f"known crash: {SEGV_TEXT}" if rc else None
    assert (suite.tests, suite.failures) == (1, rc)
    assert suite.cases == {"core-segv": (str(job / "core-segv"), failure)}


@pytest.mark.parametrize("fail_on", ["new", "any"])
def test_ci_new_crash_junit(
    run_triage, tmp_path: Path, job: Path, crashes: Crashes, baseline_json: Path, fail_on: str
) -> None:
    job = core_dir(job, **{"core-segv": crashes.a1, "core-abort": crashes.b})
    junit = tmp_path / "junit.xml"
    args = ["ci", str(job), "--baseline", str(baseline_json), "--junit", str(junit)]
    if fail_on != "new":
        args += ["--fail-on", fail_on]  # else the default
    rc, out, err = run_triage(*args, env=NO_SUMMARY)
    assert rc == 1, err
    assert f"=== 1/2: NEW crash: {job / 'core-abort'}\n" in out
    assert f"=== 2/2: known crash: {job / 'core-segv'}\n" in out
    assert f"Signature {crashes.b.sig_id}: {ABORT_TEXT}\n" in out
    failing = 1 if fail_on == "new" else 2
    assert err.splitlines() == [
        f"triage: 2 crash(es), 1 new, 1 known; failing on {fail_on}: {failing}"
    ]
    suite = parse_junit(junit)
    assert (suite.tests, suite.failures) == (2, failing)
    assert suite.cases == {
        "core-abort": (str(job / "core-abort"), f"new crash: {ABORT_TEXT}"),
        "core-segv": (
            str(job / "core-segv"),
            f"known crash: {SEGV_TEXT}" if fail_on == "any" else None,
        ),
    }


def test_ci_locals(run_triage, tmp_path: Path, job: Path, crashes: Crashes) -> None:
    """--locals: the crashing frames' arguments in the job's log and in the JUnit report."""
    job = core_dir(job, **{"core-segv": crashes.a1})
    junit = tmp_path / "junit.xml"
    rc, out, err = run_triage("ci", str(job), "--locals", "--junit", str(junit), env=NO_SUMMARY)
    assert rc == 1, err
    arguments = re.compile(
        r" in third_func\n.*\n      Arguments:\n        action: 'segv'\n        address: \d+\n"
    )
    assert arguments.search(out), out
    (body,) = [e.text for e in ET.parse(junit).getroot().iter("failure")]
    assert arguments.search(body + "\n"), body
    rc, out, _err = run_triage("ci", str(job), env=NO_SUMMARY)
    assert rc == 1 and " in third_func\n" in out and "Arguments:" not in out


def test_ci_native(run_triage, job: Path, crashes: Crashes) -> None:
    """--native: the C frames of the crash in the job's log; the signature, and so whether
    the crash is known or new, the same as without it."""
    job = core_dir(job, **{"core-segv": crashes.a1})
    rc, out, err = run_triage("ci", str(job), "--native", env=NO_SUMMARY)
    assert rc == 1, err
    rc_plain, plain, _ = run_triage("ci", str(job), env=NO_SUMMARY)
    assert rc_plain == 1
    assert f"Signature {crashes.a1.sig_id}: {SEGV_TEXT}\n" in out
    assert [line for line in out.splitlines() if line.startswith("Signature ")] == [
        line for line in plain.splitlines() if line.startswith("Signature ")
    ]
    native = re.compile(r"^    \(C\) File \".*\", line \d+, in .+ \((lib\S+|python\S*)\)$", re.M)
    assert native.search(out) and not native.search(plain)
    # The crashing frames, oldest first: ctypes' C code runs under third_func.
    lines = out.splitlines()
    third = max(i for i, line in enumerate(lines) if line.endswith(" in third_func"))
    assert any(native.match(line) for line in lines[third + 1 :])


@pytest.mark.parametrize("kind", ["dataset", "groups-json"])
def test_ci_baseline_dataset(
    run_triage, tmp_path: Path, job: Path, crashes: Crashes, dataset: Path, kind: str
) -> None:
    """A sweep dataset as the baseline (or `triage groups --format json` of it) knows every
    signature in it (A, B, C), not SIGQUIT's; it works as the `triage ci --json` one does."""
    baseline = dataset
    if kind == "groups-json":
        rc, out, err = run_triage("groups", str(dataset), "--format", "json")
        assert rc == 0, err
        baseline = tmp_path / "groups.json"
        baseline.write_text(out)
    job = core_dir(
        job,
        **{"core-segv": crashes.a1, "core-abort": crashes.b, "core-quit": crashes.q},
    )
    junit = tmp_path / "junit.xml"
    rc, out, err = run_triage(
        "ci", str(job), "--baseline", str(baseline), "--junit", str(junit), env=NO_SUMMARY
    )
    assert rc == 1, err
    assert f"=== 1/3: known crash: {job / 'core-abort'}\n" in out
    assert f"=== 2/3: NEW crash: {job / 'core-quit'}\n" in out
    assert f"=== 3/3: known crash: {job / 'core-segv'}\n" in out
    assert err.splitlines() == ["triage: 3 crash(es), 1 new, 2 known; failing on new: 1"]
    suite = parse_junit(junit)
    assert (suite.tests, suite.failures) == (3, 1)
    assert suite.cases == {
        "core-abort": (str(job / "core-abort"), None),
        "core-quit": (str(job / "core-quit"), f"new crash: {SIGQUIT_TEXT}"),
        "core-segv": (str(job / "core-segv"), None),
    }
    # Without the new crash: nothing to fail on unless --fail-on any.
    (job / "core-quit").unlink()
    for fail_on, want in (("new", 0), ("any", 1), ("never", 0)):
        rc, _out, err = run_triage(
            "ci", str(job), "--baseline", str(baseline), "--fail-on", fail_on, env=NO_SUMMARY
        )
        assert rc == want, err
        assert err.splitlines() == [
            f"triage: 2 crash(es), 0 new, 2 known; failing on {fail_on}: {2 if want else 0}"
        ]


def test_ci_github_step_summary(
    run_triage, tmp_path: Path, job: Path, crashes: Crashes, baseline_json: Path
) -> None:
    job = core_dir(job, **{"core-segv": crashes.a1, "core-abort": crashes.b})
    summary, markdown = tmp_path / "summary.md", tmp_path / "triage.md"
    summary.write_text("# an earlier step\n")
    rc, _out, err = run_triage(
        "ci",
        str(job),
        "--baseline",
        str(baseline_json),
        "--markdown",
        str(markdown),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert rc == 1, err
    text = summary.read_text()
    assert text.startswith("# an earlier step\n## triage: crashes in this job\n")
    ours = text[len("# an earlier step\n") :]
    assert markdown.read_text() == ours
    lines = ours.splitlines()
    assert (
        f"2 core file(s): **1 new**, 1 known against `{baseline_json}`; failing on `new`." in lines
    )
    rows = [_markdown_cells(line) for line in lines if line.startswith(("| NEW ", "| known "))]
    assert rows == [
        ["NEW", "`core-abort`", "SIGABRT", f"`{crashes.b.sig_id}`", "`python!os_abort`"],
        ["known", "`core-segv`", "SIGSEGV", f"`{crashes.a1.sig_id}`", "`libc.so!strlen`"],
    ]
    assert f"<details><summary>NEW: core-abort ({ABORT_TEXT})</summary>" in lines
    assert f"<details><summary>known: core-segv ({SEGV_TEXT})</summary>" in lines


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"crashes": [', "triage: error: baseline {path} is not readable JSON: "),
        (
            '{"known": []}',
            "triage: error: baseline {path}: expected `triage ci --json` or "
            "`triage groups --format json` output, or a JSON list of signature ids",
        ),
        # Valid JSON of the right shape whose entries are not objects: still one line.
        ('{"crashes": ["57aec32f1404"]}', "triage: error: baseline {path}"),
        (None, "triage: error: cannot read baseline dataset {path}: "),
    ],
    ids=["invalid-json", "wrong-shape", "wrong-entries", "missing"],
)
def test_ci_unreadable_baseline(
    run_triage, tmp_path: Path, job: Path, crashes: Crashes, content: str | None, message: str
) -> None:
    job = core_dir(job, **{"core-segv": crashes.a1})
    bad = tmp_path / "baseline.json"
    if content is not None:
        bad.write_text(content)
    rc, out, err = run_triage("ci", str(job), "--baseline", str(bad), env=NO_SUMMARY)
    assert "Traceback" not in err
    assert rc == 3, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(message.format(path=bad))


PYTEST_CRASH = textwrap.dedent(
    """\
    import ctypes


    def test_fine():
        pass


    def test_boom():
        ctypes.string_at(0x1234)
    """
)


def test_ci_names_the_pytest_test(run_triage, tmp_path: Path, job: Path) -> None:
    """A real pytest session dies in test_boom; the kernel's core names it."""
    pattern, uses_pid = corefactory._core_pattern()
    if pattern.startswith("|"):
        pytest.skip(f"kernel core_pattern {pattern!r} pipes cores to a program, writes no file")
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("RLIMIT_CORE hard limit is 0: the kernel writes no core files")
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_x.py").write_text(PYTEST_CRASH)

    def unlimited_cores() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS", "PYTHONPATH", "PYTHONHOME")
    }
    command = [sys.executable, "-m", "pytest", "test_x.py", "-q"]
    command += ["-p", "no:faulthandler", "-p", "no:cacheprovider"]
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=unlimited_cores,
    )
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGSEGV, output.decode(errors="replace")
    found = sorted(
        Path(p)
        for p in glob.glob(
            corefactory._core_glob(
                pattern, uses_pid, str(work), proc.pid, signal.SIGSEGV, sys.executable
            )
        )
    )
    if not found:
        pytest.skip(f"kernel core_pattern {pattern!r} wrote no core file for pid {proc.pid}")
    job.mkdir()
    shutil.move(found[0], job / "core")

    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    rc, out, err = run_triage(
        "ci", str(job), "--junit", str(junit), env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert rc == 1, err
    assert f"=== 1/1: NEW crash in test test_x.py::test_boom: {job / 'core'}\n" in out
    suite = parse_junit(junit)
    assert (suite.tests, suite.failures) == (1, 1)
    [(name, (file, message))] = suite.cases.items()
    assert (name, file) == ("test_x.py::test_boom", str(job / "core"))
    assert message is not None
    # pytest's and pluggy's frames are not in signatures, nor faulthandler's (pytest enables
    # it: the core is of its handler re-raising SIGSEGV)
    assert message.startswith(
        "new crash: SIGSEGV | libc.so!strlen | _ctypes.so!string_at | ctypes:string_at | "
        "test_x:test_boom"
    )
    lines = summary.read_text().splitlines()
    rows = [_markdown_cells(line) for line in lines if line.startswith("| NEW ")]
    assert len(rows) == 1
    assert rows[0][:3] == ["NEW", "`test_x.py::test_boom`", "SIGSEGV"]
    assert rows[0][4] == "`libc.so!strlen`"


@pytest.mark.parametrize(
    ("option", "target", "problem"),
    [
        ("--junit", "missing/dir/x.xml", "directory {tmp}/missing/dir does not exist"),
        ("--json", "", "it is a directory; give a file name"),
        ("--markdown", "missing/summary.md", "directory {tmp}/missing does not exist"),
        ("$GITHUB_STEP_SUMMARY", "gone/summary.md", "directory {tmp}/gone does not exist"),
    ],
    ids=["junit", "json-directory", "markdown", "step-summary"],
)
def test_ci_output_it_cannot_write(
    run_triage, tmp_path: Path, job: Path, crashes: Crashes, option: str, target: str, problem: str
) -> None:
    """Exit 3 ("triage failed"), never 1 ("crashes found"), in one line, before analysing."""
    core_dir(job, core=crashes.a1)
    path = str(tmp_path / target) if target else str(tmp_path)
    if option.startswith("$"):
        args, env = [], {**NO_SUMMARY, "GITHUB_STEP_SUMMARY": path}
    else:
        args, env = [option, path], NO_SUMMARY
    rc, out, err = run_triage("ci", str(job), *args, env=env)
    assert (rc, out) == (3, "")
    assert err.splitlines() == [
        f"triage: error: cannot write {option} {path}: {problem.format(tmp=tmp_path)}"
    ]


def test_ci_help_documents_the_exit_statuses(run_triage) -> None:
    rc, out, _err = run_triage("ci", "--help")
    assert rc == 0
    text = " ".join(out.split())
    assert (
        "Exit status: 0 nothing to fail on, 1 crashes to fail on (see --fail-on), 2 usage "
        "error, 3 triage itself failed: it could not read the cores or the baseline, or write "
        "an output (--junit, --json, --markdown, $GITHUB_STEP_SUMMARY)."
    ) in text
