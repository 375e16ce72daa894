"""`triage dashboard`: a real dataset (real cores, two real `triage sweep` runs and one older
sweep's row written as a sweep writes it), the page rendered and checked in headless Chromium:
the DOM after the page's script ran (loaded with a fragment, or driven over the DevTools
protocol as a person clicks and chooses), its console, and a screenshot.

The corpus (module fixture `dataset`), swept with fleets `web` (*/web/*) and `batch`
(*/batch/*); hosts and times come from each core's sidecar `<core>.json`:

    old sweep  old/core.segv    a copy of web/core.segv    web    web-old  2001-02-02T23:00:00Z
    sweep 1    web/core.segv    SIGSEGV, preferred (3.12)  web    web-1    2026-03-01T10:00:00Z
               web/core.gcore   on demand, preferred       web    web-1    (mtime) 2026-03-02T08:30Z
               batch/core.segv  SIGSEGV, another (3.11)    batch  batch-1  2026-03-01T11:00:00Z
               batch/core.trunc the first 200 kB of batch/core.segv: truncated_core
               batch/notes.txt  not a core: not_core
    sweep 2    web/core.abort   SIGABRT, preferred: NEW    web    web-2    2026-03-03T09:00:00Z
               web/core.segv2   SIGSEGV, preferred         web    web-2    2026-03-03T10:00:00Z

So the segv signature has 4 cores on 4 hosts, 3 of the preferred Python and 1 of the other,
1, 2 and 1 in the three sweeps; its example core (the one `triage groups` names) is
web/core.segv2.

Chromium logs every console message (log, error, uncaught exception, a refusal of the
Content-Security-Policy) as a `CONSOLE` line on stderr, and the page writes none: any such line
fails the test.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyarrow", reason="pyarrow is not installed")
pytest.importorskip("duckdb", reason="duckdb is not installed")
pytest.importorskip("distributed", reason="dask.distributed is not installed")

import corefactory
from browser import CHROMIUM, DevTools, dump_dom, run_chromium
from conftest import triage_env
from corefactory import CoreUnavailable, Interpreter

import triage
from triage.pipeline.dashboard import build_dashboard, dashboard_data
from triage.pipeline.groups import Filters, GroupsResult, compute_groups
from triage.pipeline.query import connect
from triage.pipeline.schema import arrow_schema, record_to_dict
from triage.pipeline.sink import ParquetSink, partition_dir, write_atomically
from triage.report import Collection, SweepRecord

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

FLEETS_TOML = """
[[fleets]]
name = "web"
match = ["*/web/*"]

[[fleets]]
name = "batch"
match = ["*/batch/*"]
"""

SWEEP_DONE = re.compile(r"^triage: sweep (\S+) done: ", re.MULTILINE)
WINDOW = (1400, 1000)

OLD_SWEEP, OLD_DATE = "20010203T040506Z-0ld0ld", "2001-02-03"

#: Sidecars: name in the layout -> what the collector recorded.
SIDECARS = {
    "web/core.segv": {"host": "web-1", "timestamp": "2026-03-01T10:00:00Z"},
    "web/core.gcore": {"host": "web-1"},
    "batch/core.segv": {"host": "batch-1", "timestamp": "2026-03-01T11:00:00Z"},
    "web/core.abort": {"host": "web-2", "timestamp": "2026-03-03T09:00:00Z"},
    "web/core.segv2": {"host": "web-2", "timestamp": "2026-03-03T10:00:00Z"},
}
GCORE_MTIME = "2026-03-02T08:30:00Z"
OLD_HOST, OLD_TIMESTAMP = "web-old", "2001-02-02T23:00:00Z"


def _triage(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triage", *args],
        capture_output=True,
        text=True,
        env=triage_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


# -- the dataset ---------------------------------------------------------------------------


@dataclass
class Dataset:
    root: Path
    config: Path
    sweeps: list[str]
    """The three sweep ids, oldest first (the old one, then as the two sweeps printed them)."""
    urls: dict[str, str]
    """Name in the layout (web/core.segv, ...) -> the core's path."""
    preferred: Interpreter
    other: Interpreter
    page: Path
    """The page of the dataset, built in this process."""
    html: str
    groups: GroupsResult
    """`triage groups` of the dataset over the same 14 sweeps."""

    def version(self, interp: Interpreter) -> str:
        return "{}.{}.{}".format(*interp.version)

    @property
    def today(self) -> str:
        """The date of the two real sweeps (both made now)."""
        sweep = self.sweeps[1]
        return f"{sweep[:4]}-{sweep[4:6]}-{sweep[6:8]}"

    def signature_of(self, name: str) -> str:
        return _rows(self.root)[self.urls[name]]["signature"]


def _sweep(source: Path, dataset: Path, config: Path) -> str:
    args = ["sweep", str(source), "-o", str(dataset), "--workers", "1", "--config", str(config)]
    result = _triage(*args, timeout=600)
    assert result.returncode == 0, result.stderr
    found = SWEEP_DONE.findall(result.stderr)
    assert len(found) == 1, result.stderr
    return found[0]


def _old_record(path: str) -> SweepRecord:
    """A core of an older sweep, as a sweep of fleet web writes it."""
    report = triage.analyze_core(path)
    assert report.error is None and report.signature is not None
    return SweepRecord(
        core_id="old-segv",
        sweep_id=OLD_SWEEP,
        sweep_date=OLD_DATE,
        fleet="web",
        status="ok",
        collection=Collection(source_url=path, fleet="web", host=OLD_HOST, timestamp=OLD_TIMESTAMP),
        report=report,
    )


