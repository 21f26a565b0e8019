"""Test DAGs for HindsightInterviewSensor: ids from ``dag_run.conf`` (a template) or an upstream task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_hindsight.sensors.interview import HindsightInterviewSensor

START = datetime(2026, 1, 1)
IDS = "{{ dag_run.conf['ids'] | tojson }}"


@dag(dag_id="sensor_deferrable", schedule=None, start_date=START, catchup=False)
def sensor_deferrable() -> None:
    """Deferred: the trigger polls in the triggerer (inline in ``dag.test()``)."""
    HindsightInterviewSensor(task_id="wait", interview_request_ids=IDS, deferrable=True, poke_interval=0.3, timeout=60)


@dag(dag_id="sensor_deferrable_timeout", schedule=None, start_date=START, catchup=False)
def sensor_deferrable_timeout() -> None:
    HindsightInterviewSensor(task_id="wait", interview_request_ids=IDS, deferrable=True, poke_interval=0.3, timeout=1.5)


@dag(dag_id="sensor_poke", schedule=None, start_date=START, catchup=False)
def sensor_poke() -> None:
    """Poke mode through the sync hook; ids from an upstream task (an XComArg)."""

    @task
    def ids() -> list[Any]:
        return list(get_current_context()["dag_run"].conf["ids"])

    HindsightInterviewSensor(
        task_id="wait",
        interview_request_ids=ids(),
        target_status="sent",
        deferrable=False,
        mode="poke",
        poke_interval=0.3,
        timeout=60,
    )


sensor_deferrable()
sensor_deferrable_timeout()
sensor_poke()
