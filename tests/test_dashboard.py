"""`triage dashboard`: a real dataset (real cores, two real `triage sweep` runs), the page
rendered and checked in headless Chromium: the DOM after the page's script ran, its console,
and a screenshot.

The corpus (module fixture `dataset`), swept with fleets `web` (*/web/*) and `batch`
(*/batch/*):

    sweep 1  web/core.segv     SIGSEGV, the preferred interpreter (3.12)
             web/core.gcore    on demand, the preferred interpreter
             batch/core.segv   SIGSEGV, another interpreter (3.11 when there is one)
             batch/core.trunc  the first 200 kB of batch/core.segv: status truncated_core
    sweep 2  web/core.abort    SIGABRT, the preferred interpreter: a NEW signature
             web/core.segv2    SIGSEGV, the preferred interpreter: web/core.segv's signature

Chromium runs as the probe does (headless, no sandbox, a fresh profile); with
`--enable-logging=stderr` it logs every console message (log, error, uncaught exception) as a
`CONSOLE` line, and the page writes none: any such line fails the test.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyarrow", reason="pyarrow is not installed")
pytest.importorskip("duckdb", reason="duckdb is not installed")
pytest.importorskip("distributed", reason="dask.distributed is not installed")

import corefactory
from conftest import triage_env
from corefactory import CoreUnavailable, Interpreter

import triage
from triage.pipeline.dashboard import build_dashboard, dashboard_data
from triage.pipeline.groups import GroupsResult, compute_groups
from triage.pipeline.query import connect
from triage.pipeline.sink import ParquetSink
from triage.report import Collection, SweepRecord

CHROMIUM = shutil.which("chromium")
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
CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)$", re.MULTILINE)
WINDOW = (1400, 1000)

#: As the probe runs it: headless, no sandbox (root in a container), nothing from the network,
#: every console message on stderr.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def _triage(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triage", *args],
        capture_output=True,
        text=True,
        env=triage_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# -- the dataset ---------------------------------------------------------------------------


@dataclass
class Dataset:
    root: Path
    config: Path
    sweeps: list[str]
    """The two sweep ids, as the sweeps printed them."""
    urls: dict[str, str]
    """Name in the layout (web/core.segv, ...) -> the core's path."""
    preferred: Interpreter
    other: Interpreter
    html: str
    """The page of the dataset, built in this process."""
    groups: GroupsResult
    """`triage groups` of the dataset over the same 14 sweeps."""

    def version(self, interp: Interpreter) -> str:
        return "{}.{}.{}".format(*interp.version)


def _sweep(source: Path, dataset: Path, config: Path) -> str:
    args = ["sweep", str(source), "-o", str(dataset), "--workers", "1", "--config", str(config)]
    result = _triage(*args, timeout=600)
    assert result.returncode == 0, result.stderr
    found = SWEEP_DONE.findall(result.stderr)
    assert len(found) == 1, result.stderr
    return found[0]


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
    place(
        "web/core.abort", b, lambda: corefactory.make_crash(preferred_interp, work / "4", "abort")
    )
    place("web/core.segv2", b, lambda: corefactory.make_crash(preferred_interp, work / "5", "segv"))

    config = tmp / "fleets.toml"
    config.write_text(FLEETS_TOML)
    root = tmp / "dataset"
    sweeps = [_sweep(a, root, config), _sweep(b, root, config)]
    assert sweeps[0] < sweeps[1]
    return Dataset(
        root=root,
        config=config,
        sweeps=sweeps,
        urls={name: str(path) for name, path in layout.items()},
        preferred=preferred_interp,
        other=other,
        html=build_dashboard(str(root)),
        groups=compute_groups(str(root), sweeps=14),
    )


def _rows(root: Path) -> dict[str, dict[str, Any]]:
    """url -> (status, fleet, python_version, signal, signature id) of every core."""
    con, latest = connect(str(root))
    found = con.execute(
        f"SELECT collection.source_url, status, fleet, report.python_version, "
        f"report.signal.name, report.signature.id, sweep_id FROM ({latest})"
    ).fetchall()
    keys = ("status", "fleet", "python", "signal", "signature", "sweep")
    return {url: dict(zip(keys, rest, strict=True)) for url, *rest in found}


# -- Chromium and the DOM ------------------------------------------------------------------


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def _dump_dom(tmp: Path, page: Path) -> tuple[Node, list[str]]:
    """The page's DOM after its scripts ran, and the console messages it produced."""
    result = _chromium(tmp, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-3000:]
    return parse_html(result.stdout), CONSOLE.findall(result.stderr)


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


def _split(dom: Node, table_id: str) -> dict[str, int]:
    rows = dom.one("table", id=table_id).one("tbody").all("tr")
    return {r.attrs["data-name"]: int(r.attrs["data-cores"]) for r in rows}


