"""The `triage core` command that analyses a swept core on this machine as the sweep did.

What the dataset row stores of the analysis, and what the command takes from it:

* `report.executable` is always set, but only an executable the analysis was *given* (the
  fleet's `executable`, `report.executable_source == "argument"`) is passed: one found in the
  core is found again by `triage core`, and naming it would make it a given one.
* `report.library_search_path` is every directory the analysis searched by file name: the
  fleet's `lib_search_path` and each of its `lib_search_root`s expanded into the directories
  under it that hold libraries. The roots themselves are not stored, and a root is more than
  its directories: a sysroot (ROOT + the file's original path), which is how a distribution's
  `/usr/bin/python3.X` is found at all, and where separate debug files and sources are looked
  for. So when `report.libraries` shows a mapped file found at ROOT + its original path, the
  command passes `--lib-search-root ROOT` (whose expansion gives the same directories);
  otherwise the searched directories as `--lib-search-path`. `triage core` takes one root or
  one path, not both: a fleet configured with both is reproduced by its root.
* The core is the row's path when it is local; a core in an object store is named by its
  file name, the copy one downloads to run the command.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from triage.pipeline.sources import local_path_of


def core_argument(url: str) -> str:
    """The core as `triage core` reads it: a local path, else the object's file name."""
    local = local_path_of(url)
    return local if local is not None else url.rstrip("/").rsplit("/", 1)[-1]


def sysroot(libraries: Sequence[dict[str, Any]]) -> str | None:
    """The root under which the analysis found a mapped file at its original path (the first
    such file, in the core's order), or None when every file was found elsewhere or not at
    all."""
    for library in libraries:
        original, found = library.get("path") or "", library.get("found_path") or ""
        if original.startswith("/") and found != original and found.endswith(original):
            return found[: -len(original)]
    return None


def reproduce_command(
    url: str,
    executable: str | None,
    executable_source: str | None,
    library_search_path: Sequence[str],
    libraries: Sequence[dict[str, Any]],
) -> str:
    """`triage core CORE [EXECUTABLE] [--lib-search-root ROOT | --lib-search-path A:B]`,
    quoted for a POSIX shell, from the stored report's fields of those names."""
    args = ["triage", "core", core_argument(url)]
    if executable and executable_source == "argument":
        args.append(executable)
    root = sysroot(libraries)
    if root:
        args += ["--lib-search-root", root]
    elif library_search_path:
        args += ["--lib-search-path", ":".join(library_search_path)]
    return shlex.join(args)
