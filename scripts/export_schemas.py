"""Write the schemas of the report models to schemas/; rerun after changing triage/report.py.

    python scripts/export_schemas.py            # (re)write schemas/*
    python scripts/export_schemas.py --check    # exit 1, naming the files, if schemas/ is stale

Files (the output is deterministic: the same models always give the same bytes):
    schemas/sweep-record.schema.json   JSON Schema of SweepRecord (one row of the sweep dataset)
    schemas/core-report.schema.json    JSON Schema of CoreReport (`triage core --format json`)
    schemas/sweep-record.arrow.txt     the Arrow schema of the Parquet rows, as pyarrow prints it

tests/test_schema.py fails when these differ from what this script produces.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = ROOT / "schemas"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _json(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """File name (in schemas/) -> the text it must hold for the models as they are now."""
    from triage.pipeline.schema import arrow_schema, sweep_json_schema
    from triage.report import adapter

    return {
        "sweep-record.schema.json": _json(sweep_json_schema()),
        "core-report.schema.json": _json(adapter().json_schema()),
        "sweep-record.arrow.txt": arrow_schema().to_string(show_field_metadata=False) + "\n",
    }


def stale(directory: Path = SCHEMAS_DIR) -> list[str]:
    """The files of `directory` that are missing or differ from `render()`."""
    result = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            result.append(name)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument("--dir", type=Path, default=SCHEMAS_DIR, help="default: schemas/")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.dir)
        for name in names:
            print(f"{args.dir / name} is stale: run `python scripts/export_schemas.py`")
        return 1 if names else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.dir / name).write_text(text, encoding="utf-8")
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
