"""Test DAGs for the reliability suite (tests/reliability); each reads its inputs from ``dag_run.conf``.

Values reach the operators as XComArgs from an upstream task, so that they arrive with the exact type
given in ``conf`` (Jinja would render them to strings). The Hindsight tasks have ``retries=2`` and
no retry delay: a test can tell a task that Airflow retried from one that failed for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_hindsight.operators.hindsight import (
    HindsightBulkUpdateInterviewsOperator,
    HindsightUpdateInterviewOperator,
)

START = datetime(2026, 1, 1)
RETRIES = 2
MAX_RETRY_WAIT = 0.05
"""Seconds: the longest wait between two attempts of one request, short to keep the suite fast."""

UPDATE_ARGUMENTS = ("interview_request_id", "contact_context", "contact_name", "objective")

WAREHOUSE_VALUES: dict[str, Any] = {
    "datetime": {"closed_at": datetime(2026, 3, 31, 17, 0)},
    "decimal": {"arr": Decimal("125000.50")},
    "set": {"competitors": {"Competitor X"}},
}
"""``contact_context`` values that a warehouse row gives and JSON cannot hold, picked by
``conf["contact_context_value"]`` (``conf`` itself can only carry JSON)."""


def _conf() -> dict[str, Any]:
    return dict(get_current_context()["dag_run"].conf or {})


@dag(dag_id="reliability_update", schedule=None, start_date=START, catchup=False)
def reliability_update() -> None:
    """One update: ``conf`` holds the operator's arguments (missing ones are ``None``)."""

    @task(multiple_outputs=True)
    def arguments() -> dict[str, Any]:
        conf = _conf()
        values = {name: conf.get(name) for name in UPDATE_ARGUMENTS}
        if "contact_context_value" in conf:
            values["contact_context"] = WAREHOUSE_VALUES[conf["contact_context_value"]]
        return values

    given: Any = arguments()  # an XComArg; indexing it picks one of its outputs
    HindsightUpdateInterviewOperator(
        task_id="update",
        interview_request_id=given["interview_request_id"],
        contact_context=given["contact_context"],
        contact_name=given["contact_name"],
        objective=given["objective"],
        max_retry_wait=MAX_RETRY_WAIT,
        retries=RETRIES,
        retry_delay=timedelta(0),
    )


def _bulk_dag(dag_id: str, max_failures: float) -> None:
    """``conf["rows"]`` through the bulk operator, failing the task past ``max_failures``."""

    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False)
    def bulk() -> None:
        @task
        def rows() -> list[dict[str, Any]]:
            return list(_conf()["rows"])

        HindsightBulkUpdateInterviewsOperator(
            task_id="update",
            updates=rows(),
            max_failures=max_failures,
            max_retry_wait=MAX_RETRY_WAIT,
            retries=RETRIES,
            retry_delay=timedelta(0),
        )

    bulk()


reliability_update()
_bulk_dag("reliability_bulk_strict", max_failures=0)
_bulk_dag("reliability_bulk_tolerant", max_failures=1.0)
