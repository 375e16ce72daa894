"""Crash signatures: a core reduced to the reason it died and the top meaningful frames.

Cores of one bug share a signature across hosts, Python versions and small edits of the code
around the crash; cores of different bugs do not. The algorithm is versioned: version 2
(`v2.py`, the default) signs native crash sites and their Python callers; version 1 (`v1.py`,
frozen) is kept for datasets grouped by it until `triage regroup` moves them on. The
versions share the fleet's `Rules`, the reason and the thread choice (`base.py`) and the
spelling of frames (`normalise.py`). docs/signatures.md documents them.

Only the standard library and `triage.report` are imported here: `triage core` and the
analysis child use this package without pyarrow, duckdb or dask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from triage.report import CoreReport, Signature
from triage.signature import v1, v2
from triage.signature.base import (
    ON_DEMAND,
    SIGNATURE_VERSION,
    VERSIONS,
    Rules,
    base_reason,
    signable,
    signature_id,
    signature_thread,
)
from triage.signature.normalise import program_root, python_module

__all__ = [
    "ON_DEMAND",
    "SIGNATURE_VERSION",
    "VERSIONS",
    "Rules",
    "base_reason",
    "compute_signature",
    "program_root",
    "python_module",
    "resignature",
    "signable",
    "signature_id",
    "signature_thread",
]


class _Algorithm(Protocol):
    """What each version's module (v1, v2) provides."""

    def compute_signature(self, report: CoreReport, rules: Rules) -> Signature | None: ...

    def reduce(
        self, all_frames: Sequence[str], rules: Rules, reason: str, thread: int | None
    ) -> Signature: ...


_ALGORITHMS: dict[int, _Algorithm] = {1: v1, 2: v2}


def compute_signature(report: CoreReport, rules: Rules | None = None) -> Signature | None:
    """The signature of a report under `rules` (default: `Rules()`, the current version).

    None when the analysis failed (`error` set) or nothing is known (`base.signable`)."""
    rules = Rules() if rules is None else rules
    return _ALGORITHMS[rules.version].compute_signature(report, rules)


def resignature(sig: Signature, rules: Rules, reason: str | None = None) -> Signature:
    """`sig` recomputed with other rules of its own version from its `all_frames` alone (no
    core needed). `reason` is the reason before folding (the signal name, or "on-demand"); a
    folded one such as `SIGABRT (abort)` is accepted too; by default `sig.reason`.

    Another version needs the report's frames (`compute_signature` on the stored report, as
    `triage regroup` does): `all_frames` of version 1 lack what version 2 reads."""
    if rules.version != sig.version:
        raise ValueError(
            f"a version-{sig.version} signature cannot be recomputed as version {rules.version} "
            "from its frames alone: compute it from the report"
        )
    reason = sig.reason if reason is None else reason
    return _ALGORITHMS[sig.version].reduce(sig.all_frames, rules, reason, sig.thread)
