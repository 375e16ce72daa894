"""The filter options of `triage groups` and `triage dashboard`, checked before any query:
each bad value is a FilterError whose message is one line naming the option, the value and
what to give instead (the command exits 2, a usage error)."""

from __future__ import annotations

import datetime as dt
import re
import signal as signal_module

from triage.coredump.signals import signal_name, signal_number

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class FilterError(ValueError):
    """A filter option's value cannot be used; the message is one line."""


def parse_date(option: str, value: str | None) -> str | None:
    """`value` as YYYY-MM-DD (a real date), or None."""
    if value is None:
        return None
    text = value.strip()
    try:
        if not DATE.fullmatch(text):
            raise ValueError
        dt.date.fromisoformat(text)
    except ValueError:
        raise FilterError(
            f"{option} {value}: not a date; give YYYY-MM-DD, e.g. 2026-03-01"
        ) from None
    return text


def check_range(since: str | None, until: str | None) -> None:
    """--since after --until matches nothing: say so rather than show nothing."""
    if since is not None and until is not None and since > until:
        raise FilterError(f"--since {since} is after --until {until}: no sweep is in between")


def signal_names() -> list[str]:
    """Every signal this system knows, by name (SIGABRT, SIGBUS, ...), in number order."""
    return [s.name for s in sorted(signal_module.Signals, key=int)]


def parse_signal(value: str | None) -> str | None:
    """A signal as the dataset names it (SIGSEGV) from SIGSEGV, SEGV, segv or 11; or None."""
    if value is None:
        return None
    try:
        number = signal_number(value)
        if not 0 < number <= signal_module.SIGRTMAX:
            raise ValueError(value)
    except ValueError:
        raise FilterError(
            f"--signal {value}: unknown signal; give a name or a number, one of "
            f"{', '.join(signal_names())} (SIG may be left out: SEGV)"
        ) from None
    return signal_name(number)


def check_fleet(fleet: str | None, fleets: list[str], dataset: str) -> None:
    """`fleet` must be one of the dataset's `fleets`."""
    if fleet is not None and fleet not in fleets:
        have = ", ".join(fleets) if fleets else "none"
        raise FilterError(f"--fleet {fleet}: {dataset} has no such fleet; its fleets: {have}")


def check_sweeps(sweeps: int) -> None:
    if sweeps < 1:
        raise FilterError(f"--sweeps must be at least 1, not {sweeps}")
