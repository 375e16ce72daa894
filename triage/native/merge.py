"""Native frames and Python frames as one stack, the way they called each other.

Each call of the eval loop (`_PyEval_EvalFrameDefault`; `PyEval_EvalFrameEx` on 2.7) runs a
run of Python frames that starts with an entry frame: up to 3.10 one frame per call, from
3.11 every frame until the next entry frame. Walking both stacks newest first, each eval-loop
frame is replaced by the next run of Python frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

EVAL_FUNCTIONS = frozenset({"_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx"})

N = TypeVar("N")
P = TypeVar("P")


def python_runs(entries: Sequence[bool]) -> list[range]:
    """Indexes of the Python frames (newest first) run by each eval-loop call, newest first:
    a run ends with (includes) an entry frame."""
    runs, start = [], 0
    for i, entry in enumerate(entries):
        if entry:
            runs.append(range(start, i + 1))
            start = i + 1
    if start < len(entries):
        runs.append(range(start, len(entries)))
    return runs


def merge(
    native: Sequence[N],
    native_names: Sequence[str | None],
    python: Sequence[P],
    entries: Sequence[bool],
) -> list[N | P] | None:
    """One stack, newest first; None when the eval-loop frames and the runs of Python frames
    do not pair up (a stack the unwinder could not follow to its end, for instance)."""
    runs = python_runs(entries)
    evals = sum(name in EVAL_FUNCTIONS for name in native_names)
    if evals != len(runs):
        return None
    merged: list[N | P] = []
    pending = iter(runs)
    for frame, name in zip(native, native_names, strict=True):
        if name in EVAL_FUNCTIONS:
            merged.extend(python[i] for i in next(pending))
        else:
            merged.append(frame)
    return merged
