"""Test DAGs for the bulk operator and the SQL transfer; each reads its inputs from ``dag_run.conf``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

START = datetime(2026, 1, 1)
WAREHOUSE_CONN_ID = "bulk_warehouse"


def _conf() -> dict[str, Any]:
    return dict(get_current_context()["dag_run"].conf or {})


@dag(dag_id="bulk_update_from_task", schedule=None, start_date=START, catchup=False)
def bulk_update_from_task() -> None:
    """Rows from an upstream task (an XComArg); one failed row is tolerated, two fail the task."""

    @task
    def rows() -> list[dict[str, Any]]:
        return list(_conf()["rows"])

    HindsightBulkUpdateInterviewsOperator(task_id="update", updates=rows(), max_failures=1)


@dag(dag_id="bulk_sql_to_hindsight", schedule=None, start_date=START, catchup=False)
def bulk_sql_to_hindsight() -> None:
    """Load ``conf["contacts"]`` into the warehouse, then send the ``conf["segment"]`` rows."""

    @task
    def load() -> int:
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        contacts = _conf()["contacts"]
        hook = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID)
        hook.run(
            [
                "DROP TABLE IF EXISTS contacts",
                "CREATE TABLE contacts (id INTEGER, name TEXT, segment TEXT, title TEXT, seats INTEGER)",
            ]
        )
        hook.insert_rows("contacts", [tuple(contact) for contact in contacts])
        return len(contacts)

    load() >> SqlToHindsightOperator(
        task_id="transfer",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql=(
            "SELECT id AS interview_request_id, name AS contact_name, title, seats FROM contacts "
            "WHERE segment = '{{ dag_run.conf['segment'] }}' AND seats >= :min_seats ORDER BY id"
        ),
        parameters={"min_seats": "{{ dag_run.conf['min_seats'] }}"},
        context_columns=["title", "seats"],
        batch_size=2,
    )


bulk_update_from_task()
bulk_sql_to_hindsight()
