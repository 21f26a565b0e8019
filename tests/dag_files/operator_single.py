"""Test DAGs for HindsightUpdateInterviewOperator; each reads its inputs from ``dag_run.conf``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_hindsight.operators.hindsight import HindsightUpdateInterviewOperator

START = datetime(2026, 1, 1)


def _conf() -> dict[str, Any]:
    return dict(get_current_context()["dag_run"].conf or {})


@dag(dag_id="operator_xcom_inputs", schedule=None, start_date=START, catchup=False)
def operator_xcom_inputs() -> None:
    @task(multiple_outputs=True)
    def build() -> dict[str, Any]:
        return _conf()

    built = build()
    HindsightUpdateInterviewOperator(
        task_id="update",
        interview_request_id=built["interview_request_id"],
        contact_context=built["contact_context"],
        contact_name="{{ ti.xcom_pull(task_ids='build', key='contact_name') }}",
        objective="{{ dag_run.conf['objective'] }}",
    )


@dag(dag_id="operator_jinja_dict_trap", schedule=None, start_date=START, catchup=False)
def operator_jinja_dict_trap() -> None:
    @task
    def build() -> dict[str, Any]:
        return {"title": "CTO", "stage": "Closed Lost"}

    build() >> HindsightUpdateInterviewOperator(
        task_id="update",
        interview_request_id=4821,
        contact_context="{{ ti.xcom_pull(task_ids='build') }}",
    )


@dag(dag_id="operator_jinja_native", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True)
def operator_jinja_native() -> None:
    @task
    def build() -> dict[str, Any]:
        return {"title": "CTO", "stage": "Closed Lost"}

    build() >> HindsightUpdateInterviewOperator(
        task_id="update",
        interview_request_id="{{ 4820 + 1 }}",
        contact_context="{{ ti.xcom_pull(task_ids='build') }}",
    )


@dag(dag_id="operator_mapped", schedule=None, start_date=START, catchup=False)
def operator_mapped() -> None:
    @task
    def rows() -> list[dict[str, Any]]:
        return list(_conf()["rows"])

    HindsightUpdateInterviewOperator.partial(task_id="update").expand_kwargs(rows())


@dag(dag_id="operator_bad_input", schedule=None, start_date=START, catchup=False)
def operator_bad_input() -> None:
    @task
    def interview_id() -> Any:
        return _conf()["interview_request_id"]

    HindsightUpdateInterviewOperator(
        task_id="update",
        interview_request_id=interview_id(),
        objective="Pricing",
        retries=2,
        retry_delay=timedelta(seconds=0),
    )


@dag(dag_id="operator_dry_run", schedule=None, start_date=START, catchup=False)
def operator_dry_run() -> None:
    HindsightUpdateInterviewOperator(
        task_id="update", interview_request_id=4821, contact_context="Met at the summit.", dry_run=True
    )


@dag(dag_id="operator_deferrable", schedule=None, start_date=START, catchup=False)
def operator_deferrable() -> None:
    HindsightUpdateInterviewOperator(
        task_id="update",
        interview_request_id=4821,
        objective="Pricing",
        deferrable=True,
        max_retry_wait=1,
    )


operator_xcom_inputs()
operator_jinja_dict_trap()
operator_jinja_native()
operator_mapped()
operator_bad_input()
operator_dry_run()
operator_deferrable()
