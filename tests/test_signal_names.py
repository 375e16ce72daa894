"""Signals as people write them, read one way everywhere (filters, collector metadata), and
named as the dataset names them (`coredump.signals.signal_name`)."""

from __future__ import annotations

import re
import signal

import pytest

from triage.coredump.signals import signal_name, signal_number
from triage.pipeline.filters import FilterError, parse_signal


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGSEGV", 11), ("SEGV", 11), (" segv ", 11), ("11", 11), ("sigabrt", 6)],
)
def test_signal_number(text: str, number: int):
    assert signal_number(text) == number


def test_real_time_signals_round_trip():
    number = signal.SIGRTMIN + 2
    assert signal_name(number) == "SIGRTMIN+2"
    assert signal_number("SIGRTMIN+2") == number
    assert parse_signal(str(number)) == "SIGRTMIN+2"


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "999", "SIGRTMIN+99"])
def test_unknown_signals_are_refused(text: str):
    with pytest.raises(FilterError, match=re.escape(f"--signal {text}: unknown signal")):
        parse_signal(text)
