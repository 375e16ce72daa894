"""Signature version 2: native crash sites first, then the Python callers.

The thread is chosen as in every version (`base.signature_thread`). Its frames, most recent
first, are normalised (`module:name`, `library!function`); native frames count only when the
thread itself faulted or signalled itself (a crash, abort(), raise()): a signal sent by
another process, or an on-demand core, says nothing about where the thread was in C. Then an
ordered list of small rules (`RULES`: a predicate and an action each, after Socorro's
signature generator) rewrites the stack; their lists of patterns are data files in
triage/signature/data/. Finally the first `Rules.frames` frames are taken, the `prefix` ones
(generic functions such as strlen or free) not counted. docs/signatures.md tells every rule
and why.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from triage.report import SELF_INFLICTED, CoreReport, FrameReport, Signature, ThreadReport
from triage.signature.base import (
    ON_DEMAND,
    Rules,
    make_signature,
    sign,
)
from triage.signature.normalise import frame_kind, native_frame, python_frame

VERSION = 2

DATA = Path(__file__).parent / "data"

#: A function of the C library without a name (its internal ones, without debug symbols).
UNKNOWN_LIBC = "libc.so!???"

_FOLDED_REASON = re.compile(r" \((?:abort|raise)\)$")


@lru_cache(maxsize=32)
def patterns(name: str) -> re.Pattern[str]:
    """The list data/NAME.txt as one compiled regular expression (fnmatch patterns)."""
    return re.compile("|".join(fnmatch.translate(p) for p in pattern_list(name)) or "(?!)")


@lru_cache(maxsize=32)
def pattern_list(name: str) -> tuple[str, ...]:
    """The patterns of data/NAME.txt, without comments and blank lines."""
    lines = (DATA / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(p for p in (line.split("#", 1)[0].strip() for line in lines) if p)


@cache
def renames() -> dict[str, str]:
    """data/renames.txt: FROM TO pairs."""
    return dict(line.split() for line in pattern_list("renames"))


def matches(name: str, frame: str) -> bool:
    return patterns(name).match(frame) is not None


def _fleet(rules: Rules) -> re.Pattern[str]:
    return _compiled(rules.skip)


@lru_cache(maxsize=64)
def _compiled(skip: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(p) for p in skip) or "(?!)")


# -- the rules -------------------------------------------------------------------------------


@dataclass
class Stack:
    """The frames being made into a signature, most recent first, and the fold so far."""

    frames: list[str]
    reason: str
    """The reason before folding: the signal name or `on-demand`."""
    fold: str | None = None
    """"abort" or "raise" once abort/raise frames were folded into the reason."""


@dataclass(frozen=True)
class Rule:
    """One step: when it `applies`, its `action` rewrites the stack."""

    name: str
    why: str

    def applies(self, stack: Stack, rules: Rules) -> bool:
        raise NotImplementedError

    def action(self, stack: Stack, rules: Rules) -> None:
        raise NotImplementedError


class DropSignalHandler(Rule):
    """Frames above a signal trampoline that are only a handler reporting the crash and
    re-raising it (faulthandler), with the trampoline: the crash is below it."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return any(matches("trampolines", f) for f in stack.frames)

    def action(self, stack: Stack, rules: Rules) -> None:
        frames = stack.frames
        for i in reversed(range(len(frames))):  # the oldest trampoline first
            if matches("trampolines", frames[i]) and all(map(_in_handler, frames[:i])):
                stack.frames = frames[i + 1 :]
                return


def _in_handler(frame: str) -> bool:
    return any(
        matches(name, frame)
        for name in ("signal-handlers", "trampolines", "fold-abort", "fold-raise")
    )


class FoldAbort(Rule):
    """The abort()/raise() frames at the top leave the stack and name the reason:
    `SIGABRT (abort)`; the frame below them, abort's caller, is the site."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return stack.reason != ON_DEMAND and _fold_run(stack.frames) > 0

    def action(self, stack: Stack, rules: Rules) -> None:
        run = _fold_run(stack.frames)
        folded = stack.frames[:run]
        stack.fold = "abort" if any(matches("fold-abort", f) for f in folded) else "raise"
        stack.frames = stack.frames[run:]


def _folds(frame: str) -> bool:
    return matches("fold-abort", frame) or matches("fold-raise", frame)


def _fold_run(frames: Sequence[str]) -> int:
    """How many frames at the top are abort/raise ones: the fold lists' frames, and the C
    library's unnamed functions between them (its internal ones, without debug symbols)."""
    run = 0
    while run < len(frames) and (_folds(frames[run]) or frames[run] == UNKNOWN_LIBC):
        run += 1
    while run and not _folds(frames[run - 1]):  # unnamed libc frames below are the caller
        run -= 1
    return run


class StartAtSentinel(Rule):
    """A fatal-error reporter of the interpreter starts the signature: the frames above it
    (how each version prints and aborts) go."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return any(matches("sentinels", f) for f in stack.frames)

    def action(self, stack: Stack, rules: Rules) -> None:
        first = next(i for i, f in enumerate(stack.frames) if matches("sentinels", f))
        stack.frames = stack.frames[first:]


class Rename(Rule):
    """One name for one function across versions (data/renames.txt), and an Argument Clinic
    body `f_impl` called (or inlined) by its wrapper `f` named `f`."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return any(f in renames() or f.endswith("_impl") for f in stack.frames)

    def action(self, stack: Stack, rules: Rules) -> None:
        frames = [renames().get(f, f) for f in stack.frames]
        for i, frame in enumerate(frames[:-1]):
            if frame.endswith("_impl") and frames[i + 1] == frame[: -len("_impl")]:
                frames[i] = frames[i + 1]
        stack.frames = frames


