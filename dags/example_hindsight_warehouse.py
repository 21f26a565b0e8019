"""Warehouse refresh drives Hindsight: when the deals table is reloaded, push every contact's context.

``example_warehouse_load`` stands in for your warehouse load (dbt, Fivetran, a COPY job): it
rewrites a SQLite ``deals`` table and updates the ``warehouse_deals`` asset. The refresh DAG is
scheduled on that asset and streams the rows to Hindsight with ``SqlToHindsightOperator``. Point
``WAREHOUSE_CONN_ID`` at Postgres, Snowflake or BigQuery and change the SQL: nothing else changes.

The refresh keeps a sync ledger in the same database (``ledger_conn_id``), so each run sends only the
rows that changed since the last good run; trigger it with ``{"full_refresh": true}`` to resend all.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import Asset, dag, task

from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

WAREHOUSE_CONN_ID = "hindsight_example_warehouse"
WAREHOUSE_DEALS = Asset("warehouse://analytics/deals")

DEALS = [
    # interview_request_id, contact, title, stage, competitor, amount, notes
    (6001, "Mia Chen", "VP Sales", "Closed Lost", "Competitor X", 52000, "Chose X for its Salesforce sync."),
    (6002, "Tom Okafor", "CTO", "Closed Won", None, 87000, "Security review took six weeks."),
    (6003, "Lena Fischer", "Head of RevOps", "Closed Lost", "Competitor Y", 23000, "Budget moved to 2027."),
    (6004, "Diego Ruiz", "CFO", "Closed Won", None, 120000, "Asked for annual billing."),
]


@dag(
    dag_id="example_warehouse_load",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hindsight", "example"],
)
def example_warehouse_load() -> None:
    @task(outlets=[WAREHOUSE_DEALS])
    def load_deals() -> int:
        """Rewrite the deals table; the outlet tells Airflow the asset changed."""
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        hook = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID)
        hook.run(
            [
                "DROP TABLE IF EXISTS deals",
                "CREATE TABLE deals (interview_request_id INTEGER PRIMARY KEY, contact_name TEXT, title TEXT, "
                "stage TEXT, competitor TEXT, amount INTEGER, notes TEXT)",
            ]
        )
        hook.insert_rows("deals", DEALS)
        return len(DEALS)

    load_deals()


@dag(
    dag_id="example_hindsight_warehouse_refresh",
    schedule=[WAREHOUSE_DEALS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"full_refresh": False},
    tags=["hindsight", "example"],
)
def example_hindsight_warehouse_refresh() -> None:
    SqlToHindsightOperator(
        task_id="push_contact_context",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql="""
            SELECT interview_request_id, contact_name, title, stage, competitor, amount, notes,
                   'Understand the ' || lower(stage) || ' decision' AS objective
            FROM deals
            WHERE stage IN (:won, :lost)
        """,
        parameters={"won": "Closed Won", "lost": "Closed Lost"},
        context_columns=["title", "stage", "competitor", "amount", "notes"],
        ledger_conn_id=WAREHOUSE_CONN_ID,  # change-only sync: the ledger table lives beside the deals
        full_refresh="{{ params.full_refresh }}",
        max_failures=0,
    )


example_warehouse_load()
example_hindsight_warehouse_refresh()