@pytest.fixture(scope="module")
def dataset(interpreters, preferred_interp, tmp_path_factory) -> Dataset:
    other = corefactory.preferred_interpreter(
        [i for i in interpreters if i.version[:2] != preferred_interp.version[:2]],
        [(3, 11), (3, 10), (3, 13), (3, 9), (3, 8)],
    )
    if other is None:
        pytest.skip("needs a second shared-build interpreter (3.8-3.13) besides the preferred one")
    tmp = tmp_path_factory.mktemp("dashboard")
    work = tmp / "work"
    a, b = tmp / "sweep-1", tmp / "sweep-2"
    layout: dict[str, Path] = {}

    def place(name: str, source_dir: Path, make: Any) -> None:
        try:
            case = make()
        except CoreUnavailable as exc:
            pytest.skip(str(exc))
        dest = source_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(case.path, dest)
        layout[name] = dest

    place("web/core.segv", a, lambda: corefactory.make_crash(preferred_interp, work / "1", "segv"))
    place("web/core.gcore", a, lambda: corefactory.make_gcore(preferred_interp, work / "2", 1))
    place("batch/core.segv", a, lambda: corefactory.make_crash(other, work / "3", "segv"))
    trunc = a / "batch/core.trunc"
    trunc.write_bytes(layout["batch/core.segv"].read_bytes()[:200_000])
    layout["batch/core.trunc"] = trunc
    notes = a / "batch/notes.txt"
    notes.write_text("not a core: the on-call notes of the batch fleet\n")
    layout["batch/notes.txt"] = notes
    place(
        "web/core.abort", b, lambda: corefactory.make_crash(preferred_interp, work / "4", "abort")
    )
    place("web/core.segv2", b, lambda: corefactory.make_crash(preferred_interp, work / "5", "segv"))
    for name, sidecar in SIDECARS.items():
        Path(f"{layout[name]}.json").write_text(json.dumps(sidecar))
    os.utime(layout["web/core.gcore"], (_epoch(GCORE_MTIME), _epoch(GCORE_MTIME)))
    old = tmp / "old" / "core.segv"
    old.parent.mkdir()
    shutil.copyfile(layout["web/core.segv"], old)
    layout["old/core.segv"] = old

    config = tmp / "fleets.toml"
    config.write_text(FLEETS_TOML)
    root = tmp / "dataset"
    sweeps = [_sweep(a, root, config), _sweep(b, root, config)]
    with ParquetSink(str(root)) as sink:
        sink.add(_old_record(str(old)))
    assert OLD_SWEEP < sweeps[0] < sweeps[1]
    html = build_dashboard(str(root))
    page = tmp / "dashboard.html"
    page.write_text(html, encoding="utf-8")
    return Dataset(
        root=root,
        config=config,
        sweeps=[OLD_SWEEP, *sweeps],
        urls={name: str(path) for name, path in layout.items()},
        preferred=preferred_interp,
        other=other,
        page=page,
        html=html,
        groups=compute_groups(str(root), sweeps=14),
    )


def _rows(root: Path) -> dict[str, dict[str, Any]]:
    """url -> (status, fleet, python_version, signal, signature id, sweep) of every file."""
    con, latest = connect(str(root))
    found = con.execute(
        f"SELECT collection.source_url, status, fleet, report.python_version, "
        f"report.signal.name, report.signature.id, sweep_id FROM ({latest})"
    ).fetchall()
    keys = ("status", "fleet", "python", "signal", "signature", "sweep")
    return {url: dict(zip(keys, rest, strict=True)) for url, *rest in found}


# -- the DOM -------------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str]

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        """Every element below this one (document order) with the tag, class and attributes."""
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if (
                    (tag is None or child.tag == tag)
                    and (cls is None or cls in child.classes())
                    and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
                ):
                    found.append(child)
                found.extend(child.all(tag, cls, **attrs))
        return found

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, [])
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, [])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def _open(tmp: Path, page: Path, fragment: str = "") -> Node:
    """The page (at `#fragment`) after its script ran; no console message."""
    html, console = dump_dom(tmp, page.as_uri() + fragment)
    assert console == []
    dom = parse_html(html)
    assert dom.one("body").attrs.get("data-rendered") == "true"
    return dom


def _counts(dom: Node, table_id: str) -> dict[str, int]:
    rows = dom.one("table", id=table_id).one("tbody").all("tr")
    return {r.attrs["data-name"]: int(r.attrs["data-cores"]) for r in rows}


def _cells(dom: Node, table_id: str) -> list[list[str]]:
    rows = dom.one("table", id=table_id).one("tbody").all("tr")
    return [[cell.text for cell in row.all("td")] for row in rows]


def _totals(dom: Node) -> dict[str, str]:
    return {c.attrs["data-total"]: c.one(cls="value").text for c in dom.all(cls="card")}


def _facts(dom: Node) -> dict[str, str]:
    return {f.attrs["data-fact"]: f.one("dd").text for f in dom.one("dl", cls="facts").all("div")}


