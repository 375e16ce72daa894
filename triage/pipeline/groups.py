"""`triage groups`: crashes grouped by signature across sweeps, from the Parquet dataset."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from triage.pipeline.query import FIRST_SWEEP_DATE, FIRST_SWEEP_ID, connect
from triage.pipeline.schema import column
from triage.pipeline.sink import FINAL_STATUSES


@dataclass
class Filters:
    fleet: str | None = None
    since: str | None = None
    until: str | None = None
    signal: str | None = None

    def sql(self, base: str = "signature_id IS NOT NULL") -> tuple[str, list[Any]]:
        clauses, params = [base], []
        for name, op, value in (
            ("fleet", "=", self.fleet),
            ("sweep_date", ">=", self.since),
            ("sweep_date", "<=", self.until),
            ("signal", "=", self.signal),
        ):
            if value is not None:
                clauses.append(f"{name} {op} ?")
                params.append(value)
        return " AND ".join(clauses), params


@dataclass
class Group:
    """One crash signature and where and when it was seen."""

    signature_id: str
    signature: str
    cores: int
    hosts: int
    fleets: list[str]
    python_versions: list[str]
    signals: list[str]
    first_seen: str
    last_seen: str
    new: bool
    """First seen in the latest sweep of the dataset."""
    trend: list[int] = field(default_factory=list)
    """Cores per sweep over the last N sweeps, oldest first."""
    example_core: str = ""
    top_frames: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """The cores whose latest analysis failed with one status: in no crash group."""

    status: str
    cores: int
    fleets: list[str]
    example_core: str
    example_error: str


@dataclass
class GroupsResult:
    sweeps: list[str]
    """The last N sweep ids, oldest first (the trend's columns)."""
    latest_sweep: str | None
    groups: list[Group]
    failed: list[Failure] = field(default_factory=list)
    """Failed analyses by status (neither ok nor not_core), most cores first."""


#: One row per core (its latest analysis, in the sweep that first saw it), named for grouping.
ROWS = f"""
    SELECT {column("core_id")} AS core_id,
           {FIRST_SWEEP_ID} AS sweep_id, {FIRST_SWEEP_DATE} AS sweep_date,
           {column("fleet")} AS fleet, {column("status")} AS status,
           {column("collection.host")} AS host,
           {column("collection.source_url")} AS url,
           {column("report.python_version")} AS python_version,
           {column("report.signal.name")} AS signal,
           {column("report.signature.id")} AS signature_id,
           {column("report.signature.text")} AS signature,
           {column("report.signature.frames")} AS frames,
           {column("error_message")} AS error_message
    FROM ({{latest}})
"""

#: The order that picks a group's example core: the latest sweep's, and among its cores the
#: last by URL (a tie on the sweep alone let the example change from one run to the next).
LATEST = "sweep_id || ' ' || url"

#: Statuses that are no failed analysis (sink.FINAL_STATUSES, as SQL).
FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES)) + ")"


