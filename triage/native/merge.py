"""Native frames and Python frames as one stack, the way they called each other.

Each call of the eval loop runs a run of Python frames that starts with an entry frame: up to
3.10 one frame per call, from 3.11 every frame until the next entry frame. Walking both stacks
newest first, each eval-loop frame is replaced by the next run of Python frames.

An eval-loop frame is one whose function name contains `_PyEval_EvalFrameDefault` (3.6+; also
the parts a compiler splits off it: Debian's 3.14 runs its loop in
`_PyEval_EvalFrameDefault.cold`) or `PyEval_EvalFrameEx` (2.7), or starts with `_TAIL_CALL_`
(3.14+ builds with the tail-calling interpreter, where each instruction is a function). Adjacent
eval-loop frames are one call of the loop (an instruction function called by the loop's entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

EVAL_FUNCTIONS = ("_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx")
TAIL_CALL_PREFIX = "_TAIL_CALL_"


def is_eval_frame(name: str | None) -> bool:
    """Whether a native frame's function runs Python frames (see the module's docstring)."""
    if not name:
        return False
    return name.startswith(TAIL_CALL_PREFIX) or any(f in name for f in EVAL_FUNCTIONS)


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
    evals = [is_eval_frame(name) for name in native_names]
    calls = [e and not (i and evals[i - 1]) for i, e in enumerate(evals)]  # adjacent: one call
    if sum(calls) != len(runs):
        return None
    merged: list[N | P] = []
    pending = iter(runs)
    for frame, is_eval, starts in zip(native, evals, calls, strict=True):
        if starts:
            merged.extend(python[i] for i in next(pending))
        elif not is_eval:
            merged.append(frame)
    return merged
