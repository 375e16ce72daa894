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

__all__ = ["ENV", "ROOT", "TRIAGE", "compile_triage", "corefactory", "pystack_command", "wall"]

# As installed by pip: byte-code compiled once, not at every start (some shells here export
# PYTHONDONTWRITEBYTECODE, which would make every run of an editable install recompile).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TRIAGE = [sys.executable, "-m", "triage"]


def compile_triage() -> None:
    """Byte-compile the package once, as pip does on install."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "triage")], check=True)


def pystack_command() -> str:
    return shutil.which("pystack") or str(Path(sys.executable).parent / "pystack")


def wall(argv: list[str], runs: int, stdout: int | None = subprocess.DEVNULL) -> float:
    """Median wall time of a command, after one warm-up run."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, stdout=stdout, stderr=subprocess.DEVNULL, check=False, env=ENV)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)
