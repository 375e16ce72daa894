"""Print the base install's requirements (pyproject's `dependencies`) separated by spaces,
for `pip download` in the Makefile (none of them has a space in it)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the sweep extra brings tomli there
    import tomli as tomllib

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
requirements = project["project"]["dependencies"]
assert not any(" " in req for req in requirements), requirements
print(" ".join(requirements))
