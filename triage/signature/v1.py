"""Signature version 1, frozen: what triage computed before version 2 (docs/signatures.md).

Datasets grouped by version 1 keep getting version-1 signatures until `triage regroup` moves
them to version 2, so this algorithm must not change. It ran when the engine gave no native
frames, and reads the Python frames only:

    thread     the crashed thread; on demand or when none crashed, the GIL holder;
               else the top meaningful frame of every Python thread, sorted, deduplicated
    normalise  `module:name`
    skip       thread bootstrap, runpy, and the fleet's own patterns
    text       `REASON | frame | frame ...` (the first `Rules.frames` meaningful frames)
    id         first 12 hex digits of sha256("v1\\n" + text)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from triage.report import CoreReport, Signature, ThreadReport
from triage.signature.base import (
    Rules,
    make_signature,
    sign,
)
from triage.signature.normalise import python_frame

VERSION = 1

#: Python frames of thread bootstrap (qualified names: co_qualname on 3.11+, recovered for
#: methods before; bare names when not recovered; 2.7's private spellings) and runpy (a file
#: in 3.10 and older, frozen from 3.11 on).
PYTHON_SKIP: tuple[str, ...] = (
    "threading:Thread._bootstrap",
    "threading:Thread._bootstrap_inner",
    "threading:Thread.run",
    "threading:Thread.__bootstrap",
    "threading:Thread.__bootstrap_inner",
    "threading:__bootstrap",
    "threading:__bootstrap_inner",
    "threading:_bootstrap",
    "threading:_bootstrap_inner",
    "threading:run",
    "runpy:*",
    "<frozen runpy>:*",
)


def is_meaningful(text: str, rules: Rules) -> bool:
    """Whether a normalised frame stays in version-1 signatures under `rules`."""
    patterns = (*PYTHON_SKIP, *rules.skip)
    return not any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)


def reduce(all_frames: Sequence[str], rules: Rules, reason: str, thread: int | None) -> Signature:
    """The signature of normalised frames (most recent first) under `rules`."""
    frames = [f for f in all_frames if is_meaningful(f, rules)][: rules.frames]
    return make_signature(VERSION, reason, frames, all_frames, thread)


def _frames(report: CoreReport, thread: ThreadReport, root: str | None) -> list[str]:
    return [python_frame(f, root) for f in reversed(thread.frames) if f.kind == "python"]


def compute_signature(report: CoreReport, rules: Rules) -> Signature | None:
    """The version-1 signature of a report under `rules` (None: `signable` says no)."""
    return sign(report, rules, _frames, reduce, lambda text: is_meaningful(text, rules))
