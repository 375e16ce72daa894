"""Sweep ids order sweeps by when they started: the dataset's latest row of a core is the one
of the greatest sweep id, and a rerun replaces failed rows by that order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from triage.pipeline.config import SweepConfig
from triage.pipeline.run import new_sweep_info
from triage.pipeline.sink import IndexRow, latest_statuses, superseded_failures


def test_sweeps_within_one_second_are_ordered():
    start = datetime(2026, 12, 1, 16, 12, 6, 999, tzinfo=timezone.utc)
    ids = [
        new_sweep_info(SweepConfig(), start + timedelta(microseconds=n)).sweep_id
        for n in range(200)
    ]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert ids[0].startswith("20261201T161206.000999Z-")


def test_a_failed_row_is_replaced_by_a_sweep_of_the_same_second():
    first = new_sweep_info(
        SweepConfig(), datetime(2026, 12, 1, 16, 12, 6, 100, tzinfo=timezone.utc)
    )
    second = new_sweep_info(
        SweepConfig(), datetime(2026, 12, 1, 16, 12, 6, 900, tzinfo=timezone.utc)
    )
    index = [
        IndexRow("a.parquet", "core", first.sweep_id, "unreadable"),
        IndexRow("b.parquet", "core", second.sweep_id, "ok"),
    ]
    assert latest_statuses(index) == {"core": "ok"}
    assert superseded_failures(index, {}) == [index[0]]
