"""Test DAG for the landing: scheduled, with a one-off catch-up that a DAG param renders into ``poll_all``."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import dag

from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator

START = datetime(2026, 1, 1)
WAREHOUSE_CONN_ID = "landing_warehouse"


@dag(dag_id="landing_scheduled", schedule=None, start_date=START, catchup=False, params={"catch_up": False})
def landing_scheduled() -> None:
    """Land the ids of ``deals`` on the polling plan; ``catch_up`` fetches every one not completed."""
    HindsightInterviewsToSqlOperator(
        task_id="land",
        sql_conn_id=WAREHOUSE_CONN_ID,
        ids_sql="SELECT interview_request_id FROM deals ORDER BY interview_request_id",
        poll_all="{{ params.catch_up }}",
    )


landing_scheduled()
