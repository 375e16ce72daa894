"""`triage dashboard`: the sweep dataset as one self-contained static HTML page.

The page needs no network: CSS and JavaScript (dashboard.css, dashboard.js beside this module)
are inline, the data is embedded as JSON in `<script type="application/json"
id="triage-data">`, and a Content-Security-Policy allows nothing but the page's own script (by
hash) and inline styles. The script builds the page from the JSON with DOM calls and text
nodes only, so signature texts such as `module:<module>` or `outer.<locals>.inner` always
render as text, never as HTML.

The data is every file of the dataset (its latest analysis, one entry per file, as columns)
and every signature with the stack of its example core: the page counts, filters (fleet,
Python version, sweep dates) and draws the page of each signature (`#sig=ID`) in the browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from triage.pipeline.groups import Group, compute_groups, version_key
from triage.pipeline.query import FIRST_SWEEP_DATE, FIRST_SWEEP_ID, connect
from triage.pipeline.reproduce import reproduce_command
from triage.pipeline.schema import column, from_stored
from triage.render import Painter, native_line, python_line, shown_frames
from triage.report import CoreReport, FrameReport, ThreadReport
from triage.signature import base_reason, signature_thread

#: What the page is told of each file, and the SQL of each (the sweep that first saw it).
FILE_COLUMNS = {
    "signature": column("report.signature.id"),
    "core": column("collection.source_url"),
    "host": column("collection.host"),
    "timestamp": column("collection.timestamp"),
    "mtime": column("collection.mtime"),
    "sweep": FIRST_SWEEP_ID,
    "sweep_date": FIRST_SWEEP_DATE,
    "fleet": column("fleet"),
    "status": column("status"),
    "python": column("report.python_version"),
    "signal": column("report.signal"),
    "executable": column("report.executable"),
    "executable_source": column("report.executable_source"),
    "library_search_path": column("report.library_search_path"),
    "libraries": column("report.libraries"),
}

#: The fields of each file the page gets (`files` in the data: one list per field).
FILE_FIELDS = (
    "signature",
    "core",
    "host",
    "made",
    "made_from",
    "sweep",
    "sweep_date",
    "fleet",
    "status",
    "python",
    "reason",
    "command",
)

#: The exceptions a thread was handling (`report.threads[].exceptions`: type, message, state,
#: frames), in datasets written by a triage that records them; older ones have no such field.
EXCEPTIONS = "exceptions"

_PLAIN = Painter(False)


def build_dashboard(
    url: str,
    storage_options: dict[str, Any] | None = None,
    sweeps: int = 14,
    top: int = 100,
) -> str:
    """The dashboard of the dataset at `url` as an HTML document.

    `sweeps`: the trend covers the last N sweeps; `top`: the signature table shows the N
    signatures with most cores (new signatures are listed in full whatever their rank)."""
    return render_html(dashboard_data(url, storage_options, sweeps=sweeps, top=top))


def write_dashboard(
    url: str,
    out_path: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    sweeps: int = 14,
    top: int = 100,
) -> Path:
    """Build the dashboard and write it to `out_path` (replaced atomically); return the path."""
    return write_html(out_path, build_dashboard(url, storage_options, sweeps=sweeps, top=top))


def write_html(out_path: str | os.PathLike[str], html: str) -> Path:
    """Write the page to `out_path`, replacing any file there atomically."""
    out = Path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=".dashboard-", suffix=".html", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


# -- data ----------------------------------------------------------------------------------


def dashboard_data(
    url: str,
    storage_options: dict[str, Any] | None = None,
    sweeps: int = 14,
    top: int = 100,
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values."""
    result = compute_groups(url, storage_options, sweeps=sweeps)
    con, latest = connect(url, storage_options)
    files = [_file_entry(row) for row in _select(con, latest, FILE_COLUMNS)]
    examples = _examples(con, latest, {g.signature_id: g.example_core for g in result.groups})
    return {
        "dataset": url,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "latest_sweep": result.latest_sweep,
        "sweeps": [
            {"id": sweep, "date": date}
            for sweep, date in sorted({(f["sweep"], f["sweep_date"]) for f in files})
        ],
        "trend_sweeps": sweeps,
        "top": top,
        "fleets": sorted({f["fleet"] for f in files}),
        "python_versions": sorted(
            {f["python"] for f in files if f["python"] is not None}, key=version_key
        ),
        "signatures": [_signature_entry(g, examples.get(g.signature_id)) for g in result.groups],
        "files": _as_columns(files, FILE_FIELDS),
    }


def _select(con: Any, rows: str, columns: dict[str, str]) -> list[dict[str, Any]]:
    """Every row of `rows` as {name: value} of `columns` (name -> SQL)."""
    chosen = ", ".join(f"{sql} AS {name}" for name, sql in columns.items())
    cursor = con.execute(f"SELECT {chosen} FROM ({rows})")
    return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


