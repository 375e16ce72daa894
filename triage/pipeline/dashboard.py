"""`triage dashboard`: the sweep dataset as one self-contained static HTML page.

The page needs no network: CSS and JavaScript are inline, the data is embedded as JSON in
`<script type="application/json" id="triage-data">`, and a Content-Security-Policy allows
nothing but the page's own script (by hash) and inline styles. The script builds the page
from the JSON with DOM calls and `textContent` only, so signature texts such as
`module:<module>` or `outer.<locals>.inner` always render as text, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from triage.pipeline.groups import compute_groups
from triage.pipeline.query import connect

#: Label of a NULL in the splits (no Python version or signal: the analysis failed early).
UNKNOWN = "unknown"


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
    rows = f"SELECT * FROM ({latest})"

    statuses = dict(
        con.execute(
            f"SELECT status, count(*) FROM ({rows}) GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    cores = sum(statuses.values())
    unsigned = con.execute(
        f"SELECT count(*) FROM ({rows}) WHERE report.signature.id IS NULL"
    ).fetchone()[0]

    def split(expr: str) -> list[dict[str, Any]]:
        found = con.execute(
            f"SELECT {expr} AS k, count(*) AS n, count(*) FILTER (status <> 'ok') "
            f"FROM ({rows}) GROUP BY k ORDER BY n DESC, k NULLS LAST"
        ).fetchall()
        return [
            {"name": UNKNOWN if k is None else str(k), "cores": n, "failed": failed}
            for k, n, failed in found
        ]

    per_sweep: dict[str, tuple[str, int]] = {}
    if result.sweeps:
        marks = ", ".join("?" for _ in result.sweeps)
        for sweep_id, date, n in con.execute(
            f"SELECT sweep_id, min(sweep_date), count(*) FROM ({rows}) "
            f"WHERE sweep_id IN ({marks}) GROUP BY 1",
            result.sweeps,
        ).fetchall():
            per_sweep[sweep_id] = (str(date), n)

    shown = result.groups[:top]
    wanted = {g.signature_id: g.example_core for g in shown}
    wanted.update({g.signature_id: g.example_core for g in result.groups if g.new})
    stacks = _stacks(con, rows, wanted)

    groups = []
    for rank, g in enumerate(result.groups, 1):
        item = asdict(g)
        item["rank"] = rank
        item["shown"] = rank <= top
        item["stack"] = stacks.get(g.signature_id)
        groups.append(item)
    return {
        "dataset": url,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "latest_sweep": result.latest_sweep,
        "sweeps": [
            {"id": s, "date": per_sweep.get(s, ("", 0))[0], "cores": per_sweep.get(s, ("", 0))[1]}
            for s in result.sweeps
        ],
        "totals": {
            "cores": cores,
            "signatures": len(result.groups),
            "new": sum(g.new for g in result.groups),
            "ok": statuses.get("ok", 0),
            "failed": cores - statuses.get("ok", 0),
            "unsigned": unsigned,
        },
        "statuses": [{"name": k, "cores": v} for k, v in statuses.items()],
        "fleets": split("fleet"),
        "python_versions": split("report.python_version"),
        "signals": split("report.signal.name"),
        "top": top,
        "groups": groups,
    }


def _stacks(con: Any, rows: str, wanted: dict[str, str]) -> dict[str, dict[str, Any]]:
    """signature id -> the representative stack: the example core (the one `triage groups`
    names, else the latest) and its signature thread (else the crashed one, else the first
    with frames)."""
    if not wanted:
        return {}
    marks = ", ".join("(?, ?)" for _ in wanted)
    params = [v for pair in wanted.items() for v in pair]
    found = con.execute(
        f"""
        WITH wanted(sig, example) AS (VALUES {marks})
        SELECT sig, core_id, url, sig_thread, threads FROM (
            SELECT r.report.signature.id AS sig, r.core_id,
                   r.collection.source_url AS url,
                   r.report.signature.thread AS sig_thread,
                   r.report.threads AS threads,
                   row_number() OVER (
                       PARTITION BY r.report.signature.id
                       ORDER BY (r.collection.source_url = w.example) DESC,
                                r.sweep_id DESC, r.core_id
                   ) AS rn
            FROM ({rows}) AS r JOIN wanted AS w ON r.report.signature.id = w.sig
        ) WHERE rn = 1
        """,
        params,
    ).fetchall()
    stacks = {}
    for sig, core_id, url, sig_thread, threads in found:
        thread = _pick_thread(threads or [], sig_thread)
        if thread is None:
            continue
        stacks[sig] = {
            "core_id": core_id,
            "core": url,
            "tid": thread.get("tid"),
            "thread_name": thread.get("name"),
            "crashed": bool(thread.get("crashed")),
            "lines": [frame_line(f) for f in thread.get("frames") or []],
        }
    return stacks


def _pick_thread(threads: list[dict[str, Any]], sig_thread: int | None) -> dict[str, Any] | None:
    with_frames = [t for t in threads if t.get("frames")]
    for choice in (
        [t for t in with_frames if sig_thread is not None and t.get("tid") == sig_thread],
        [t for t in with_frames if t.get("crashed")],
        with_frames,
    ):
        if choice:
            return choice[0]
    return None


def frame_line(frame: dict[str, Any]) -> str:
    """One frame as a traceback line: `File "x.py", line 3, in f` (`(C) ...` when native)."""
    where = f'File "{frame.get("file") or "???"}"'
    if frame.get("line") is not None:
        where += f", line {frame['line']}"
    text = f"{where}, in {frame.get('function') or '???'}"
    return "(C) " + text if frame.get("kind") == "native" else text


# -- page ----------------------------------------------------------------------------------


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` (so no `</script>`, no
    `<!--`), only ASCII."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict[str, Any]) -> str:
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{script_hash}'; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        TEMPLATE.replace("@CSP@", csp)
        .replace("@STYLE@", STYLE)
        .replace("@DATA@", embed_json(data))
        .replace("@SCRIPT@", SCRIPT)
    )


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

STYLE = """
:root {
  --fg: #1d2330; --muted: #5d6678; --bg: #f5f6f8; --card: #fff; --line: #dfe3ea;
  --accent: #2f6fdb; --new: #c2410c; --new-bg: #fff4ec; --bar: #8fb3ef; --bad: #b91c1c;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 24px 40px; }
header h1 { font-size: 22px; margin: 0 0 4px; }
header .meta { color: var(--muted); margin: 0; }
code, .mono { font-family: var(--mono); font-size: 12.5px; }
section { margin-top: 22px; }
h2 { font-size: 16px; margin: 0 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  margin-top: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; }
.card .value { font-size: 26px; font-weight: 650; }
.card .label { color: var(--muted); }
.card.alert .value { color: var(--new); }
.card.bad .value { color: var(--bad); }
.card ul { margin: 4px 0 0; padding-left: 18px; color: var(--muted); }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
  letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.seen, td.trend { white-space: nowrap; }
tr.is-new > td:first-child { box-shadow: inset 3px 0 0 var(--new); }
tr.is-new { background: var(--new-bg); }
.badge { display: inline-block; font-size: 11px; font-weight: 700; padding: 0 6px;
  border-radius: 9px; background: var(--new); color: #fff; margin-right: 6px;
  vertical-align: 1px; }
.sig-text { font-family: var(--mono); font-size: 12.5px; word-break: break-word; }
.sig-id { color: var(--muted); font-family: var(--mono); font-size: 11.5px; }
details.stack { margin-top: 4px; }
details.stack summary { cursor: pointer; color: var(--accent); font-size: 12.5px; }
details.stack pre { margin: 6px 0 2px; padding: 8px 10px; background: #0f172a;
  color: #e2e8f0; border-radius: 6px; overflow-x: auto; font: 12px/1.5 var(--mono); }
.list { list-style: none; margin: 0; padding: 0; }
.list li { padding: 6px 0; border-bottom: 1px solid var(--line); }
.list li:last-child { border-bottom: 0; }
.count { font-weight: 650; margin-right: 8px; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); margin: 0; }
.splits { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr));
  gap: 12px; }
