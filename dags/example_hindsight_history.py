"""Alert on the run history: fail a check when the last day's runs left too many rows that did not succeed.

With the Hindsight connection's extra ``history_conn_id`` (here the example warehouse), every run writes
its row to ``hindsight_runs`` and each row that did not succeed to ``hindsight_runs_rows``. This DAG
sends a few updates (two of them malformed, within ``max_failures``), then a common-sql
``SQLCheckOperator`` fails when the rows that did not succeed since a day ago pass
``params.max_failed_rows``: the task fails, and Airflow's alerting (e-mail, a callback, Slack) does the
rest. In your own deployment the check runs on its own schedule over every DAG's history.

It imports the stand-in warehouse's connection id from ``example_warehouse.py``: copy that file beside it.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task
from airflow.providers.common.sql.operators.sql import SQLCheckOperator
from example_warehouse import WAREHOUSE_CONN_ID

from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator

FAILED_ROWS_SINCE = """
SELECT COUNT(*) <= {{ params.max_failed_rows }}
FROM hindsight_runs_rows r
JOIN hindsight_runs h ON h.run_uid = r.run_uid
WHERE h.started_at >= '{{ ti.xcom_pull(task_ids="a_day_ago") }}'
"""


@dag(
    dag_id="example_hindsight_history_alert",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    params={"max_failed_rows": 10},
    tags=["hindsight", "example"],
)
def example_hindsight_history_alert() -> None:
    @task
    def renewals() -> list[dict[str, Any]]:
        """Made-up rows; the last two are malformed and fail before any request."""
        rows: list[dict[str, Any]] = [
            {"interview_request_id": 8000 + n, "objective": "Learn what drove the renewal decision."}
            for n in range(1, 21)
        ]
        return [*rows, {"interview_request_id": "not an id"}, {"interview_request_id": -1}]

    @task
    def a_day_ago() -> str:
        """A day before now, in UTC, as the history's ``started_at`` compares (SQLite and PostgreSQL alike)."""
        moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    update = HindsightBulkUpdateInterviewsOperator(task_id="update_interviews", updates=renewals(), max_failures=0.1)
    check = SQLCheckOperator(task_id="alert_on_failed_rows", conn_id=WAREHOUSE_CONN_ID, sql=FAILED_ROWS_SINCE)
    update >> a_day_ago() >> check


example_hindsight_history_alert()
