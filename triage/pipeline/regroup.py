"""`triage regroup`: recompute every row's signature with the current rules and version, from
the report stored in the row (its threads' frames, the signal; no core is read). Rows of
signature version 1 move to version 2 this way: version 2 reads the crashed thread's native
frames, which rows written since version 2 store; older rows have none, and get version 2 of
their Python frames. Each file is rewritten whole and replaced atomically, so readers never
see a half-regrouped file.

A fleet's rules come from the configuration; the dataset does not store them. A fleet of the
dataset that the configuration does not list (or every fleet, without one) had its rules
from a configuration regroup was not given, so its rows keep the signatures they have
(their rules are unknown: the defaults could undo them); only a change of version
recomputes them, with the default rules, and says so. The `default` fleet (cores no fleet
matched) has the default rules unless the configuration lists it."""

from __future__ import annotations

from dataclasses import dataclass, field

from triage.pipeline.config import DEFAULT_FLEET, SweepConfig
from triage.pipeline.schema import from_arrow_row, to_arrow
from triage.pipeline.sink import dataset_files, filesystem, write_atomically
from triage.signature import SIGNATURE_VERSION, Rules, compute_signature


@dataclass
class FleetChange:
    """What regroup does to one fleet's rows."""

    rows: int = 0
    changed: int = 0
    groups_before: set[str] = field(default_factory=set)
    """Signature ids of the rows that change, before."""
    groups_after: set[str] = field(default_factory=set)
    """... and after."""
    kept: int = 0
    """Rows left as they are: the fleet's rules are unknown (not in the configuration)."""
    defaulted: int = 0
    """Rows of an unlisted fleet moved to another version with the default rules."""


@dataclass
class RegroupSummary:
    files: int = 0
    rows: int = 0
    changed: int = 0
    version: int = SIGNATURE_VERSION
    fleets: dict[str, FleetChange] = field(default_factory=dict)
    dry_run: bool = False

    def unlisted(self) -> list[str]:
        """Fleets whose rules the configuration does not give (rows kept or defaulted)."""
        return sorted(n for n, f in self.fleets.items() if f.kept or f.defaulted)


def regroup(
    url: str, config: SweepConfig, version: int = SIGNATURE_VERSION, *, dry_run: bool = False
) -> RegroupSummary:
    """Rewrite the dataset's signatures with each row's fleet rules from `config`, as
    signature version `version` (`dry_run`: count what would change, write nothing)."""
    import pyarrow.parquet as pq

    fs, _root = filesystem(url, config.storage_options)
    fleets = {f.name: f for f in config.fleets}
    fleets.setdefault(DEFAULT_FLEET.name, DEFAULT_FLEET)
    summary = RegroupSummary(version=version, dry_run=dry_run)
    for path in dataset_files(url, config.storage_options):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, use_threads=False)
        records = [from_arrow_row(row) for row in table.to_pylist()]
        changed = 0
        for record in records:
            change = summary.fleets.setdefault(record.fleet, FleetChange())
            change.rows += 1
            old = record.report.signature
            fleet = fleets.get(record.fleet)
            if fleet is None:
                if old is None or old.version == version:
                    change.kept += 1
                    continue
                change.defaulted += 1
            new = compute_signature(record.report, Rules.from_fleet(fleet, version))
            if new != old:
                record.report.signature = new
                changed += 1
                change.changed += 1
                change.groups_before.add(old.id if old else "")
                change.groups_after.add(new.id if new else "")
        summary.files += 1
        summary.rows += len(records)
        if changed and not dry_run:
            write_atomically(fs, to_arrow(records), path)
        summary.changed += changed
    return summary


def describe(summary: RegroupSummary) -> str:
    if summary.dry_run:
        return (
            f"would regroup {summary.rows} rows in {summary.files} files as signature version "
            f"{summary.version}: {summary.changed} signatures would change; nothing written"
        )
    return (
        f"regrouped {summary.rows} rows in {summary.files} files as signature version "
        f"{summary.version}: {summary.changed} signatures changed"
    )


def describe_fleets(summary: RegroupSummary) -> list[str]:
    """One line per fleet: how many rows change signature and how many groups move."""
    lines = []
    for name, f in sorted(summary.fleets.items()):
        moved = len(f.groups_before - {""})
        lines.append(
            f"fleet {name}: {f.changed} of {f.rows} rows change signature; {moved} groups "
            f"move, into {len(f.groups_after - {''})} groups"
            + (f"; {f.kept} rows kept (fleet not in the configuration)" if f.kept else "")
        )
    return lines


def warnings(summary: RegroupSummary) -> list[str]:
    """What the user must know of the fleets the configuration does not list."""
    kept = sorted(n for n, f in summary.fleets.items() if f.kept)
    defaulted = sorted(n for n, f in summary.fleets.items() if f.defaulted)
    out = []
    if kept:
        out.append(
            f"fleet(s) {', '.join(kept)} of the dataset are not in the configuration: their "
            "rows keep the signatures they have (the dataset does not store the rules they were "
            "made with); list them under [[fleets]] in --config, with their signature rules, "
            "to regroup them"
        )
    if defaulted:
        out.append(
            f"fleet(s) {', '.join(defaulted)} of the dataset are not in the configuration: "
            f"their rows of another signature version were recomputed as version "
            f"{summary.version} with the default rules; if they had rules of their own, list "
            "them under [[fleets]] in --config and regroup again"
        )
    return out
