"""`triage regroup`: recompute every row's signature with the current rules, from the
normalised frames stored in the dataset (no core is read). Each file is rewritten whole and
replaced atomically, so readers never see a half-regrouped file."""

from __future__ import annotations

from dataclasses import dataclass

from triage.pipeline.config import SweepConfig
from triage.pipeline.schema import from_arrow_row, to_arrow
from triage.pipeline.sink import dataset_files, filesystem, write_atomically
from triage.signature import Rules, resignature


@dataclass
class RegroupSummary:
    files: int = 0
    rows: int = 0
    changed: int = 0


def regroup(url: str, config: SweepConfig) -> RegroupSummary:
    """Rewrite the dataset's signatures with each row's fleet rules from `config`."""
    import pyarrow.parquet as pq

    fs, _root = filesystem(url, config.storage_options)
    fleets = {f.name: f for f in config.fleets}
    summary = RegroupSummary()
    for path in dataset_files(url, config.storage_options):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, use_threads=False)
        records = [from_arrow_row(row) for row in table.to_pylist()]
        changed = 0
        for record in records:
            sig = record.report.signature
            if sig is None:
                continue
            fleet = fleets.get(record.fleet)
            rules = Rules.from_fleet(fleet) if fleet is not None else Rules()
            new = resignature(sig, rules, sig.reason)
            if new != sig:
                record.report.signature = new
                changed += 1
        summary.files += 1
        summary.rows += len(records)
        if changed:
            write_atomically(fs, to_arrow(records), path)
            summary.changed += changed
    return summary


def describe(summary: RegroupSummary) -> str:
    return (
        f"regrouped {summary.rows} rows in {summary.files} files: "
        f"{summary.changed} signatures changed"
    )
