"""Shared fixtures: the interpreters on this machine, real cores made once per session, and
helpers that run the `triage` command the way a user does.

Fixtures
    interpreters      session: list of every corefactory.Interpreter found (may be empty)
    scenario_cores    session: ScenarioCores, cores of tests/programs/scenarios.py by
                      interpreter and mode (multi, crash, subinterp), made once
    interpreter       one Interpreter; a test asking for it runs once per interpreter
                      (ids py2.7.18 ... py3.13.0, debian3.11)
    cores             session: CoreCache with .gcore(interp) and .crash(interp, kind), each made
                      once per session (CoreUnavailable -> pytest.skip with the reason)
    gcore_case        the on-demand core (2 worker threads) of `interpreter`
    preferred_interp  one shared-build interpreter (3.12, else 3.8, else any shared one)
    run_triage        run_triage(*args, env=None, timeout=...) -> (returncode, stdout, stderr)
    triage_json       triage_json(core, *args, expect_rc=0) -> the parsed `--format json` report
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corefactory
import stackcases
import sysroot
from corefactory import CoreCase, CoreUnavailable, Interpreter

#: Worker threads in every cached core (so each core has 3 threads).
CORE_THREADS = 2

#: Environment every triage run starts from: no colour, no stray Python settings.
_BASE_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "NO_COLOR", "FORCE_COLOR")


def _interpreter_params() -> list:
    found = corefactory.find_interpreters(sysroot=True)
    if not found:
        return [
            pytest.param(
                None,
                id="no-interpreter",
                marks=pytest.mark.skip(
                    reason="no Python interpreter found "
                    "(~/.pyenv/versions/*/bin, /usr/bin/python3*)"
                ),
            )
        ]
    params = [pytest.param(interp, id=interp.id) for interp in found]
    root, why = sysroot.available()
    if root is None:
        params.append(pytest.param(None, id="sid", marks=pytest.mark.skip(reason=str(why))))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "interpreter" in metafunc.fixturenames:
        metafunc.parametrize("interpreter", _interpreter_params(), scope="session")


#: Modules whose every test is slow: long property runs, builds of the distribution, sweeps
#: on real Dask clusters, datasets and object stores (the read side's and S3's tests), the
#: deployment's validation. `make test-fast` is the engine's, end to end on one interpreter.
_SLOW_MODULES = (
    "test_fuzz.py",
    "test_install.py",
    "test_sweep.py",
    "test_sweep_ux.py",
    "test_groups_ci.py",
    "test_sources.py",
    "test_deploy.py",
)
#: Tests that loop over every interpreter themselves, or derive layouts from DWARF again.
_SLOW_NAMES = ("across_interpreters", "every_python", "every_interpreter", "test_no_drift")
#: Fixtures that make cores with gdb's gcore.
_GCORE_FIXTURES = {"gcore_case", "scenario_cores"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it needs (see pyproject's markers): `make test-fast` selects
    on them. A case parametrized by interpreter is slow on every interpreter but the
    preferred one, so that day-to-day runs still cover one interpreter end to end."""
    interps = [i for i in corefactory.find_interpreters() if i.shared]
    preferred = corefactory.preferred_interpreter(interps, [(3, 12), (3, 8)])
    for item in items:
        params = getattr(item, "callspec", None)
        interp = params.params.get("interpreter") if params is not None else None
        names = set(getattr(item, "fixturenames", ()))
        if item.path.name in _SLOW_MODULES or any(n in item.name for n in _SLOW_NAMES):
            item.add_marker(pytest.mark.slow)
        if isinstance(interp, Interpreter) and (preferred is None or interp.id != preferred.id):
            item.add_marker(pytest.mark.slow)
        if (isinstance(interp, Interpreter) and interp.sysroot is not None) or (
            "sid_cores" in names
        ):
            item.add_marker(pytest.mark.needs_sysroot)
        if item.get_closest_marker("skipif") is not None and any(
            "chromium" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")
        ):
            item.add_marker(pytest.mark.needs_chromium)
        if names & _GCORE_FIXTURES:
            item.add_marker(pytest.mark.needs_gdb)


@pytest.fixture(scope="session")
def interpreters() -> list[Interpreter]:
    return corefactory.find_interpreters(sysroot=True)


@pytest.fixture(scope="session")
def preferred_interp(interpreters: list[Interpreter]) -> Interpreter:
    """A shared-build interpreter for tests that need just one (3.12, else 3.8, else any)."""
    interp = corefactory.preferred_interpreter(interpreters, [(3, 12), (3, 8)])
    if interp is None:
        interp = next((i for i in interpreters if i.shared), None)
    if interp is None:
        pytest.skip("no shared-build (libpython) Python interpreter on this machine")
    return interp


