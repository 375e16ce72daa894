"""The environment of the Python processes a sweep starts (the embedded cluster's forkserver,
hence its workers, and every worker's analysis child): they import this same `triage`,
never a folder named `triage` in the current directory.

`python -c ...` and `python -m ...` put the current directory first on `sys.path`, so a
sweep run from a directory holding a `triage/` folder (a checkout's parent, a scratch folder)
had its workers import that folder. The children get `PYTHONSAFEPATH=1` (Python 3.11+: no
current directory on `sys.path`) and, when this `triage` is not where they would find it
without the current directory (run from a source tree, say), its directory first on
`PYTHONPATH`.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import triage


def package_root() -> str:
    """The directory this `triage` package is in."""
    return str(Path(triage.__file__).resolve().parent.parent)


def _found_without_current_directory() -> bool:
    """Whether a child would import this `triage` from its own `sys.path` (this one's, less
    the entry of the script or current directory that `sys.path[0]` is unless safe_path)."""
    path = sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:]
    spec = importlib.machinery.PathFinder.find_spec("triage", path)
    if spec is None or spec.origin is None:
        return False
    return Path(spec.origin).resolve() == Path(triage.__file__).resolve()


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) for a Python child that must import this `triage`."""
    env = dict(os.environ if base is None else base)
    env["PYTHONSAFEPATH"] = "1"
    if not _found_without_current_directory():
        root = package_root()
        rest = env.get("PYTHONPATH")
        env["PYTHONPATH"] = root + (os.pathsep + rest if rest else "")
    return env


def current_directory_shadows() -> bool:
    """Whether the current directory holds a `triage` a child could import by mistake where
    PYTHONSAFEPATH does not exist (Python before 3.11)."""
    return sys.version_info < (3, 11) and os.path.exists("triage")
