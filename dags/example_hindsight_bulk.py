"""Thousands of interviews in one task, at the plan's pace, with every row accounted for.

The bulk operator keeps the API busy up to the plan's rate limit and not past it, reports each
row as succeeded or failed with a reason, and fails the task only past ``max_failures``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator


@dag(
    dag_id="example_hindsight_bulk",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hindsight", "example"],
)
def example_hindsight_bulk() -> None:
    @task
    def contact_updates() -> list[dict[str, Any]]:
        """In a real DAG these rows come from the warehouse; here, 50 made-up accounts."""
        return [
            {
                "interview_request_id": 5000 + n,
                "contact_context": {"account": f"Account {n}", "seats": 10 * n, "renewal": "2027-01-01"},
                "objective": "Learn what drove the renewal decision.",
            }
            for n in range(1, 51)
        ]

    HindsightBulkUpdateInterviewsOperator(
        task_id="update_interviews",
        updates=contact_updates(),
        max_failures=0.02,  # tolerate up to 2 % failed rows; the summary XCom lists each one
    )


example_hindsight_bulk()
