"""Enrich one interview before Paige runs it.

An upstream task builds the contact's context from CRM data; the operator takes it as XComArgs
(``build.output``-style indexing) and one field through Jinja, to show both ways in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_hindsight.operators.hindsight import HindsightUpdateInterviewOperator


@dag(
    dag_id="example_hindsight_single",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hindsight", "example"],
)
def example_hindsight_single() -> None:
    @task(multiple_outputs=True)
    def build_contact_context() -> dict[str, Any]:
        """In a real DAG this reads the CRM (a Salesforce or HubSpot hook, a warehouse query)."""
        deal = {"id": "D-1042", "stage": "Closed Lost", "competitor": "Competitor X", "amount": 48000}
        return {
            "interview_request_id": 4821,
            "contact_name": "Jane Smith",
            "competitor": deal["competitor"],
            "contact_context": {
                "title": "CTO",
                "deal_stage": deal["stage"],
                "deal_amount": deal["amount"],
                "evaluation_notes": "Completed a 30-day POC; main concern was pricing.",
            },
        }

    contact = build_contact_context()

    HindsightUpdateInterviewOperator(
        task_id="update_interview",
        interview_request_id=contact["interview_request_id"],
        contact_context=contact["contact_context"],
        contact_name=contact["contact_name"],
        objective="Understand why we lost to {{ ti.xcom_pull(task_ids='build_contact_context', key='competitor') }}.",
    )


example_hindsight_single()
