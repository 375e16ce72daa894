"""The pipeline configuration: one TOML file with sources, output, execution and fleets.

Validated by pydantic; every problem is reported as one line naming the file, the key and
what is wrong.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from triage.sizes import parse_size


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Fleet(Model):
    """A group of machines whose cores share libraries: matched by URL pattern."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The fleet's name: the dataset's `fleet` partition and the `--fleet` filters'."""
    match: list[str] = Field(default_factory=lambda: ["*"])
    """fnmatch patterns over the core's URL (or absolute path); the first fleet that matches
    wins."""
    lib_search_root: list[str] = Field(default_factory=list)
    """Sysroots / directories searched recursively for the fleet's libraries, in order."""
    lib_search_path: list[str] = Field(default_factory=list)
    """Directories searched by file name, in order (used when no root is given)."""
    executable: str | None = None
    """The interpreter binary to use for every core of this fleet (path on the workers)."""
    signature_frames: int = Field(default=5, ge=1, le=50)
    """How many meaningful frames make a crash signature."""
    signature_skip: list[str] = Field(default_factory=list)
    """Extra fnmatch patterns of frames to leave out of signatures (`module:qualname` for
    Python frames, `library!function` for native ones; docs/signatures.md)."""
    signature_skip_test_runners: bool = True
    """Leave test runners' frames (pytest, pluggy, unittest) out of signatures."""
    native_stacks: bool = False
    """Unwind every thread's native stack, as `triage core --native` (slower); by default
    only the crashed thread's, which its signature and report need."""

    def matches(self, url: str) -> bool:
        return any(fnmatch.fnmatchcase(url, pattern) for pattern in self.match)

    @field_validator("match")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('needs at least one pattern (use ["*"] to match everything)')
        return value


DEFAULT_FLEET = Fleet(name="default")


class Execution(Model):
    """Where and how the analyses run."""

    scheduler: str | None = None
    """Address of an existing Dask scheduler (tcp://HOST:PORT); None: an embedded cluster."""
    workers: int = Field(default=2, ge=1, le=1024)
    """Worker processes of the embedded cluster (one thread each)."""
    time_limit: float = Field(default=300.0, gt=0)
    """Seconds one core may take before it becomes a `timeout` row."""
    memory_limit_mb: int = Field(default=1024, ge=64)
    """Heap (not mapped core file) one analysis may use before it becomes a
    `memory_limit` row."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """Tasks submitted but not finished at once (default: 8 per worker)."""
    retries: int = Field(default=2, ge=0, le=10)
    """Times a task is retried when its worker dies."""
    max_core_size: str | None = None
    """Largest core, once decompressed, an analysis takes (`20G`, `512M`), as `triage core
    --max-core-size`: a bigger one becomes a `core_too_large` row. Decompression is bounded
    by the free space of the workers' temporary directory in any case."""

    @field_validator("max_core_size")
    @classmethod
    def _a_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)  # ValueError says what is expected
        return value

    def max_core_bytes(self) -> int | None:
        return parse_size(self.max_core_size) if self.max_core_size else None

    wait_for_workers: float = Field(default=60.0, gt=0)
    """Seconds an existing scheduler may be without workers before the sweep gives up."""


class Output(Model):
    """Where the Parquet dataset goes."""

    dataset: str
    """The dataset's directory or fsspec URL (`s3://bucket/crashes`); made if missing."""
    batch_size: int = Field(default=500, ge=1)
    """Rows held in memory before they are written: each Parquet file holds at most this
    many (smaller: less memory, more files)."""


class SweepConfig(Model):
    """A whole pipeline: what to sweep, where to write, how to run, which fleets."""

    sources: list[str] = Field(default_factory=list)
    """Directories and fsspec URLs (`s3://bucket/prefix`) searched recursively for cores."""
    output: Output | None = None
    """Where the rows go (`--output` on the command line sets `output.dataset`)."""
    execution: Execution = Field(default_factory=Execution)
    """The cluster and the limits of each analysis."""
    storage_options: dict[str, Any] = Field(default_factory=dict)
    """fsspec storage options for sources and output (e.g. client_kwargs.endpoint_url)."""
    fleets: list[Fleet] = Field(default_factory=list)
    """The fleets, tried in order; a core no fleet matches belongs to `default`."""

    @field_validator("fleets")
    @classmethod
    def _unique_names(cls, fleets: list[Fleet]) -> list[Fleet]:
        names = [f.name for f in fleets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fleet names must be unique; repeated: {', '.join(dupes)}")
        return fleets

    def fleet_for(self, url: str) -> Fleet:
        for fleet in self.fleets:
            if fleet.matches(url):
                return fleet
        return DEFAULT_FLEET


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a TOML configuration; any problem raises ConfigError (one line)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return validate_config(raw, str(path))


def validate_config(raw: dict[str, Any], origin: str = "configuration") -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    """pydantic's errors as `key.path: problem; ...` on one line."""
    parts = []
    for err in exc.errors():
        loc = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
            for i, p in enumerate(err["loc"])
        )
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        parts.append(f"{loc or 'top level'}: {msg}")
    return "; ".join(parts)
