"""What both benchmarks share: how triage and pystack are run and timed."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import corefactory  # noqa: E402 - the test suite's core maker, re-exported to the benchmarks

__all__ = [
    "ENV",
    "ROOT",
    "TRIAGE",
    "compile_triage",
    "corefactory",
    "pystack_command",
    "walls",
]

# As installed by pip: byte-code compiled once, not at every start (some shells here export
# PYTHONDONTWRITEBYTECODE, which would make every run of an editable install recompile).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TRIAGE = [sys.executable, "-m", "triage"]


def compile_triage() -> None:
    """Byte-compile the package once, as pip does on install."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "triage")], check=True)


def pystack_command() -> str:
    return shutil.which("pystack") or str(Path(sys.executable).parent / "pystack")


def walls(commands: list[list[str]], runs: int) -> list[float]:
    """Median wall time of each command, the commands taking turns run after run (after one
    warm-up round), so that a shared machine's slow minutes fall on all of them alike."""
    times: list[list[float]] = [[] for _ in commands]
    for i in range(runs + 1):
        for argv, spent in zip(commands, times, strict=True):
            start = time.perf_counter()
            subprocess.run(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=ENV
            )
            if i:
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]