class NativeAboveNewestPython(Rule):
    """Of the native frames, only those above the newest Python frame (the C code Python
    called, where it died); below it they are the interpreter running Python."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return any(frame_kind(f) == "python" for f in stack.frames)

    def action(self, stack: Stack, rules: Rules) -> None:
        newest = next(i for i, f in enumerate(stack.frames) if frame_kind(f) == "python")
        below = stack.frames[newest:]
        stack.frames = stack.frames[:newest] + [f for f in below if frame_kind(f) == "python"]


class Skip(Rule):
    """Frames that are never where a bug is: the interpreter's and the C runtime's
    plumbing, thread bootstrap, runpy, test runners (unless the fleet keeps them), and the
    fleet's own `signature_skip` patterns."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return bool(stack.frames)

    def action(self, stack: Stack, rules: Rules) -> None:
        stack.frames = [f for f in stack.frames if not is_skipped(f, rules)]


def is_skipped(frame: str, rules: Rules) -> bool:
    """Whether a normalised frame is left out of version-2 signatures under `rules`."""
    if frame_kind(frame) == "python":
        if matches("skip-python", frame):
            return True
        if rules.skip_test_runners and matches("skip-test-runners", frame):
            return True
    elif matches("skip-native", frame):
        return True
    return _fleet(rules).match(frame) is not None


class CollapseRepeats(Rule):
    """Consecutive equal frames become one: a function and a copy of it inlined into itself,
    unknown frames of one library, direct recursion."""

    def applies(self, stack: Stack, rules: Rules) -> bool:
        return any(a == b for a, b in itertools.pairwise(stack.frames))

    def action(self, stack: Stack, rules: Rules) -> None:
        frames = stack.frames
        stack.frames = [f for i, f in enumerate(frames) if i == 0 or f != frames[i - 1]]


RULES: tuple[Rule, ...] = (
    DropSignalHandler("drop-signal-handler", "a crash reporter's frames are not the crash"),
    FoldAbort("fold-abort", "abort() is how the process died, its caller is the site"),
    StartAtSentinel("start-at-sentinel", "fatal-error plumbing differs between versions"),
    Rename("rename", "one name per function across versions"),
    NativeAboveNewestPython("native-above-python", "below Python, C frames run Python"),
    Skip("skip", "plumbing is never the bug"),
    CollapseRepeats("collapse-repeats", "one function is one frame of a signature"),
)


# -- signatures ------------------------------------------------------------------------------


def take(frames: Sequence[str], rules: Rules) -> list[str]:
    """The first `rules.frames` frames, generic `prefix` frames not counted."""
    out: list[str] = []
    counted = 0
    for frame in frames:
        if counted == rules.frames:
            break
        out.append(frame)
        if not matches("prefix", frame):
            counted += 1
    return out


def reduce(all_frames: Sequence[str], rules: Rules, reason: str, thread: int | None) -> Signature:
    """The signature of normalised frames (most recent first) under `rules`."""
    stack = Stack(list(all_frames), _FOLDED_REASON.sub("", reason))
    for rule in RULES:
        if rule.applies(stack, rules):
            rule.action(stack, rules)
    reason = f"{stack.reason} ({stack.fold})" if stack.fold else stack.reason
    return make_signature(VERSION, reason, take(stack.frames, rules), all_frames, thread)


def normalise_frame(frame: FrameReport, program_root: str | None) -> str:
    """One frame as version 2 spells it: `module:name` or `library!function`."""
    if frame.kind == "native":
        return native_frame(frame)
    return python_frame(frame, program_root)


def _frames(report: CoreReport, thread: ThreadReport, root: str | None) -> list[str]:
    """The thread's frames, newest first: its native ones only when it died of its own
    doing (a fault, abort()). Calls inlined where no native frame is shown (into an eval-loop
    frame, which gave way to its Python frames) or into frames older than the newest Python
    frame are left out: no rule reads them, and only `--native` reads their DWARF, so a core
    signs alike with and without it."""
    native = thread.crashed and report.signal is not None and report.signal.origin in SELF_INFLICTED
    newest_first = list(reversed(thread.frames))
    python = next((i for i, f in enumerate(newest_first) if f.kind == "python"), None)
    shown = {f.address for f in newest_first if f.kind == "native" and not f.inlined}

    def kept(i: int, f: FrameReport) -> bool:
        if f.kind == "python":
            return True
        if not native:
            return False
        if not f.inlined:
            return True
        return f.address in shown and (python is None or i < python)

    return [normalise_frame(f, root) for i, f in enumerate(newest_first) if kept(i, f)]


def compute_signature(report: CoreReport, rules: Rules) -> Signature | None:
    """The version-2 signature of a report under `rules` (None: `signable` says no)."""
    return sign(report, rules, _frames, reduce, lambda text: not is_skipped(text, rules))