def _file_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One file as the page shows it."""
    made, made_from = (
        (row["timestamp"], "collector") if row["timestamp"] else (row["mtime"], "mtime")
    )
    command = None
    if row["signature"] is not None:
        command = reproduce_command(
            row["core"],
            row["executable"],
            row["executable_source"],
            row["library_search_path"] or [],
            row["libraries"] or [],
        )
    return {
        "signature": row["signature"],
        "core": row["core"],
        "host": row["host"],
        "made": made,
        "made_from": made_from if made else None,
        "sweep": row["sweep"],
        "sweep_date": str(row["sweep_date"]),
        "fleet": row["fleet"],
        "status": row["status"],
        "python": row["python"],
        "reason": _reason(row["core"], row["signal"]),
        "command": command,
    }


def _reason(url: str, signal: dict[str, Any] | None) -> str:
    """The signal as signatures name it (`on-demand` for a gcore): signature.base_reason of the
    stored signal."""
    return base_reason(from_stored({"core": {"path": url}, "signal": signal}, CoreReport))


def _as_columns(entries: list[dict[str, Any]], fields: Iterable[str]) -> dict[str, list[Any]]:
    """Entries as one list per field (the field names once, not once per entry)."""
    return {name: [entry[name] for entry in entries] for name in fields}


def _signature_entry(group: Group, example: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": group.signature_id,
        "text": group.signature,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "new": group.new,
        "example": example,
    }


def _examples(con: Any, rows: str, wanted: dict[str, str]) -> dict[str, dict[str, Any]]:
    """signature id -> the stacks of its example core (the one `triage groups` names): the
    thread the signature was taken from, or every Python thread when it was made of their
    tops."""
    if not wanted:
        return {}
    signature, url = column("report.signature.id"), column("collection.source_url")
    sweep, core_id = column("sweep_id"), column("core_id")
    marks = ", ".join("(?, ?)" for _ in wanted)
    found = con.execute(
        f"""
        WITH wanted(sig, example) AS (VALUES {marks})
        SELECT sig, example, report FROM (
            SELECT w.sig, w.example, r.{column("report")} AS report,
                   row_number() OVER (
                       PARTITION BY w.sig ORDER BY r.{sweep} DESC, r.{core_id}
                   ) AS rn
            FROM ({rows}) AS r JOIN wanted AS w ON r.{signature} = w.sig AND r.{url} = w.example
        ) WHERE rn = 1
        """,
        [value for pair in wanted.items() for value in pair],
    ).fetchall()
    return {sig: _example(core, stored) for sig, core, stored in found}


def _example(core: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The example core's signature thread(s), frames as `triage core` prints them."""
    report = from_stored(stored, CoreReport)
    thread = signature_thread(report)
    chosen = [thread] if thread is not None else [t for t in report.threads if t.python]
    return {
        "core": core,
        "tops": thread is None,
        "threads": [
            _thread_entry(t, stored["threads"][_index(report.threads, t)])
            for t in chosen
            if t.frames
        ],
    }


def _index(threads: list[ThreadReport], thread: ThreadReport) -> int:
    return next(i for i, candidate in enumerate(threads) if candidate is thread)


def _thread_entry(thread: ThreadReport, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "tid": thread.tid,
        "name": thread.name,
        "crashed": thread.crashed,
        "status": list(thread.status),
        "lines": frame_lines(shown_frames(thread)),
        "exceptions": [_exception_entry(e) for e in stored.get(EXCEPTIONS) or []],
    }


def _exception_entry(stored: dict[str, Any]) -> dict[str, Any]:
    frames = [from_stored(frame, FrameReport) for frame in stored.get("frames") or []]
    return {
        "type": str(stored.get("type") or ""),
        "message": str(stored.get("message") or ""),
        "state": str(stored.get("state") or ""),
        "lines": frame_lines(frames),
    }


def frame_lines(frames: Iterable[FrameReport]) -> list[str]:
    """Frames as `triage core` prints them, without colour (render.python_line/native_line)."""
    return [
        native_line(f, _PLAIN) if f.kind == "native" else python_line(f, _PLAIN) for f in frames
    ]


# -- page ----------------------------------------------------------------------------------


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` (so no `</script>`, no
    `<!--`), only ASCII."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    """dashboard.js or dashboard.css, beside this module."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    script, style = _asset("dashboard.js"), _asset("dashboard.css")
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{script_hash}'; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    parts = {"CSP": csp, "STYLE": style, "DATA": embed_json(data), "SCRIPT": script}
    # One pass: a placeholder written in the data (a core's path) stays text.
    return re.sub(r"@(CSP|STYLE|DATA|SCRIPT)@", lambda m: parts[m.group(1)], TEMPLATE)


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<link rel="icon" href="data:,">
<title>triage dashboard</title>
<style>@STYLE@</style>
</head>
<body>
<noscript><p class="noscript">This page is drawn by its inline script: allow JavaScript to
see the dashboard. The data is in the triage-data element of the page source.</p></noscript>
<main id="app"></main>
<script type="application/json" id="triage-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""
