"""DuckDB over the sweep dataset (local or any fsspec URL), one row per core.

Rows are deduplicated by core: a core analysed again (`--reprocess`) counts once, with its
latest analysis, and keeps the sweep that first saw it (`first_sweep_id`,
`first_sweep_date`). Files written by older versions of triage may lack newer columns; they are
read with `union_by_name` so that such columns come back NULL.
"""

from __future__ import annotations

from typing import Any

from triage.pipeline.schema import column
from triage.pipeline.sink import filesystem

CORE_ID, SWEEP_ID, SWEEP_DATE = column("core_id"), column("sweep_id"), column("sweep_date")

#: The columns LATEST_ROWS adds to every row: the sweep that first saw the core.
FIRST_SWEEP_ID, FIRST_SWEEP_DATE = "first_sweep_id", "first_sweep_date"

LATEST_ROWS = f"""
    SELECT * EXCLUDE (rn) FROM (
        SELECT *,
               row_number() OVER (PARTITION BY {CORE_ID} ORDER BY {SWEEP_ID} DESC) AS rn,
               min({SWEEP_ID}) OVER (PARTITION BY {CORE_ID}) AS {FIRST_SWEEP_ID},
               min({SWEEP_DATE}) OVER (PARTITION BY {CORE_ID}) AS {FIRST_SWEEP_DATE}
        FROM read_parquet({{source}}, hive_partitioning = true, hive_types_autocast = false,
                          union_by_name = true)
    ) WHERE rn = 1
"""


def connect(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """A DuckDB connection that can read the dataset at `url`, and the SQL of its rows.

    Remote datasets are read through fsspec (registered in DuckDB), so any store fsspec
    reaches works without DuckDB extensions."""
    import duckdb

    con = duckdb.connect()
    fs, root = filesystem(url, storage_options)
    if not fs.exists(root):
        raise FileNotFoundError(f"dataset {url} does not exist")
    if not fs.glob(root.rstrip("/") + "/**/*.parquet"):
        raise FileNotFoundError(f"dataset {url} holds no Parquet files yet")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        pattern = root.rstrip("/") + "/**/*.parquet"
    else:
        con.register_filesystem(fs)
        pattern = f"{protocol}://{root.rstrip('/')}/**/*.parquet"
    source = "'" + pattern.replace("'", "''") + "'"
    return con, LATEST_ROWS.format(source=source)
