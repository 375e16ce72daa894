"""The distribution: a wheel and an sdist that pass `twine check`, and a base install that is
the engine alone: light, able to read a real core, without the pipeline's libraries, whose
commands then say in one line what to install.

Everything is built and installed offline from the wheels `make test` fetches into
~/.cache/triage/wheels (TRIAGE_WHEELS), so the test talks to no index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import corefactory
import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELS = Path(os.environ.get("TRIAGE_WHEELS", Path.home() / ".cache" / "triage" / "wheels"))
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELS), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
#: What the base install may weigh, its dependencies and the venv's own pip included.
BASE_INSTALL_LIMIT = 120 << 20
PIPELINE_MODULES = ("dask", "distributed", "pyarrow", "duckdb", "bokeh", "fsspec", "s3fs", "rich")


def _run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE, **kwargs.pop("env", {})}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=600, **kwargs
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not list(WHEELS.glob("pyelftools-*.whl")) or not list(WHEELS.glob("setuptools-*.whl")):
        pytest.skip(f"the base install's wheels are not in {WHEELS}: make test fetches them")
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", out, ROOT])
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def base_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("base") / "venv"
    made = _run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    wheel = next(dist.glob("crash_triage-*.whl"))
    installed = _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_wheel_and_sdist_pass_twine_check(dist: Path):
    files = sorted(p.name for p in dist.iterdir())
    assert [f.split("-")[0] for f in files] == ["crash_triage", "crash_triage"]
    checked = _run([sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir()])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_base_install_is_the_engine_alone(base_venv: Path):
    size = _tree_size(base_venv)
    assert size < BASE_INSTALL_LIMIT, f"the base install weighs {size / 1e6:.0f} MB"
    python = base_venv / "bin" / "python"
    for module in PIPELINE_MODULES:
        found = _run([python, "-c", f"import {module}"])
        assert found.returncode == 1 and "ModuleNotFoundError" in found.stderr, module


def test_base_install_reads_a_real_core(base_venv: Path, cores, preferred_interp):
    case = cores.gcore(preferred_interp)
    done = _run([base_venv / "bin" / "triage", "core", case.path])
    assert done.returncode == 0, done.stderr
    shown = [
        line.split(" in ")[-1]
        for line in done.stdout.splitlines()
        if line.strip().startswith("(Python) File") and f"line {case.tids[0]}" not in line
    ]
    expected = [function for function, _line, _source in corefactory.main_stack()]
    assert shown[: len(expected)] == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "CORES", "--output", "OUT"],
        ["groups", "OUT"],
        ["dashboard", "OUT", "-o", "OUT/page.html"],
        ["regroup", "OUT"],
    ],
    ids=lambda argv: argv[0],
)
def test_pipeline_commands_say_what_to_install(base_venv: Path, tmp_path: Path, argv: list):
    (tmp_path / "CORES").mkdir()
    (tmp_path / "OUT").mkdir()
    done = _run([base_venv / "bin" / "triage", *argv], cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"triage: error: triage {argv[0]} needs the sweep extra (")
    assert lines[0].endswith("is not installed): pip install 'crash-triage[sweep]'")


def test_base_install_triages_a_ci_job(base_venv: Path, cores, preferred_interp, tmp_path: Path):
    """`triage ci` without a dataset baseline is the engine's: it works without the extra."""
    case = cores.crash(preferred_interp, "segv")
    job = tmp_path / "cores"
    job.mkdir()
    os.link(case.path, job / "core")
    done = _run([base_venv / "bin" / "triage", "ci", job, "--fail-on", "any", "--no-color"])
    assert done.returncode == 1, done.stderr
    assert "SIGSEGV" in done.stdout and "third_func" in done.stdout
