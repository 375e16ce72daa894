"""`triage regroup`: recompute every row's signature with the current rules and version, from
the report stored in the row (its threads' frames, the signal; no core is read). Rows of
signature version 1 move to version 2 this way: version 2 reads the crashed thread's native
frames, which rows written since version 2 store; older rows have none, and get version 2 of
their Python frames. Each file is rewritten whole and replaced atomically, so readers never
see a half-regrouped file."""

from __future__ import annotations

from dataclasses import dataclass

from triage.pipeline.config import SweepConfig
from triage.pipeline.schema import from_arrow_row, to_arrow
from triage.pipeline.sink import dataset_files, filesystem, write_atomically
from triage.signature import SIGNATURE_VERSION, Rules, compute_signature


@dataclass
class RegroupSummary:
    files: int = 0
    rows: int = 0
    changed: int = 0
    version: int = SIGNATURE_VERSION


def regroup(url: str, config: SweepConfig, version: int = SIGNATURE_VERSION) -> RegroupSummary:
    """Rewrite the dataset's signatures with each row's fleet rules from `config`, as
    signature version `version`."""
    import pyarrow.parquet as pq

    fs, _root = filesystem(url, config.storage_options)
    fleets = {f.name: f for f in config.fleets}
    summary = RegroupSummary(version=version)
    for path in dataset_files(url, config.storage_options):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, use_threads=False)
        records = [from_arrow_row(row) for row in table.to_pylist()]
        changed = 0
        for record in records:
            rules = Rules.from_fleet(fleets.get(record.fleet), version)  # None: the defaults
            new = compute_signature(record.report, rules)
            if new != record.report.signature:
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
        f"regrouped {summary.rows} rows in {summary.files} files as signature version "
        f"{summary.version}: {summary.changed} signatures changed"
    )
