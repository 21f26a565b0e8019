"""Test DAG for change-only sync (tests/sync): the example's set-up, the rows and the ledger in one database.

Trigger it with ``{"full_refresh": true}`` to resend every row; the param reaches the operator
through a template, as in the example warehouse DAG.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import dag

from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

SYNC_WAREHOUSE_CONN_ID = "sync_warehouse"


@dag(
    dag_id="sync_warehouse_refresh",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"full_refresh": False},
)
def sync_warehouse_refresh() -> None:
    SqlToHindsightOperator(
        task_id="push_changes",
        sql_conn_id=SYNC_WAREHOUSE_CONN_ID,
        sql="SELECT interview_request_id, contact_name, title, notes FROM enrichment ORDER BY interview_request_id",
        context_columns=["title", "notes"],
        ledger_conn_id=SYNC_WAREHOUSE_CONN_ID,
        full_refresh="{{ params.full_refresh }}",
    )


sync_warehouse_refresh()