class CoreCache:
    """Cores made at most once per session; a failure to make one is remembered as a skip."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cases: dict[tuple, CoreCase | CoreUnavailable] = {}

    def _get(self, key: tuple, make) -> CoreCase:
        if key not in self._cases:
            try:
                self._cases[key] = make()
            except CoreUnavailable as exc:
                self._cases[key] = exc
        case = self._cases[key]
        if isinstance(case, CoreUnavailable):
            pytest.skip(str(case))
        return case

    def gcore(self, interp: Interpreter, threads: int = CORE_THREADS) -> CoreCase:
        key = ("gcore", interp.id, threads)
        directory = self.root / f"gcore-{interp.id}-{threads}"
        return self._get(key, lambda: corefactory.make_gcore(interp, directory, threads=threads))

    def crash(self, interp: Interpreter, kind: str, threads: int = CORE_THREADS) -> CoreCase:
        key = (kind, interp.id, threads)
        directory = self.root / f"crash-{interp.id}-{kind}-{threads}"
        return self._get(
            key, lambda: corefactory.make_crash(interp, directory, kind, threads=threads)
        )

    def case(self, interp: Interpreter, kind: str, threads: int = CORE_THREADS) -> CoreCase:
        """gcore or any crash kind by name."""
        if kind == "gcore":
            return self.gcore(interp, threads)
        return self.crash(interp, kind, threads)


@pytest.fixture(scope="session")
def cores(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cores")
    yield CoreCache(root)
    # Cores are tens of megabytes each; do not leave a gigabyte in pytest's kept temp dirs.
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def gcore_case(cores: CoreCache, interpreter: Interpreter) -> CoreCase:
    return cores.gcore(interpreter)


def triage_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """os.environ without colour or Python overrides, updated by `env` (None deletes a name)."""
    base = {k: v for k, v in os.environ.items() if k not in _BASE_ENV_DROP}
    for name, value in (env or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def _run_triage(
    *args: str, env: dict[str, str | None] | None = None, timeout: float = 300
) -> tuple[int, str, str]:
    argv = [str(a) for a in args]
    if len(argv) > 1 and argv[0] in ("core", "ci") and "--lib-search-root" not in argv:
        root = sysroot.root_of(argv[1])  # a core of the sid sysroot: read it from the host
        if root is not None:
            argv[2:2] = ["--lib-search-root", root]
    result = subprocess.run(
        [sys.executable, "-m", "triage", *argv],
        capture_output=True,
        text=True,
        env=triage_env(env),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="session")
def run_triage():
    """run_triage(*args, env=None) -> (returncode, stdout, stderr) of `python -m triage ARGS`."""
    return _run_triage


@pytest.fixture(scope="session")
def triage_json():
    """triage_json(core, *args, expect_rc=0) -> the parsed `triage core CORE ARGS --format json`.

    Results are cached per session by arguments (cores do not change once made).
    """
    cache: dict[tuple, dict] = {}

    def run(core: str | os.PathLike, *args: str, expect_rc: int = 0) -> dict:
        key = (str(core), tuple(map(str, args)), expect_rc)
        if key not in cache:
            rc, out, err = _run_triage("core", str(core), *args, "--format", "json")
            assert "Traceback" not in out + err, err
            assert rc == expect_rc, f"exit {rc}, expected {expect_rc}; stderr:\n{err}"
            cache[key] = json.loads(out)
        return cache[key]

    return run


class SidCores:
    """Kernel cores of the sid sysroot's interpreters, by file name (python3.14d...)."""

    def __init__(self, cores: CoreCache) -> None:
        self.cores = cores

    def interpreter(self, name: str) -> Interpreter:
        root, why = sysroot.available()
        if root is None:
            pytest.skip(str(why))
        found = [i for i in sysroot.interpreters() if Path(i.path).name == name]
        if not found:
            pytest.skip(f"the sid sysroot has no {name}")
        return found[0]

    def crash(self, name: str, kind: str = "segv", threads: int = CORE_THREADS) -> CoreCase:
        return self.cores.crash(self.interpreter(name), kind, threads)


@pytest.fixture(scope="session")
def sid_cores(cores: CoreCache) -> SidCores:
    return SidCores(cores)


@pytest.fixture(scope="session")
def scenario_cores(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("stacks")
    yield stackcases.ScenarioCores(root)
    shutil.rmtree(root, ignore_errors=True)  # ~25 MB per core
