"""What every signature version shares: the fleet's rules, the reason, the thread, the id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from triage.report import CoreReport, Signature, ThreadReport
from triage.signature.normalise import program_root, python_frame

#: A version's reduction: normalised frames (newest first), rules, reason, tid -> signature.
Reduce = Callable[[Sequence[str], "Rules", str, "int | None"], Signature]

#: The version `compute_signature` makes unless told otherwise (docs/signatures.md).
SIGNATURE_VERSION = 2
#: Every version this triage can compute.
VERSIONS = (1, 2)

#: The reason of an on-demand core (gcore and the like: signal.name is SIGSTOP there).
ON_DEMAND = "on-demand"


@dataclass(frozen=True)
class Rules:
    """What makes a signature: the algorithm's version, how many meaningful frames, which
    frames to leave out (fnmatch patterns over normalised frames, on top of the built-in
    lists), and whether test runners' frames are left out too (version 2)."""

    frames: int = 5
    skip: tuple[str, ...] = ()
    version: int = SIGNATURE_VERSION
    skip_test_runners: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"signature frames must be a positive integer, not {self.frames!r}")
        if isinstance(self.skip, str):
            raise TypeError("signature skip must be a sequence of patterns, not one string")
        if self.version not in VERSIONS:
            raise ValueError(
                f"signature version must be one of {', '.join(map(str, VERSIONS))}, "
                f"not {self.version!r}"
            )
        object.__setattr__(self, "skip", tuple(self.skip))

    @classmethod
    def from_fleet(cls, fleet: Any, version: int = SIGNATURE_VERSION) -> Rules:
        """The rules of a fleet: anything with `signature_frames`, `signature_skip` and
        `signature_skip_test_runners` (None: the defaults); `version`: the dataset's
        signature version."""
        return cls(
            frames=getattr(fleet, "signature_frames", cls.frames),
            skip=tuple(getattr(fleet, "signature_skip", None) or ()),
            version=version,
            skip_test_runners=getattr(fleet, "signature_skip_test_runners", True),
        )


def signature_id(text: str, version: int = SIGNATURE_VERSION) -> str:
    """The group key of a signature text: the first 12 hex digits of
    sha256("vVERSION\\n" + text)."""
    return hashlib.sha256(f"v{version}\n{text}".encode()).hexdigest()[:12]


def base_reason(report: CoreReport) -> str:
    """The reason before folding: the signal name, or "on-demand" for on-demand cores."""
    signal = report.signal
    if signal is None:
        return "unknown"
    if signal.origin == "on_demand":
        return ON_DEMAND
    return signal.name or "unknown"


def signature_thread(report: CoreReport) -> ThreadReport | None:
    """The thread a signature is taken from (None: every Python thread's top is used): the
    crashed thread; on demand or when none crashed, the GIL holder."""
    on_demand = report.signal is not None and report.signal.origin == "on_demand"
    crashed = [] if on_demand else [t for t in report.threads if t.crashed]
    if crashed:
        # One OS thread running code of several interpreters gives several rows (all marked
        # crashed): the one holding the GIL ran last, else the first with a Python stack.
        return next(
            (t for t in crashed if t.holds_gil),
            next((t for t in crashed if t.frames), crashed[0]),
        )
    return next((t for t in report.threads if t.holds_gil), None)


def signable(report: CoreReport) -> bool:
    """Whether a report can have a signature: the analysis did not fail, and it knows
    something (threads or a signal). A core whose stacks could not be read would otherwise
    group with every other unreadable core of the same signal; `triage ci` and `triage
    groups` key those by their error kind instead."""
    return report.error is None and bool(report.threads or report.signal is not None)


def make_signature(
    version: int, reason: str, frames: list[str], all_frames: Sequence[str], thread: int | None
) -> Signature:
    """The signature of `frames` (chosen from `all_frames`) and `reason`, in `version`."""
    text = " | ".join([reason, *frames])
    return Signature(
        text=text,
        id=signature_id(text, version),
        version=version,
        reason=reason,
        frames=frames,
        all_frames=list(all_frames),
        thread=thread,
    )


def thread_tops(
    report: CoreReport, root: str | None, meaningful: Callable[[str], bool]
) -> list[str]:
    """The newest meaningful Python frame of every Python thread, normalised, sorted and
    deduplicated: what a signature is made of when no thread is the one."""
    tops = set()
    for row in report.threads:
        if not row.python:
            continue
        for frame in reversed(row.frames):
            if frame.kind != "python":
                continue
            text = python_frame(frame, root)
            if meaningful(text):
                tops.add(text)
                break
    return sorted(tops)


def sign(
    report: CoreReport,
    rules: Rules,
    frames_of: Callable[[CoreReport, ThreadReport, str | None], list[str]],
    reduce: Reduce,
    meaningful: Callable[[str], bool],
) -> Signature | None:
    """What every version does: None when `signable` says no; else the chosen thread's
    frames (`frames_of`: normalised, newest first) reduced, or, without a thread, every
    Python thread's top `meaningful` frame."""
    if not signable(report):
        return None
    reason = base_reason(report)
    root = program_root(report)
    thread = signature_thread(report)
    if thread is not None:
        return reduce(frames_of(report, thread, root), rules, reason, thread.tid)
    return reduce(thread_tops(report, root, meaningful), rules, reason, None)