def _frame_lines(action: str) -> list[str]:
    return [
        f'  File "{corefactory.TARGET_PROGRAM}", line {line}, in {function}'
        for function, line, _source in corefactory.main_stack(action)
    ]


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
    _dom, console = _dump_dom(tmp_path, page)
    assert len(console) == 2, console
    assert console[0].startswith('"probe error"')
    assert console[1].startswith('"Uncaught TypeError:')


@needs_chromium
def test_page_in_chromium(dataset, tmp_path):
    page = tmp_path / "dash.html"
    page.write_text(dataset.html, encoding="utf-8")
    dom, console = _dump_dom(tmp_path, page)
    assert console == []
    body = dom.one("body")
    assert body.attrs.get("data-rendered") == "true"

    rows = _rows(dataset.root)
    urls = dataset.urls
    assert len(rows) == 6
    groups = dataset.groups.groups
    by_id = {g.signature_id: g for g in groups}

    # Header: dataset, latest sweep, totals.
    assert dom.one(id="dataset").text == str(dataset.root)
    assert dom.one(id="latest-sweep").text == dataset.sweeps[1]
    totals = {c.attrs["data-total"]: c.one(cls="value").text for c in dom.all(cls="card")}
    assert totals == {
        "cores": "6",
        "signatures": str(len(groups)),
        "new": "1",
        "failed": "1",
        "unsigned": str(sum(r["signature"] is None for r in rows.values())),
    }
    statuses = dom.one(id="failed-statuses").all("li")
    assert [s.text for s in statuses] == ["truncated_core: 1"]
    assert rows[urls["batch/core.trunc"]]["status"] == "truncated_core"

    # Top signatures: exactly `triage groups`' rows, in its order, NEW on exactly the new one.
    abort_sig = rows[urls["web/core.abort"]]["signature"]
    segv_sig = rows[urls["web/core.segv"]]["signature"]
    assert rows[urls["web/core.segv2"]]["signature"] == segv_sig
    assert [g.signature_id for g in groups if g.new] == [abort_sig]
    table = dom.one("table", id="signature-table").one("tbody")
    sig_rows = table.all("tr", cls="sig-row")
    assert [r.attrs["data-sig"] for r in sig_rows] == [g.signature_id for g in groups]
    assert {r["signature"] for r in rows.values()} - {None} == set(by_id)
    for row in sig_rows:
        group = by_id[row.attrs["data-sig"]]
        assert row.one(cls="sig-text").text == group.signature
        assert row.one(cls="sig-id").text == group.signature_id
        assert row.one("td", cls="sig-cores").text == str(group.cores)
        assert row.one("svg").attrs["data-trend"] == " ".join(map(str, group.trend))
        badges = [b.text for b in row.all(cls="badge")]
        assert badges == (["NEW"] if group.signature_id == abort_sig else [])
        assert ("is-new" in row.classes()) == (group.signature_id == abort_sig)
    assert by_id[abort_sig].trend == [0, 1]
    assert by_id[segv_sig].trend[1] == 1
    assert by_id[abort_sig].signature.endswith(" | target:<module>")

    # New since the last sweep: the abort alone.
    new_items = dom.one("section", id="new").all("li", cls="new-item")
    assert [i.attrs["data-sig"] for i in new_items] == [abort_sig]
    assert new_items[0].one(cls="sig-text").text == by_id[abort_sig].signature

    # Splits, from the layout.
    assert _split(dom, "by-fleet") == {"web": 4, "batch": 2}
    pythons = {dataset.version(dataset.preferred): 4, dataset.version(dataset.other): 1}
    assert _split(dom, "by-python") == {**pythons, "unknown": 1}
    assert _split(dom, "by-signal") == {"SIGSEGV": 4, "SIGABRT": 1, "SIGSTOP": 1}
    assert _split(dom, "by-status") == {"ok": 5, "truncated_core": 1}

    # Representative stacks: the example core's signature thread, as traceback lines.
    def stack(sig: str) -> Node:
        return table.one("tr", data_sig=sig).one("details", cls="stack")

    abort = stack(abort_sig)
    assert abort.one("summary").text == (
        f"Representative stack: thread {rows_tid(dataset, 'web/core.abort')} (MainThread), "
        f"crashed of {urls['web/core.abort']}"
    )
    assert abort.one("pre").text.splitlines() == [
        "Traceback (most recent call last):",
        *_frame_lines("abort"),
    ]
    segv = stack(segv_sig)
    assert segv.one("summary").text.endswith(f"crashed of {by_id[segv_sig].example_core}")
    assert by_id[segv_sig].example_core == urls["web/core.segv2"]
    lines = segv.one("pre").text.splitlines()
    assert lines[:5] == ["Traceback (most recent call last):", *_frame_lines("segv")]
    assert len(lines) == 6
    assert re.fullmatch(r'  File ".*/ctypes/__init__\.py", line \d+, in string_at', lines[5])
    gcore_sig = rows[urls["web/core.gcore"]]["signature"]
    assert stack(gcore_sig).one("pre").text.splitlines()[1:] == _frame_lines("sleep")
    trunc_sig = rows[urls["batch/core.trunc"]]["signature"]
    if trunc_sig is not None:
        trunc_row = table.one("tr", data_sig=trunc_sig)
        assert trunc_row.all("details") == []
        assert "no stack recorded" in trunc_row.text

    # Texts with <module> are text: escaped in the page, never elements in the DOM.
    assert "<module>" not in dataset.html
    assert "\\u003cmodule\\u003e" in dataset.html
    assert dom.all("module") == [] and dom.all("locals") == []