def dataset_fleets(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The fleets the dataset at `url` holds, sorted."""
    con, latest = connect(url, storage_options)
    rows = ROWS.format(latest=latest)
    return [r[0] for r in con.execute(f"SELECT DISTINCT fleet FROM ({rows}) ORDER BY 1").fetchall()]


def compute_groups(
    url: str,
    storage_options: dict[str, Any] | None = None,
    filters: Filters | None = None,
    sweeps: int = 7,
) -> GroupsResult:
    """Every signature in the dataset at `url` (after filters), most cores first."""
    con, latest = connect(url, storage_options)
    rows = ROWS.format(latest=latest)
    where, params = (filters or Filters()).sql()
    recent = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT sweep_id FROM ({rows}) ORDER BY sweep_id DESC LIMIT ?", [sweeps]
        ).fetchall()
    ][::-1]
    latest_sweep = recent[-1] if recent else None
    grouped = con.execute(
        f"""
        SELECT signature_id,
               any_value(signature) AS signature,
               count(*) AS cores,
               count(DISTINCT host) AS hosts,
               list_sort(list(DISTINCT fleet)) AS fleets,
               list(DISTINCT python_version) FILTER (python_version IS NOT NULL),
               list_sort(list(DISTINCT signal) FILTER (signal IS NOT NULL)),
               arg_max(url, {LATEST}), arg_max(frames, {LATEST})
        FROM ({rows}) WHERE {where}
        GROUP BY signature_id
        ORDER BY cores DESC, signature_id
        """,
        params,
    ).fetchall()
    # When a signature was first and last seen, and whether it is new, are facts of the whole
    # dataset: filters narrow what is counted, not the signature's history.
    history = {
        sig: (str(first), str(last), first_sweep)
        for sig, first, last, first_sweep in con.execute(
            f"SELECT signature_id, min(sweep_date), max(sweep_date), min(sweep_id) "
            f"FROM ({rows}) WHERE signature_id IS NOT NULL GROUP BY signature_id"
        ).fetchall()
    }
    per_sweep: dict[tuple[str, str], int] = {}
    if recent:
        marks = ", ".join("?" for _ in recent)
        for sig, sweep, count in con.execute(
            f"SELECT signature_id, sweep_id, count(*) FROM ({rows}) "
            f"WHERE {where} AND sweep_id IN ({marks}) GROUP BY 1, 2",
            [*params, *recent],
        ).fetchall():
            per_sweep[(sig, sweep)] = count
    groups = [
        Group(
            signature_id=sig,
            signature=text,
            cores=cores,
            hosts=hosts,
            fleets=list(fleets or []),
            python_versions=sorted(pythons or [], key=version_key),
            signals=list(signals or []),
            first_seen=history[sig][0],
            last_seen=history[sig][1],
            new=history[sig][2] == latest_sweep,
            trend=[per_sweep.get((sig, s), 0) for s in recent],
            example_core=example or "",
            top_frames=list(frames or []),
        )
        for (sig, text, cores, hosts, fleets, pythons, signals, example, frames) in grouped
    ]
    where_failed, params_failed = (filters or Filters()).sql(f"status NOT IN {FINAL}")
    failed = [
        Failure(status, cores, list(fleets or []), example or "", error or status)
        for status, cores, fleets, example, error in con.execute(
            f"""
            SELECT status, count(*), list_sort(list(DISTINCT fleet)),
                   arg_max(url, {LATEST}), arg_max(error_message, {LATEST})
            FROM ({rows}) WHERE {where_failed}
            GROUP BY status ORDER BY 2 DESC, 1
            """,
            params_failed,
        ).fetchall()
    ]
    return GroupsResult(recent, latest_sweep, groups, failed)


def version_key(version: str) -> tuple[int, ...]:
    """3.8.18 before 3.12.1 (numeric order; anything unparsable last)."""
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 1 << 30)
    return tuple(parts)


# -- output --------------------------------------------------------------------------------


def to_json(result: GroupsResult) -> str:
    return json.dumps(asdict(result), indent=2)


COLUMNS = (
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
)


def _cells(group: Group) -> list[str]:
    return [
        group.signature_id,
        str(group.cores),
        str(group.hosts),
        "NEW" if group.new else "",
        group.first_seen,
        group.last_seen,
        ",".join(group.fleets),
        ",".join(group.python_versions),
        " ".join(str(n) for n in group.trend),
        group.signature,
    ]


def to_csv(result: GroupsResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for g in result.groups:
        writer.writerow(_cells(g))
    return out.getvalue()


def to_markdown(result: GroupsResult) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(esc(c) for c in _cells(g)) + " |" for g in result.groups]
    if result.failed:
        lines += [
            "",
            f"{sum(f.cores for f in result.failed)} failed analyses (in no group):",
            "",
            "| status | cores | fleets | example core | its error |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {f.status} | {f.cores} | {esc(','.join(f.fleets))} | {esc(f.example_core)} | "
            f"{esc(f.example_error)} |"
            for f in result.failed
        ]
    return "\n".join(lines) + "\n"


def print_table(result: GroupsResult, *, color: bool, width: int | None = None) -> None:
    """The groups as a table for people (`table.render`), then the failed analyses."""
    from triage.pipeline.table import render, terminal_width

    sys.stdout.write(
        render(result, color=color, width=terminal_width() if width is None else width)
    )
