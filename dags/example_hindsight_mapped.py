"""One task per interview: the operator mapped over rows with ``expand_kwargs``.

Good for tens of interviews, where seeing each one as its own task in the UI is worth the
scheduling cost. For thousands, use ``HindsightBulkUpdateInterviewsOperator``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_hindsight.operators.hindsight import HindsightUpdateInterviewOperator


@dag(
    dag_id="example_hindsight_mapped",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hindsight", "example"],
)
def example_hindsight_mapped() -> None:
    @task
    def lost_deals() -> list[dict[str, Any]]:
        """One dict per interview, keyed like the operator's arguments."""
        deals = [
            (4822, "Sam Lee", "VP Engineering", "Competitor Y"),
            (4823, "Ana Costa", "Head of Data", "Competitor X"),
            (4824, "Raj Patel", "CFO", "Built in-house"),
        ]
        return [
            {
                "interview_request_id": interview_id,
                "contact_name": name,
                "contact_context": {"title": title, "lost_to": lost_to},
                "objective": f"Understand the decision for {lost_to}.",
            }
            for interview_id, name, title, lost_to in deals
        ]

    HindsightUpdateInterviewOperator.partial(task_id="update_interview").expand_kwargs(lost_deals())


example_hindsight_mapped()