def rows_tid(dataset: Dataset, name: str) -> int:
    """The crashed thread's tid of a core, from the dataset."""
    con, latest = connect(str(dataset.root))
    (threads,) = con.execute(
        f"SELECT report.threads FROM ({latest}) WHERE collection.source_url = ?",
        [dataset.urls[name]],
    ).fetchone()
    (tid,) = [t["tid"] for t in threads if t["crashed"]]
    return tid


@needs_chromium
def test_screenshot(dataset, tmp_path):
    page = tmp_path / "dash.html"
    page.write_text(dataset.html, encoding="utf-8")
    shot = tmp_path / "dash.png"
    result = _chromium(
        tmp_path, f"--screenshot={shot}", "--window-size={},{}".format(*WINDOW), page.as_uri()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert CONSOLE.findall(result.stderr) == []
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
    assert data["latest_sweep"] == dataset.sweeps[1]
    assert [s["id"] for s in data["sweeps"]] == dataset.sweeps
    assert [s["cores"] for s in data["sweeps"]] == [4, 2]
    assert [(g["signature_id"], g["cores"], g["trend"], g["new"]) for g in data["groups"]] == [
        (g.signature_id, g.cores, g.trend, g.new) for g in dataset.groups.groups
    ]


def test_fewer_sweeps_in_the_trend(dataset):
    data = dashboard_data(str(dataset.root), sweeps=1)
    assert [s["id"] for s in data["sweeps"]] == dataset.sweeps[1:]
    assert [g["trend"] for g in data["groups"]] == [[g.trend[-1]] for g in dataset.groups.groups]


# -- hostile text --------------------------------------------------------------------------

HOSTILE = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>&amp;"


@needs_chromium
def test_hostile_text_renders_as_text(dataset, tmp_path):
    """Whatever a core holds (file names, thread names, paths) reaches the page as text."""
    path = dataset.urls["web/core.abort"]
    report = triage.analyze_core(path)
    assert report.signature is not None and report.error is None
    thread = next(t for t in report.threads if t.crashed)
    thread.name = "T" + HOSTILE
    thread.frames[-1].file = "/srv/" + HOSTILE + ".py"
    report.signature = replace(report.signature, text="SIGABRT | " + HOSTILE, id="0123456789ab")
    report.python_version = "3.12" + HOSTILE
    record = SweepRecord(
        core_id="hostile",
        sweep_id="20261126T000000Z-000000",
        sweep_date="2026-11-26",
        fleet="web",
        status="ok",
        collection=Collection(source_url=path + HOSTILE, fleet="web", host=HOSTILE),
        report=report,
    )
    root = tmp_path / "dataset"
    with ParquetSink(str(root)) as sink:
        sink.add(record)
    html = build_dashboard(str(root))
    assert "<img" not in html and "</script><script>" not in html
    page = tmp_path / "hostile.html"
    page.write_text(html, encoding="utf-8")
    dom, console = _dump_dom(tmp_path, page)
    assert console == []
    assert dom.one("head").one("title").text == "triage dashboard"
    assert dom.all("img") == []
    assert len(dom.all("script")) == 2
    row = dom.one("tr", cls="sig-row")
    assert row.one(cls="sig-text").text == "SIGABRT | " + HOSTILE
    assert row.one("summary").text == (
        f"Representative stack: thread {thread.tid} (T{HOSTILE}), crashed of {path}{HOSTILE}"
    )
    assert row.one("pre").text.splitlines()[-1] == (
        f'  File "/srv/{HOSTILE}.py", line {thread.frames[-1].line}, in third_func'
    )
    assert _split(dom, "by-python") == {"3.12" + HOSTILE: 1}


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
    assert [s["id"] for s in data["sweeps"]] == dataset.sweeps[1:]
    assert [g["signature_id"] for g in data["groups"]] == [
        g.signature_id for g in dataset.groups.groups
    ]
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
    assert result.returncode == 1
    assert result.stderr == "triage: error: --sweeps must be at least 1, not 0\n"


def test_command_cannot_write(dataset, tmp_path):
    out = tmp_path / "no-such-dir" / "page.html"
    result = _triage("dashboard", str(dataset.root), "-o", str(out))
    assert result.returncode == 1
    assert result.stderr == f"triage: error: cannot write {out}: No such file or directory\n"
