"""DuckDB over the sweep dataset (local or any fsspec URL), one row per core.

Rows are deduplicated by core: a core analysed again (`--reprocess`) counts once, with its
latest analysis, and keeps the sweep that first saw it (`first_sweep_id`,
`first_sweep_date`). Files written by older versions of triage may lack newer columns; they are
read with `union_by_name` so that such columns come back NULL.
"""

from __future__ import annotations

from typing import Any

from triage.pipeline.sink import filesystem

LATEST_ROWS = """
    SELECT * EXCLUDE (rn) FROM (
        SELECT *,
               row_number() OVER (PARTITION BY core_id ORDER BY sweep_id DESC) AS rn,
               min(sweep_id) OVER (PARTITION BY core_id) AS first_sweep_id,
               min(sweep_date) OVER (PARTITION BY core_id) AS first_sweep_date
        FROM read_parquet({source}, hive_partitioning = true, hive_types_autocast = false,
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
