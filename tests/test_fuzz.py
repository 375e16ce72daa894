"""Property-based fuzzing of the engine on mutated real cores (see tests/fuzzing.py).

Bases: a gcore snapshot and a kernel crash core (SIGSEGV in C) of one interpreter, with
threads; a 2.7 snapshot when the machine has 2.7; a kernel crash core of the sid sysroot's
3.14 (its tagged stack references, read with --lib-search-root); a zstd archive of the
crash core. Each base
gets its share of `TRIAGE_FUZZ_EXAMPLES` mutants (default 2000 in all, about a minute),
chosen deterministically so that a failure in `make test` reproduces; `make fuzz`
(scripts/fuzz.py) runs many more with fresh seeds, keeps its examples database and writes
every failing mutant to a reproducer directory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import corefactory
import fuzzing
import pytest
import sysroot
from hypothesis import HealthCheck, given, settings

TOTAL = int(os.environ.get("TRIAGE_FUZZ_EXAMPLES", "2000"))
REPRODUCERS = os.environ.get("TRIAGE_FUZZ_REPRODUCERS")
DATABASE = os.environ.get("TRIAGE_FUZZ_DATABASE")

#: How the examples are shared between the bases; each base's share is split evenly
#: between the mutation classes that apply to it.
SHARES = {"gcore": 0.3, "crash": 0.3, "py27": 0.1, "sid3.14": 0.15, "zstd": 0.15}
CLASSES_OF = {
    "gcore": fuzzing.ELF_CLASSES,
    "crash": fuzzing.ELF_CLASSES,
    "py27": fuzzing.ELF_CLASSES,
    "sid3.14": fuzzing.ELF_CLASSES,
    "zstd": ("compressed",),
}

COUNTS: dict[str, Counter] = {}


@pytest.fixture(scope="module")
def bases(cores, preferred_interp, interpreters, tmp_path_factory) -> dict[str, Path]:
    """The base cores by name (those this machine can make)."""
    out: dict[str, Path] = {}
    where = tmp_path_factory.mktemp("fuzz-bases")
    snapshot = cores.gcore(preferred_interp, threads=2)
    crash = cores.crash(preferred_interp, "segv", threads=2)
    out["gcore"] = Path(shutil.copy(snapshot.path, where / "gcore"))
    out["crash"] = Path(shutil.copy(crash.path, where / "crash"))
    out["zstd"] = Path(corefactory.compress(crash.path, "zstd", where / "crash.zst"))
    py27 = next((i for i in interpreters if i.version[:2] == (2, 7)), None)
    if py27 is not None:
        out["py27"] = Path(shutil.copy(cores.gcore(py27, threads=2).path, where / "py27"))
    root, _why = sysroot.available()
    sid = [i for i in sysroot.interpreters() if Path(i.path).name == "python3.14"] if root else []
    if sid:
        out["sid3.14"] = Path(shutil.copy(cores.crash(sid[0], "segv").path, where / "sid3.14"))
    return out


def _options(base: str) -> dict:
    """What the analysis of a base needs besides the core."""
    return {"lib_search_root": sysroot.available()[0]} if base.startswith("sid") else {}


def _settings(examples: int):
    kwargs = {
        "max_examples": examples,
        "deadline": None,
        "suppress_health_check": list(HealthCheck),
        "print_blob": True,
    }
    if DATABASE:
        from hypothesis.database import DirectoryBasedExampleDatabase

        kwargs["database"] = DirectoryBasedExampleDatabase(DATABASE)
    else:  # make test: the same mutants every run, nothing written to the clone
        kwargs.update(database=None, derandomize=True)
    return settings(**kwargs)


def _keep(base: str, shape: fuzzing.Shape, mutation: fuzzing.Mutation, failure: str) -> None:
    """Write a failing mutant and what made it to the reproducer directory, if one is set."""
    if not REPRODUCERS:
        return
    where = Path(REPRODUCERS)
    where.mkdir(parents=True, exist_ok=True)
    name = f"{base}-{abs(hash(mutation.describe())):016x}"
    (where / f"{name}.json").write_text(
        json.dumps({"base": base, "mutation": mutation.to_json(), "failure": failure}, indent=1)
    )
    data = bytearray(shape.data)
    for off, patch in mutation.patches:
        data[off : off + len(patch)] = patch[: max(0, len(data) - off)]
    if mutation.truncate is not None:
        del data[mutation.truncate :]
    (where / f"{name}.core").write_bytes(bytes(data))


_SHAPES: dict[str, fuzzing.Shape] = {}


def _shape(base: str, path: Path) -> fuzzing.Shape:
    if base not in _SHAPES:
        touched = fuzzing.touched_ranges(path, **_options(base)) if base != "zstd" else None
        _SHAPES[base] = fuzzing.shape_of(path, touched)
    return _SHAPES[base]


@pytest.mark.parametrize(
    ("base", "kind"),
    [pytest.param(b, k, id=f"{b}-{k}") for b in SHARES for k in CLASSES_OF[b]],
)
def test_mutants_never_break_the_analysis(
    base: str, kind: str, bases: dict[str, Path], tmp_path: Path
):
    """No traceback, no hang, valid JSON, text that renders, no leftover file: for every
    mutant of every class."""
    if base not in bases:
        pytest.skip(
            "no Python 2.7 on this machine"
            if base == "py27"
            else f"no sid sysroot here: {sysroot.available()[1]}"
        )
    shape = _shape(base, bases[base])
    copy = fuzzing.working_copy(bases[base], tmp_path)
    counts = COUNTS.setdefault(base, Counter())
    failures: list[str] = []

    @_settings(max(1, int(TOTAL * SHARES[base] / len(CLASSES_OF[base]))))
    @given(mutation=fuzzing.mutations(shape, kind))
    def run(mutation: fuzzing.Mutation) -> None:
        with fuzzing.private_tmpdir() as scratch, fuzzing.applied(copy, shape.data, mutation):
            outcome = fuzzing.check(copy, scratch, **_options(base))
        counts[(mutation.kind, outcome.status)] += 1
        if outcome.failure is not None:
            _keep(base, shape, mutation, outcome.failure)
            failures.append(f"{mutation.describe()}: {outcome.failure}")
            raise AssertionError(f"{base} {mutation.describe()}: {outcome.failure}")

    try:
        run()
    finally:
        if copy.parent != tmp_path:
            shutil.rmtree(copy.parent, ignore_errors=True)
        statuses: dict[str, int] = {}
        for (k, status), n in counts.items():
            if k == kind:
                statuses[status] = n
        print(f" {base}/{kind}: " + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
    assert not failures
