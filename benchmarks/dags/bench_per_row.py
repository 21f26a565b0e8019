"""Per-row DAGs the benchmark compares the bulk operator with: one mapped task per interview.

``bench_mapped_hindsight`` maps ``HindsightUpdateInterviewOperator``; ``bench_mapped_http`` maps the
HTTP provider's ``HttpOperator``. Both read ``rows`` (how many interviews) from ``dag_run.conf``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task
from airflow.providers.http.operators.http import HttpOperator

from airflow_provider_hindsight.operators.hindsight import HindsightUpdateInterviewOperator

START = datetime(2026, 1, 1)


def _row_count() -> int:
    conf = get_current_context()["dag_run"].conf or {}
    return int(conf["rows"])


@dag(dag_id="bench_mapped_hindsight", schedule=None, start_date=START, catchup=False)
def bench_mapped_hindsight() -> None:
    @task
    def updates() -> list[dict[str, Any]]:
        return [
            {"interview_request_id": n, "contact_context": {"seats": n}, "objective": "Renewal"}
            for n in range(1, _row_count() + 1)
        ]

    HindsightUpdateInterviewOperator.partial(task_id="update").expand_kwargs(updates())


@dag(dag_id="bench_mapped_http", schedule=None, start_date=START, catchup=False)
def bench_mapped_http() -> None:
    @task
    def requests() -> list[dict[str, Any]]:
        return [
            {
                "endpoint": f"api/v1/interviews/{n}",
                "data": json.dumps({"contact_context": {"seats": n}, "objective": "Renewal"}),
            }
            for n in range(1, _row_count() + 1)
        ]

    HttpOperator.partial(task_id="update", http_conn_id="bench_http", method="PATCH").expand_kwargs(requests())


bench_mapped_hindsight()
bench_mapped_http()
