"""The documentation site: generated pages current, every configuration key explained, and
`mkdocs build --strict` clean (broken links, pages missing from the navigation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gen_docs  # noqa: E402


def test_generated_pages_are_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_configuration_key_has_type_default_and_meaning():
    from triage.pipeline.config import Execution, Fleet, Output, SweepConfig

    page = gen_docs.configuration_page()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    keys = {line.split("`")[1] for line in rows}
    sections = (("", SweepConfig), ("output.", Output), ("execution.", Execution))
    sections += (("fleets[].", Fleet),)
    expected = {f"{p}{name}" for p, model in sections for name in model.model_fields}
    assert keys == expected
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), line


def test_dataset_page_lists_every_arrow_column():
    """Each leaf column of the Arrow schema appears in the dataset page, by its path."""
    import pyarrow as pa

    from triage.pipeline.schema import arrow_schema

    def leaves(field, prefix):
        kind = field.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            kind = kind.value_type
            prefix = f"{prefix}{field.name}[]."
        else:
            prefix = f"{prefix}{field.name}."
        if pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                yield from leaves(kind.field(i), prefix)
        else:
            yield prefix.rstrip(".").removesuffix("[]")

    page = gen_docs.dataset_page()
    missing = [
        path
        for field in arrow_schema()
        for path in leaves(field, "")
        if f"| `{path}` |" not in page
    ]
    assert missing == []


def test_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reference" / "configuration" / "index.html").exists()
    assert (tmp_path / "ci" / "index.html").exists()
    assert (tmp_path / "deployment" / "index.html").exists()
