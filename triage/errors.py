"""Errors that end an analysis: each has a stable `kind` and a one-line message with advice."""

from __future__ import annotations


class TriageError(Exception):
    """An analysis failure a user can act on. `kind` is stable; the message is one line."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CoreFileError(TriageError):
    """The core file cannot be opened or is not an ELF core."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ExecutableError(TriageError):
    """The executable given or found does not fit the core."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class AddressError(TriageError, LookupError):
    """An address of the dead process that no mapping in the core or on disk serves."""

    kind = "unmapped_address"

    def __init__(self, address: int, size: int = 1, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"address 0x{address:x} (+{size}) is not readable in the core{detail}")
        self.address = address
        self.size = size


#: What reading a damaged or unexpected core can make the readers raise: unreadable memory
#: and objects of the wrong kind (TriageError), missing layout fields (KeyError), bad numbers
#: (ValueError). Readers that give partial results instead of failing catch these.
READ_ERRORS = (TriageError, LookupError, ValueError, OverflowError)
