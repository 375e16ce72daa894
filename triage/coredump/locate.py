"""Finding, on this machine, the files that were mapped into the dead process."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field

from triage.coredump.images import build_id_of_file

_SHARED_LIB = re.compile(r"\.so(\.[0-9A-Za-z_.-]+)?$")


def is_shared_library_name(name: str) -> bool:
    return bool(_SHARED_LIB.search(name))


@functools.lru_cache(maxsize=64)
def directories_with_libraries(root: str) -> tuple[str, ...]:
    """Every directory under `root` (itself included) holding a shared library, sorted.

    Cached per process: a sweep asks for the same fleet roots for every core."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        if any(is_shared_library_name(n) for n in filenames):
            found.append(dirpath)
    return tuple(sorted(found))


@dataclass
class LibrarySearch:
    """Where to look for mapped files: sysroots (ROOT + original path) and a name search path."""

    roots: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    _names: dict[str, list[str]] | None = field(default=None, repr=False)

    @classmethod
    def from_options(
        cls, search_path: str | list[str] | None, search_root: str | list[str] | None
    ) -> LibrarySearch:
        """From --lib-search-path (colon list) and --lib-search-root; a fleet may give lists
        of both: roots first, in order, then the path."""
        roots = [search_root] if isinstance(search_root, str) else list(search_root or [])
        paths = search_path.split(":") if isinstance(search_path, str) else search_path or []
        out = cls(roots=[os.path.abspath(r) for r in roots if r])
        for root in out.roots:
            out.path.extend(directories_with_libraries(root))
        out.path.extend(os.path.abspath(p) for p in paths if p)
        return out

    def candidates(self, original: str) -> list[str]:
        """Existing files that may be `original`, in the order of preference."""
        out: list[str] = []
        if os.path.isfile(original):
            out.append(original)
        for root in self.roots:
            p = os.path.join(root, original.lstrip("/"))
            if os.path.isfile(p):
                out.append(p)
        out.extend(self._by_name(os.path.basename(original)))
        return list(dict.fromkeys(out))

    def _by_name(self, name: str) -> list[str]:
        if self._names is None:
            self._names = {}
            for d in self.path:
                try:
                    entries = sorted(os.listdir(d))
                except OSError:
                    continue
                for n in entries:
                    self._names.setdefault(n, []).append(os.path.join(d, n))
        return [p for p in self._names.get(name, []) if os.path.isfile(p)]


@dataclass(frozen=True, slots=True)
class Located:
    """Where a mapped file was found, and whether it is the very build that was loaded."""

    path: str
    found_path: str | None
    found_build_id: str | None
    build_id_matches: bool | None


def locate(original: str, core_build_id: str | None, search: LibrarySearch) -> Located:
    """Pick the candidate whose build-id equals the core's, else the first candidate."""
    candidates = search.candidates(original)
    if not candidates:
        return Located(original, None, None, None)
    ids = []
    for cand in candidates:
        bid = build_id_of_file(cand)
        if core_build_id is not None and bid == core_build_id:
            return Located(original, cand, bid, True)
        ids.append(bid)
    matches = None if core_build_id is None or ids[0] is None else False
    return Located(original, candidates[0], ids[0], matches)