def _table_rows(dom: Node) -> list[tuple[str, int, str]]:
    """The signature table: (id, cores, trend) of each row, in order (none without a table)."""
    rows = [row for table in dom.all("table", id="signature-table") for row in table.all("tr")]
    rows = [row for row in rows if "sig-row" in row.classes()]
    return [
        (r.attrs["data-sig"], int(r.attrs["data-cores"]), r.one("svg").attrs["data-trend"])
        for r in rows
    ]


def _groups_rows(result: GroupsResult) -> list[tuple[str, int, str]]:
    return [(g.signature_id, g.cores, " ".join(map(str, g.trend))) for g in result.groups]


# -- `triage core`, as the page's command runs it ------------------------------------------

THREAD_HEAD = re.compile(
    r"^Traceback for thread (\d+) \((.*)\) \[(.*)\] \(most recent call last\):$"
)


def _run_command(command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """A `triage core ...` command as shown on the page, run with this checkout's triage."""
    argv = shlex.split(command)
    assert argv[:2] == ["triage", "core"], command
    return _triage(*argv[1:], *extra)


def _tracebacks(stdout: str) -> dict[int, tuple[str, list[str]]]:
    """tid -> (the page's heading of the thread, its frame lines) from `triage core` text:
    the heading `Thread TID (NAME)[, crashed] [STATUS]` is built from triage's own
    `Traceback for thread TID (NAME) [STATUS] ...` line, the frames are its `(Python)` and
    `(C)` lines (source lines left out)."""
    found: dict[int, tuple[str, list[str]]] = {}
    lines: list[str] = []
    for line in stdout.splitlines():
        head = THREAD_HEAD.match(line)
        if head:
            tid, name, status = head.groups()
            lines = []
            found[int(tid)] = (f"Thread {tid} ({name})" + (f" [{status}]" if status else ""), lines)
        elif line.startswith(("    (Python) ", "    (C) ")):
            lines.append(line)
    return found


def _crashed_heading(heading: str) -> str:
    """`Thread T (N) [S]` -> `Thread T (N), crashed [S]`."""
    return re.sub(r"^(Thread \d+ \(.*?\))", r"\1, crashed", heading)


# -- tests ---------------------------------------------------------------------------------


@needs_chromium
def test_console_lines_are_seen(tmp_path):
    """The console check below is not vacuous: this Chromium reports a page's console
    messages and uncaught exceptions where the tests look for them."""
    page = tmp_path / "probe.html"
    page.write_text(
        '<!DOCTYPE html><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<script>console.error("probe error")</script><script>null.probe</script>'
    )
    _html, console = dump_dom(tmp_path, page.as_uri())
    assert len(console) == 2, console
    assert console[0].startswith('"probe error"')
    assert console[1].startswith('"Uncaught TypeError:')


@needs_chromium
def test_overview_in_chromium(dataset, tmp_path):
    dom = _open(tmp_path, dataset.page)
    assert dom.one("body").attrs["data-view"] == "overview"
    rows = _rows(dataset.root)
    urls = dataset.urls
    assert len(rows) == 8
    groups = dataset.groups.groups
    by_id = {g.signature_id: g for g in groups}
    segv_sig, abort_sig = (
        dataset.signature_of("web/core.segv"),
        dataset.signature_of("web/core.abort"),
    )
    gcore_sig = dataset.signature_of("web/core.gcore")

    # Header and totals: files that are not cores, failed analyses and crash groups apart.
    assert dom.one(id="dataset").text == str(dataset.root)
    assert dom.one(id="latest-sweep").text == dataset.sweeps[2]
    assert _totals(dom) == {
        "cores": "7",
        "signatures": "3",
        "new": "1",
        "failed": "1",
        "not_core": "1",
        "unsigned": "0",
    }
    assert [s.text for s in dom.one(id="failed-statuses").all("li")] == ["truncated_core: 1"]
    assert rows[urls["batch/core.trunc"]]["status"] == "truncated_core"
    assert rows[urls["batch/notes.txt"]]["status"] == "not_core"
    assert dom.one(id="filter-summary").text == "8 files"
    cores_card = dom.one(cls="card", data_total="cores")
    assert cores_card.one("svg").attrs["data-trend"] == "1 4 2"

    # Top signatures: exactly `triage groups`' rows, in its order, NEW on exactly the new one.
    assert _table_rows(dom) == _groups_rows(dataset.groups)
    assert _table_rows(dom) == [
        (segv_sig, 4, "1 2 1"),
        *sorted([(abort_sig, 1, "0 0 1"), (gcore_sig, 1, "0 1 0")]),
    ]
    table = dom.one("table", id="signature-table").one("tbody")
    for row in table.all("tr", cls="sig-row"):
        group = by_id[row.attrs["data-sig"]]
        assert row.one(cls="sig-text").text == group.signature
        assert row.one(cls="sig-id").text == group.signature_id
        assert row.one("a", cls="sig-link").attrs["href"] == "#sig=" + group.signature_id
        assert row.one("td", cls="hosts").text == str(group.hosts)
        assert row.one("td", cls="fleets").text == ", ".join(group.fleets)
        assert row.one("td", cls="pythons").text == ", ".join(group.python_versions)
        badges = [b.text for b in row.all(cls="badge")]
        assert badges == (["NEW"] if group.signature_id == abort_sig else [])
        assert ("is-new" in row.classes()) == (group.signature_id == abort_sig)
    segv_row = table.one("tr", data_sig=segv_sig)
    assert segv_row.one("td", cls="hosts").text == "4"
    assert segv_row.one("td", cls="seen").text == f"{OLD_DATE} \u2192 {dataset.today}"
    assert segv_row.one("td", cls="pythons").text == ", ".join(
        sorted([dataset.version(dataset.preferred), dataset.version(dataset.other)],
               key=lambda v: tuple(map(int, v.split("."))))
    )  # fmt: skip
    assert by_id[abort_sig].signature.endswith(" | target:<module>")

    # New since the last sweep: the abort alone, linked to its page.
    new_items = dom.one("section", id="new").all("li", cls="new-item")
    assert [i.attrs["data-sig"] for i in new_items] == [abort_sig]
    assert new_items[0].one(cls="sig-text").text == by_id[abort_sig].signature
    assert new_items[0].one("a").attrs["href"] == "#sig=" + abort_sig

    # Splits: cores per fleet with its failed analyses and files that are not cores; Python
    # versions and signals of cores, the on-demand core named as signatures name it.
    assert _cells(dom, "by-fleet") == [["web", "5", "0", "0", ""], ["batch", "2", "1", "1", ""]]
    pythons = {dataset.version(dataset.preferred): 5, dataset.version(dataset.other): 1}
    assert _counts(dom, "by-python") == {**pythons, "unknown": 1}
    assert rows[urls["web/core.gcore"]]["signal"] == "SIGSTOP"
    assert rows[urls["batch/core.trunc"]]["signal"] == "SIGSEGV"
    assert _counts(dom, "by-signal") == {"SIGSEGV": 5, "SIGABRT": 1, "on-demand": 1}
    assert _counts(dom, "by-status") == {"ok": 6, "truncated_core": 1, "not_core": 1}

    # Texts with <module> are text: escaped in the page, never elements in the DOM.
    assert "<module>" not in dataset.html
    assert "\\u003cmodule\\u003e" in dataset.html
    assert dom.all("module") == [] and dom.all("locals") == []


def _expected_core_row(dataset: Dataset, name: str, made: str, python: Interpreter) -> list[str]:
    path = dataset.urls[name]
    host = OLD_HOST if name.startswith("old/") else SIDECARS[name]["host"]
    swept = OLD_DATE if name.startswith("old/") else dataset.today
    fleet = "web" if name.startswith("old/") else name.split("/", 1)[0]
    return [path, host, made, swept, dataset.version(python), fleet, f"triage core {path}"]


@needs_chromium
def test_signature_page(dataset, tmp_path):
    """`#sig=ID` opens the signature's page: its cores, hosts, versions, timeline, the stack of
    its example core as `triage core` prints it, and the command that prints it."""
    segv_sig = dataset.signature_of("web/core.segv")
    dom = _open(tmp_path, dataset.page, "#sig=" + segv_sig)
    assert dom.one("body").attrs["data-view"] == "signature"
    page = dom.one("section", id="signature")
    assert page.attrs["data-sig"] == segv_sig
    group = next(g for g in dataset.groups.groups if g.signature_id == segv_sig)
    assert page.one("h2", cls="sig-text").text == group.signature
    assert page.one("a", id="permalink").attrs["href"] == "#sig=" + segv_sig
    assert page.one("a", id="back").attrs["href"] == "#"
    assert page.all(cls="badge") == []
    assert dom.all(id="overview") == []

    assert _facts(page) == {
        "cores": "4",
        "hosts": "4",
        "pythons": "2",
        "first-seen": OLD_DATE,
        "last-seen": dataset.today,
    }
    assert _counts(page, "sig-hosts") == {"web-1": 1, "web-2": 1, "batch-1": 1, "web-old": 1}
    preferred, other = dataset.version(dataset.preferred), dataset.version(dataset.other)
    assert _counts(page, "sig-pythons") == {preferred: 3, other: 1}
    assert _cells(page, "sig-timeline") == [
        [OLD_SWEEP, OLD_DATE, "1"],
        [dataset.sweeps[1], dataset.today, "2"],
        [dataset.sweeps[2], dataset.today, "1"],
    ]
    assert _cells(page, "sig-cores") == [
        _expected_core_row(dataset, "web/core.segv2", SIDECARS["web/core.segv2"]["timestamp"],
                           dataset.preferred),
        _expected_core_row(dataset, "batch/core.segv", SIDECARS["batch/core.segv"]["timestamp"],
                           dataset.other),
        _expected_core_row(dataset, "web/core.segv", SIDECARS["web/core.segv"]["timestamp"],
                           dataset.preferred),
        _expected_core_row(dataset, "old/core.segv", OLD_TIMESTAMP, dataset.preferred),
    ]  # fmt: skip

    # Every command on the page analyses its core to this signature.
    for command in (c.text for c in page.all("code", cls="repro")):
        result = _run_command(command, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["signature"]["id"] == segv_sig

    # The example core's crashed thread, line for line what its command prints.
    stack = page.one(id="sig-stack")
    assert stack.one("code", id="example-core").text == dataset.urls["web/core.segv2"]
    assert group.example_core == dataset.urls["web/core.segv2"]
    (thread,) = stack.all(cls="thread")
    shown = _run_command(f"triage core {dataset.urls['web/core.segv2']}", "--no-color")
    assert shown.returncode == 0, shown.stderr
    heading, lines = _tracebacks(shown.stdout)[int(thread.attrs["data-tid"])]
    assert thread.one("h3").text == _crashed_heading(heading)
    assert thread.one("pre", cls="frames").text.splitlines() == lines
    assert [line.split(", in ")[-1] for line in lines] == [
        "<module>", "first_func", "second_func", "third_func", "string_at"
    ]  # fmt: skip
    assert stack.all(cls="exception") == []  # no such column in this dataset


@needs_chromium
def test_signature_page_of_thread_tops(dataset, tmp_path):
    """An on-demand core where no thread holds the GIL: its signature is made of every Python
    thread's top, so the page shows every Python thread, each as `triage core` prints it; the
    time the core was made is its file's mtime (its sidecar has none)."""
    gcore_sig = dataset.signature_of("web/core.gcore")
    page = _open(tmp_path, dataset.page, "#sig=" + gcore_sig).one("section", id="signature")
    assert _cells(page, "sig-cores") == [
        _expected_core_row(dataset, "web/core.gcore", GCORE_MTIME + " (mtime)", dataset.preferred)
    ]
    stack = page.one(id="sig-stack")
    assert stack.one("h2").text == "Stacks"
    shown = _tracebacks(_run_command(f"triage core {dataset.urls['web/core.gcore']}").stdout)
    threads = stack.all(cls="thread")
    assert len(threads) == 2
    assert [int(t.attrs["data-tid"]) for t in threads] == list(shown)
    for thread in threads:
        heading, lines = shown[int(thread.attrs["data-tid"])]
        assert thread.one("h3").text == heading
        assert thread.one("pre", cls="frames").text.splitlines() == lines
    assert [t.one("h3").text.split(" (")[1].split(")")[0] for t in threads] == [
        "MainThread", "worker-0"
    ]  # fmt: skip


@needs_chromium
def test_unknown_signature_in_the_fragment(dataset, tmp_path):
    page = _open(tmp_path, dataset.page, "#sig=ffffffffffff&fleet=web").one(
        "section", id="signature"
    )
    assert page.one("p", cls="empty").text == "No signature ffffffffffff in this dataset."
    assert page.one("a", id="back").attrs["href"] == "#fleet=web"


def _act(tab: DevTools, script: str) -> str:
    """Run `script` (a click, a choice: it changes the fragment) and wait until the page has
    drawn the new view; the new fragment."""
    return tab.evaluate(
        "new Promise((done) => {"
        " addEventListener('hashchange', () => done(location.hash), { once: true });"
        f" {script} }})",
        await_promise=True,
    )


def _choose(tab: DevTools, control: str, value: str) -> str:
    """Choose `value` in the filter control `control` (a select or a date input)."""
    return _act(
        tab,
        f"const c = document.getElementById({json.dumps(control)});"
        f" c.value = {json.dumps(value)}; c.dispatchEvent(new Event('change'));",
    )


def _click(tab: DevTools, selector: str) -> str:
    return _act(tab, f"document.querySelector({json.dumps(selector)}).click();")


@needs_chromium
def test_navigation_and_filters(dataset, tmp_path):
    """As a person uses the page: a click on a signature opens its page, the filters narrow
    every count to exactly what `triage groups` counts with the same filters, and the
    fragment keeps the view (back, links, sharing)."""
    segv_sig = dataset.signature_of("web/core.segv")
    root = str(dataset.root)
    preferred, other = dataset.version(dataset.preferred), dataset.version(dataset.other)

    def groups(**filters: str) -> list[tuple[str, int, str]]:
        return _groups_rows(compute_groups(root, filters=Filters(**filters), sweeps=14))

    with DevTools(tmp_path) as tab:
        tab.open(dataset.page.as_uri())
        dom = parse_html(tab.html())
        assert dom.one("body").attrs["data-view"] == "overview"

        # A click on the signature opens its page; the fragment names it.
        assert _click(tab, f'tr[data-sig="{segv_sig}"] a.sig-link') == "#sig=" + segv_sig
        page = parse_html(tab.html()).one("section", id="signature")
        assert page.attrs["data-sig"] == segv_sig
        assert len(_cells(page, "sig-cores")) == 4

        # Fleet web, on the signature's page: its web cores only.
        assert _choose(tab, "filter-fleet", "web") == f"#sig={segv_sig}&fleet=web"
        page = parse_html(tab.html()).one("section", id="signature")
        assert [row[0] for row in _cells(page, "sig-cores")] == [
            dataset.urls[n] for n in ("web/core.segv2", "web/core.segv", "old/core.segv")
        ]
        assert _counts(page, "sig-hosts") == {"web-1": 1, "web-2": 1, "web-old": 1}
        assert [row[2] for row in _cells(page, "sig-timeline")] == ["1", "1", "1"]
        assert _facts(page)["cores"] == "3"

        # Back to the overview, the filter kept.
        assert _click(tab, "#back") == "#fleet=web"
        dom = parse_html(tab.html())
        assert _table_rows(dom) == groups(fleet="web")
        assert _totals(dom) == {
            "cores": "5", "signatures": "3", "new": "1", "failed": "0", "not_core": "0",
            "unsigned": "0",
        }  # fmt: skip
        assert dom.one(id="filter-summary").text == "5 of 8 files match"

        # Fleet batch: one segv core, the truncated core failed, the notes not a core.
        assert _choose(tab, "filter-fleet", "batch") == "#fleet=batch"
        dom = parse_html(tab.html())
        assert _table_rows(dom) == groups(fleet="batch") == [(segv_sig, 1, "0 1 0")]
        assert _totals(dom) == {
            "cores": "2", "signatures": "1", "new": "0", "failed": "1", "not_core": "1",
            "unsigned": "0",
        }  # fmt: skip
        assert _counts(dom, "by-status") == {"ok": 1, "truncated_core": 1, "not_core": 1}
        assert _counts(dom, "by-python") == {other: 1, "unknown": 1}

        # The browser's back button returns to the previous filter.
        assert _act(tab, "history.back();") == "#fleet=web"
        assert _table_rows(parse_html(tab.html())) == groups(fleet="web")

        # Python version: the other interpreter's one core.
        assert _choose(tab, "filter-fleet", "") == ""  # location.hash of a bare `#`
        assert _choose(tab, "filter-python", other) == "#" + urllib.parse.urlencode(
            {"python": other}
        )
        dom = parse_html(tab.html())
        assert _table_rows(dom) == [(segv_sig, 1, "0 1 0")]
        assert _counts(dom, "by-python") == {other: 1}
        assert _choose(tab, "filter-python", preferred)
        dom = parse_html(tab.html())
        assert [(sig, cores) for sig, cores, _ in _table_rows(dom)] == [
            (sig, cores - (sig == segv_sig)) for sig, cores, _ in groups()
        ]

        # Sweep dates: up to the old sweep's date, then from the real sweeps' date.
        assert _choose(tab, "filter-python", "") == ""
        assert _choose(tab, "filter-to", "2001-12-31") == "#to=2001-12-31"
        dom = parse_html(tab.html())
        assert _table_rows(dom) == groups(until="2001-12-31") == [(segv_sig, 1, "1 0 0")]
        assert dom.one(id="filter-summary").text == "1 of 8 files match"
        assert _choose(tab, "filter-from", dataset.today) == (
            f"#from={dataset.today}&to=2001-12-31"
        )
        dom = parse_html(tab.html())
        assert _table_rows(dom) == [] and _totals(dom)["cores"] == "0"
        assert dom.one("section", id="signatures").one("p", cls="empty").text == (
            "No signatures among these cores."
        )
        assert _choose(tab, "filter-to", "") == f"#from={dataset.today}"
        dom = parse_html(tab.html())
        assert _table_rows(dom) == groups(since=dataset.today)
        assert _table_rows(dom)[0] == (segv_sig, 3, "0 2 1")

        # Clearing the filters shows everything again.
        assert _click(tab, "#filter-clear") == ""
        assert _table_rows(parse_html(tab.html())) == _groups_rows(dataset.groups)
    assert tab.console == []


@needs_chromium
def test_screenshot(dataset, tmp_path):
    segv_sig = dataset.signature_of("web/core.segv")
    for fragment in ("", "#sig=" + segv_sig):
        shot = tmp_path / f"dash{len(fragment)}.png"
        result = run_chromium(
            tmp_path,
            f"--screenshot={shot}",
            "--window-size={},{}".format(*WINDOW),
            dataset.page.as_uri() + fragment,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "CONSOLE" not in result.stderr
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert data[12:16] == b"IHDR"
        assert struct.unpack(">II", data[16:24]) == WINDOW
        assert len(data) > 20_000  # a drawn page, not a blank one


def test_page_is_self_contained(dataset):
    html = dataset.html
    assert "http://" not in html and "https://" not in html
    assert re.findall(r'\b(?:src|href)="([^"]*)"', html) == ["data:,"]
    assert html.count("<script") == 2
    embedded = re.search(
        r'<script type="application/json" id="triage-data">(.*?)</script>', html, re.DOTALL
    )
    assert embedded is not None
    data = json.loads(embedded.group(1))
    assert data["latest_sweep"] == dataset.sweeps[2]
    assert [s["id"] for s in data["sweeps"]] == dataset.sweeps
    assert [g["id"] for g in data["signatures"]] == [g.signature_id for g in dataset.groups.groups]
    assert sorted(data["files"]["core"]) == sorted(dataset.urls.values())


def test_fewer_sweeps_in_the_trend(dataset):
    data = dashboard_data(str(dataset.root), sweeps=1)
    assert data["trend_sweeps"] == 1
    assert [s["id"] for s in data["sweeps"]] == dataset.sweeps


# -- hostile text --------------------------------------------------------------------------

HOSTILE = (
    "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>&amp;"
    '"quoted" @SCRIPT@ @DATA@ h\u00f4te \u65e5\u672c'
)


def _with_exceptions(row: dict[str, Any], exceptions: list[dict[str, Any]]) -> Any:
    """The row as a table whose threads carry `exceptions` (as a triage that records them
    writes it): the dataset's Arrow schema with that field added to the threads."""
    import pyarrow as pa

    schema = arrow_schema()
    report = schema.field("report")
    threads = report.type.field("threads")
    thread = threads.type.value_type
    frame = thread.field("frames").type.value_type
    exception = pa.struct(
        [
            pa.field("type", pa.string(), nullable=False),
            pa.field("message", pa.string(), nullable=False),
            pa.field("state", pa.string(), nullable=False),
            pa.field("frames", pa.list_(pa.field("item", frame, nullable=False)), nullable=False),
        ]
    )
    new_thread = pa.struct([*thread, pa.field("exceptions", pa.list_(exception))])
    new_threads = threads.with_type(pa.list_(pa.field("item", new_thread, nullable=False)))
    new_report = report.with_type(
        pa.struct([new_threads if f.name == "threads" else f for f in report.type])
    )
    new_schema = pa.schema([new_report if f.name == "report" else f for f in schema])
    for item in row["report"]["threads"]:
        item["exceptions"] = exceptions if item["crashed"] else None
    return pa.Table.from_pylist([row], schema=new_schema)


@needs_chromium
def test_hostile_text_renders_as_text(dataset, tmp_path):
    """Whatever a core holds (file names, thread names, paths, exceptions) reaches the page
    as text; a dataset whose threads carry the exceptions they were handling shows them, and
    reads together with files written before that field existed."""
    path = dataset.urls["web/core.abort"]
    report = triage.analyze_core(path)
    assert report.signature is not None and report.error is None
    thread = next(t for t in report.threads if t.crashed)
    thread.name = "T" + HOSTILE
    python = [f for f in thread.frames if f.kind == "python"]  # (native frames above them)
    python[-1].file = "/srv/" + HOSTILE + ".py"
    python[-2].qualname = "outer.<locals>.inner"
    report.signature = replace(
        report.signature, text="SIGABRT | module:<module> | " + HOSTILE, id="0123456789ab"
    )
    report.python_version = "3.12" + HOSTILE
    url = path + HOSTILE
    record = SweepRecord(
        core_id="hostile",
        sweep_id="20261126T000000Z-000000",
        sweep_date="2026-11-26",
        fleet="web",
        status="ok",
        collection=Collection(source_url=url, fleet="web", host=HOSTILE),
        report=report,
    )
    line = python[-1].line
    frame_line = f'    (Python) File "/srv/{HOSTILE}.py", line {line}, in third_func'
    row = record_to_dict(record)
    crashed = next(t for t in row["report"]["threads"] if t["crashed"])
    exception = {
        "type": "ValueError<script>",
        "message": "bad 'value' \"x\" \u00e9</pre>" + HOSTILE,
        "state": "handling",
        "frames": [[f for f in crashed["frames"] if f["kind"] == "python"][-1]],
    }
    root = tmp_path / "dataset"
    directory = partition_dir(str(root), "web", "2026-11-26")
    os.makedirs(directory)
    write_atomically(
        ParquetSink(str(root)).fs,
        _with_exceptions(row, [exception]),
        f"{directory}/part-20261126T000000Z-000000-0.parquet",
    )
    with ParquetSink(str(root)) as sink:  # a file of a triage without exceptions, beside it
        sink.add(_old_record(dataset.urls["web/core.segv"]))
    html = build_dashboard(str(root))
    assert "<img" not in html and "</script><script>" not in html
    page = tmp_path / "hostile.html"
    page.write_text(html, encoding="utf-8")

    dom = _open(tmp_path, page)
    assert dom.one("head").one("title").text == "triage dashboard"
    assert dom.all("img") == [] and len(dom.all("script")) == 2
    row_node = dom.one("tr", data_sig="0123456789ab")
    assert row_node.one(cls="sig-text").text == "SIGABRT | module:<module> | " + HOSTILE
    assert _counts(dom, "by-python") == {
        "3.12" + HOSTILE: 1,
        dataset.version(dataset.preferred): 1,
    }

    fragment = "#" + urllib.parse.urlencode({"sig": "0123456789ab", "python": "3.12" + HOSTILE})
    dom = _open(tmp_path, page, fragment)
    assert dom.one("head").one("title").text == "triage dashboard"
    assert dom.all("img") == [] and len(dom.all("script")) == 2
    signature = dom.one("section", id="signature")
    assert signature.one("h2", cls="sig-text").text == "SIGABRT | module:<module> | " + HOSTILE
    assert _counts(signature, "sig-hosts") == {HOSTILE: 1}
    assert _counts(signature, "sig-pythons") == {"3.12" + HOSTILE: 1}
    assert _cells(signature, "sig-cores") == [
        [url, HOSTILE, "unknown", "2026-11-26", "3.12" + HOSTILE, "web",
         "triage core " + shlex.quote(url)]
    ]  # fmt: skip
    options = dom.one("select", id="filter-python").all("option")
    assert [o.text for o in options if o.attrs["value"] == "3.12" + HOSTILE] == ["3.12" + HOSTILE]
    (shown,) = signature.all(cls="thread")
    assert shown.one("h3").text.startswith(f"Thread {thread.tid} (T{HOSTILE}), crashed")
    lines = shown.one("pre", cls="frames").text.splitlines()
    assert lines[-1] == frame_line
    assert lines[-2].endswith(", in outer.<locals>.inner")
    (handled,) = shown.all(cls="exception")
    assert handled.one(cls="exc-state").text == "handling"
    assert handled.one(cls="exc-text").text == (
        "ValueError<script>: bad 'value' \"x\" \u00e9</pre>" + HOSTILE
    )
    assert handled.one("pre", cls="exc-frames").text.splitlines() == [frame_line]

    # The core of the file without the field: its page, no exception.
    segv = dataset.signature_of("web/core.segv")
    other = _open(tmp_path, page, "#sig=" + segv).one("section", id="signature")
    assert len(other.all(cls="thread")) == 1 and other.all(cls="exception") == []


# -- the commands of fleets with libraries and executables ---------------------------------


@pytest.fixture(scope="module")
def fleet_dataset(sid_cores, preferred_interp, tmp_path_factory) -> dict[str, Any]:
    """Three fleets, swept: `sysroot` (an abort of the sid sysroot's python3.13, read with
    lib_search_root), `pinned` (a core of the preferred interpreter, read with its executable
    and its lib directory as lib_search_path), and the default fleet (no options)."""
    import sysroot

    root = os.path.abspath(sysroot.ensure())
    sid = sid_cores.crash("python3.13", "abort")  # its own signature, its own example
    tmp = tmp_path_factory.mktemp("fleets")
    source = tmp / "cores"
    layout = {}
    for name, made in (
        ("sysroot/core.sid", sid.path),
        ("pinned/core.segv", corefactory.make_crash(preferred_interp, tmp / "w1", "segv").path),
        ("plain/core.segv", corefactory.make_crash(preferred_interp, tmp / "w2", "segv").path),
    ):
        dest = source / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, dest)
        layout[name] = str(dest)
    executable = os.path.realpath(preferred_interp.path)
    libdir = os.path.join(preferred_interp.prefix, "lib")
    config = tmp / "fleets.toml"
    config.write_text(
        f"""
[[fleets]]
name = "sysroot"
match = ["*/sysroot/*"]
lib_search_root = [{json.dumps(root)}]

[[fleets]]
name = "pinned"
match = ["*/pinned/*"]
executable = {json.dumps(executable)}
lib_search_path = [{json.dumps(libdir)}]
"""
    )
    dataset = tmp / "dataset"
    _sweep(source, dataset, config)
    return {
        "root": root,
        "executable": executable,
        "libdir": libdir,
        "urls": layout,
        "data": dashboard_data(str(dataset)),
    }


def test_reproduce_commands_of_fleets(fleet_dataset):
    """The command of each core passes what its fleet gave the analysis: the sysroot as
    --lib-search-root (the sid interpreter is found only there), the fleet's executable and
    lib directory; and run, it gives the sweep's signature and stack."""
    data, urls = fleet_dataset["data"], fleet_dataset["urls"]
    cores = data["files"]
    commands = dict(zip(cores["core"], cores["command"], strict=True))
    signatures = dict(zip(cores["core"], cores["signature"], strict=True))
    assert commands == {
        urls["sysroot/core.sid"]: shlex.join(
            ["triage", "core", urls["sysroot/core.sid"], "--lib-search-root", fleet_dataset["root"]]
        ),
        urls["pinned/core.segv"]: shlex.join(
            ["triage", "core", urls["pinned/core.segv"], fleet_dataset["executable"],
             "--lib-search-path", fleet_dataset["libdir"]]
        ),
        urls["plain/core.segv"]: shlex.join(["triage", "core", urls["plain/core.segv"]]),
    }  # fmt: skip
    examples = {s["example"]["core"]: s["example"] for s in data["signatures"]}
    for url, command in commands.items():
        result = _run_command(command, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["signature"]["id"] == signatures[url]
    sid = examples[urls["sysroot/core.sid"]]
    (thread,) = sid["threads"]
    text = _run_command(commands[urls["sysroot/core.sid"]], "--no-color").stdout
    assert _tracebacks(text)[thread["tid"]][1] == thread["lines"]
    # Without the root the sid core is not analysed: the option is needed, not decoration.
    bare = _run_command(f"triage core {shlex.quote(urls['sysroot/core.sid'])}", "--format", "json")
    assert bare.returncode == 1


# -- the command ---------------------------------------------------------------------------


def test_command_writes_the_page(dataset, tmp_path):
    out = tmp_path / "page.html"
    result = _triage(
        "dashboard", str(dataset.root), "-o", str(out), "--sweeps", "1",
        "--config", str(dataset.config),
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == f"triage: dashboard written to {out}\n"
    html = out.read_text(encoding="utf-8")
    data = json.loads(html.split('id="triage-data">', 1)[1].split("</script>", 1)[0])
    assert data["trend_sweeps"] == 1
    assert [g["id"] for g in data["signatures"]] == [g.signature_id for g in dataset.groups.groups]
    assert list(tmp_path.iterdir()) == [out]


def test_command_errors_are_one_line(tmp_path):
    missing = tmp_path / "no-such-dataset"
    out = tmp_path / "page.html"
    result = _triage("dashboard", str(missing), "-o", str(out))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"triage: error: dataset {missing} does not exist\n"
    assert not out.exists()

    result = _triage("dashboard", str(missing), "-o", str(out), "--config", str(tmp_path / "c"))
    assert result.returncode == 1
    assert result.stderr == f"triage: error: configuration file {tmp_path / 'c'} does not exist\n"

    result = _triage("dashboard", str(missing), "-o", str(out), "--sweeps", "0")
    assert result.returncode == 2  # a usage error
    assert result.stderr == "triage: error: --sweeps must be at least 1, not 0\n"


def test_command_cannot_write(dataset, tmp_path):
    out = tmp_path / "no-such-dir" / "page.html"
    result = _triage("dashboard", str(dataset.root), "-o", str(out))
    assert result.returncode == 1
    assert result.stderr == f"triage: error: cannot write {out}: No such file or directory\n"
