"""Errors that end an analysis: each has a stable `kind` and a one-line message with advice.

Reading a damaged or unexpected core raises a `ReadError`: `AddressError` where the memory
is not there, `UnexpectedObject` where what is there is not what was asked for. Neither is a
`LookupError`: a misspelt layout member (`MissingField`, a `KeyError`) or an index out of
range is a bug in triage, and surfaces as one instead of reading as damaged memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.kinds import ErrorKind


class TriageError(Exception):
    """An analysis failure a user can act on. `kind` is stable (one of `triage.kinds`); the
    message is one line. A TriageError without a kind of its own is a bug: internal_error."""

    kind: ErrorKind = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CoreFileError(TriageError):
    """The core file cannot be opened or is not an ELF core."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ExecutableError(TriageError):
    """The executable given or found does not fit the core."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ReadError(TriageError):
    """What the dead process's memory says cannot be read as asked: readers that give partial
    results catch this (and only this, with READ_ERRORS)."""


class AddressError(ReadError):
    """An address of the dead process that no mapping in the core or on disk serves."""

    kind = "unmapped_address"

    def __init__(self, address: int, size: int = 1, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"address 0x{address:x} (+{size}) is not readable in the core{detail}")
        self.address = address
        self.size = size


class UnexpectedObject(ReadError):
    """The object at an address is not of the kind asked for (or is implausibly large)."""

    kind = "unexpected_object"

    def __init__(self, address: int, reason: str) -> None:
        super().__init__(f"object at 0x{address:x}: {reason}")
        self.address = address


#: What reading a damaged or unexpected core can make the readers raise: unreadable memory
#: and objects of the wrong kind (ReadError), bad numbers (ValueError, OverflowError: a
#: line table or a length that decodes to nonsense). Readers that give partial results
#: instead of failing catch these, and nothing else: a missing layout member (KeyError) or
#: an index out of range is a bug and must be seen.
READ_ERRORS = (ReadError, ValueError, OverflowError)


def error_detail(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