.bar { height: 10px; background: var(--bar); border-radius: 2px; min-width: 2px; }
td.barcell { width: 45%; }
.muted { color: var(--muted); }
svg.spark rect.zero { fill: var(--line); }
svg.spark rect.some { fill: var(--accent); }
svg.spark rect.latest { fill: var(--new); }
.toolbar { display: flex; gap: 12px; align-items: center; margin-bottom: 8px; }
.toolbar input { font: inherit; padding: 4px 8px; border: 1px solid var(--line);
  border-radius: 6px; min-width: 280px; }
.noscript { background: #fff4ec; padding: 12px; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e5e7eb; --muted: #9aa3b2; --bg: #111318; --card: #1a1d24; --line: #2c313b;
    --new-bg: #2a1c12; --bar: #4c6fae; --accent: #7aa7ff; }
}
"""

SCRIPT = r"""
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("triage-data").textContent);
  // The SVG namespace, from the HTML parser (the page holds no URL at all).
  const SVG = document.createRange().createContextualFragment("<svg></svg>").firstChild
    .namespaceURI;
  const app = document.getElementById("app");

  // Every string reaches the page through text nodes: never innerHTML.
  const h = (tag, props, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  const plural = (n, one, many) => n + " " + (n === 1 ? one : many || one + "s");

  const sparkline = (trend, sweeps) => {
    const w = 9, gap = 3, height = 24, max = Math.max(1, ...trend);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", String(Math.max(1, trend.length * (w + gap) - gap)));
    svg.setAttribute("height", String(height));
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "cores per sweep: " + trend.join(", "));
    svg.dataset.trend = trend.join(" ");
    trend.forEach((n, i) => {
      const bar = document.createElementNS(SVG, "rect");
      const barHeight = n ? Math.max(2, Math.round((n / max) * height)) : 2;
      bar.setAttribute("x", String(i * (w + gap)));
      bar.setAttribute("y", String(height - barHeight));
      bar.setAttribute("width", String(w));
      bar.setAttribute("height", String(barHeight));
      const last = i === trend.length - 1;
      bar.setAttribute("class", n ? (last ? "some latest" : "some") : "zero");
      const title = document.createElementNS(SVG, "title");
      const sweep = sweeps[i] || {};
      title.textContent = (sweep.id || "") + (sweep.date ? " (" + sweep.date + ")" : "") +
        ": " + plural(n, "core");
      bar.append(title);
      svg.append(bar);
    });
    return svg;
  };

  const stackDetails = (stack) => {
    if (!stack) return h("div", { class: "muted" }, "no stack recorded");
    const thread = "thread " + (stack.tid === null ? "?" : stack.tid) +
      (stack.thread_name ? " (" + stack.thread_name + ")" : "") +
      (stack.crashed ? ", crashed" : "");
    return h("details", { class: "stack", data: { core: stack.core_id } },
      h("summary", null, "Representative stack: " + thread + " of " + stack.core),
      h("pre", { class: "frames" }, "Traceback (most recent call last):\n" +
        stack.lines.map((line) => "  " + line).join("\n")));
  };

  const t = data.totals;
  const latest = data.latest_sweep || "none";

  // Header and totals.
  app.append(h("header", null,
    h("h1", null, "Crash triage"),
    h("p", { class: "meta" }, "Dataset ", h("code", { id: "dataset" }, data.dataset),
      " \u00b7 latest sweep ", h("code", { id: "latest-sweep" }, latest),
      " \u00b7 generated " + data.generated)));

  const card = (key, value, label, extra, cls) =>
    h("div", { class: "card" + (cls ? " " + cls : ""), data: { total: key } },
      h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label), extra);
  const statusList = h("ul", { id: "failed-statuses" },
    data.statuses.filter((s) => s.name !== "ok").map((s) =>
      h("li", { data: { status: s.name, cores: s.cores } }, s.name + ": " + s.cores)));
  const sweepTotals = data.sweeps.map((s) => s.cores);
  app.append(h("div", { class: "cards" },
    card("cores", t.cores, "cores in the dataset",
      data.sweeps.length ? h("div", { title: "cores per sweep" },
        sparkline(sweepTotals, data.sweeps)) : null),
    card("signatures", t.signatures, "signatures"),
    card("new", t.new, "new in the latest sweep", null, t.new ? "alert" : ""),
    card("failed", t.failed, "failed analyses", statusList, t.failed ? "bad" : ""),
    card("unsigned", t.unsigned, "cores without a signature")));

  // New since the last sweep.
  const fresh = data.groups.filter((g) => g.new);
  app.append(h("section", { id: "new" },
    h("h2", null, "New since the last sweep"),
    h("div", { class: "panel" }, fresh.length
      ? h("ul", { class: "list" }, fresh.map((g) =>
        h("li", { class: "new-item", data: { sig: g.signature_id } },
          h("span", { class: "badge" }, "NEW"),
          h("span", { class: "count" }, plural(g.cores, "core")),
          h("span", { class: "sig-text" }, g.signature), " ",
          h("span", { class: "sig-id" }, g.signature_id),
          stackDetails(g.stack))))
      : h("p", { class: "empty" }, "No new signatures in sweep " + latest + "."))));

  // Top signatures.
  const shown = data.groups.filter((g) => g.shown);
  const hidden = data.groups.length - shown.length;
  const filter = h("input", { type: "search", id: "filter",
    placeholder: "filter signatures" });
  const rows = shown.map((g) => h("tr", { class: "sig-row" + (g.new ? " is-new" : ""),
    data: { sig: g.signature_id, cores: g.cores, search: [g.signature, g.signature_id,
      ...g.fleets, ...g.python_versions].join(" ").toLowerCase() } },
  h("td", { class: "num" }, String(g.rank)),
  h("td", null,
    g.new ? h("span", { class: "badge" }, "NEW") : null,
    h("span", { class: "sig-text" }, g.signature),
    h("div", { class: "sig-id" }, g.signature_id),
    stackDetails(g.stack)),
  h("td", { class: "num sig-cores" }, String(g.cores)),
  h("td", { class: "num hosts" }, g.hosts ? String(g.hosts) : "\u2013"),
  h("td", { class: "trend" }, sparkline(g.trend, data.sweeps)),
  h("td", { class: "fleets" }, g.fleets.join(", ")),
  h("td", { class: "pythons" }, g.python_versions.join(", ")),
  h("td", { class: "seen" }, g.first_seen === g.last_seen ? g.first_seen
    : g.first_seen + " \u2192 " + g.last_seen)));
  const head = h("tr", null, h("th", { class: "num" }, "#"), h("th", null, "Signature"),
    h("th", { class: "num" }, "Cores"), h("th", { class: "num" }, "Hosts"),
    h("th", { title: "cores per sweep, oldest first" },
      "Last " + plural(data.sweeps.length, "sweep")),
    h("th", null, "Fleets"), h("th", null, "Python"), h("th", null, "Seen"));
  app.append(h("section", { id: "signatures" },
    h("h2", null, "Top signatures"),
    h("div", { class: "panel" },
      shown.length ? h("div", { class: "toolbar" }, filter,
        h("span", { class: "muted", id: "filter-count" })) : null,
      shown.length
        ? h("table", { id: "signature-table" }, h("thead", null, head), h("tbody", null, rows))
        : h("p", { class: "empty" }, "No signatures in the dataset."),
      hidden > 0 ? h("p", { class: "muted" }, "and " + plural(hidden, "more signature") +
        " (" + plural(data.groups.filter((g) => !g.shown).reduce((a, g) => a + g.cores, 0),
        "core") + ") not shown: see triage groups.") : null)));
  filter.addEventListener("input", () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let visible = 0;
    for (const row of rows) {
      const match = words.every((w) => row.dataset.search.includes(w));
      row.hidden = !match;
      visible += match;
    }
    document.getElementById("filter-count").textContent =
      words.length ? visible + " of " + rows.length : "";
  });

  // Splits.
  const split = (id, title, items, failedColumn) => {
    const max = Math.max(1, ...items.map((i) => i.cores));
    const table = h("table", { id: id },
      h("thead", null, h("tr", null, h("th", null, title), h("th", { class: "num" }, "Cores"),
        failedColumn ? h("th", { class: "num" }, "Failed") : null, h("th", null, ""))),
      h("tbody", null, items.map((i) => {
        const bar = h("div", { class: "bar" });
        bar.style.width = (100 * i.cores / max).toFixed(1) + "%";
        return h("tr", { data: { name: i.name, cores: i.cores } },
          h("td", { class: "name" + (i.name === "unknown" ? " muted" : "") }, i.name),
          h("td", { class: "num" }, String(i.cores)),
          failedColumn ? h("td", { class: "num" }, String(i.failed)) : null,
          h("td", { class: "barcell" }, bar));
      })));
    return h("div", { class: "panel" }, h("h2", null, title), table);
  };
  app.append(h("section", { id: "splits", class: "splits" },
    split("by-fleet", "Fleet", data.fleets, true),
    split("by-python", "Python version", data.python_versions, false),
    split("by-signal", "Signal", data.signals, false),
    split("by-status", "Analysis status", data.statuses, false)));

  document.body.dataset.rendered = "true";
})();
"""
