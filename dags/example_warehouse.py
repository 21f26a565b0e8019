"""The example DAGs' stand-in warehouse: one SQLite connection, and a load that (re)fills a table.

Not a DAG: the create and lifecycle examples import it (Airflow puts the DAGs folder on the import
path), so copy it beside them. In your own DAGs, your warehouse load (dbt, Fivetran, a ``COPY``
job) takes its place, and ``WAREHOUSE_CONN_ID`` names your warehouse's connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WAREHOUSE_CONN_ID = "hindsight_example_warehouse"
"""A SQLite connection: ``AIRFLOW_CONN_HINDSIGHT_EXAMPLE_WAREHOUSE='{"conn_type": "sqlite", "host": "/tmp/w.db"}'``."""


def load_table(table: str, columns: str, rows: Sequence[Sequence[Any]]) -> int:
    """Create ``table`` (``columns``: its SQL column list, with a primary key) if needed and upsert ``rows``.

    Returns how many rows were loaded. Run it from a task: it connects when called, not when the
    DAG file is parsed.
    """
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    hook = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID)
    hook.run(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    hook.insert_rows(table, rows, replace=True)
    return len(rows)
