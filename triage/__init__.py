"""triage: crash triage for fleets of Python programs, from ELF core dumps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from triage.report import CoreReport

__all__ = ["__version__", "analyze_core"]


def analyze_core(path: str, executable: str | None = None, **options: Any) -> CoreReport:
    """Analyse one core file and return its report (see `triage.engine.analyze_core`)."""
    from triage.engine import analyze_core as _analyze

    return _analyze(path, executable, **options)
