"""Test DAGs for HindsightInterviewSensor: ids from ``dag_run.conf`` (a template) or an upstream task.

``report`` tasks run after the sensor whatever its outcome and return what it handed on, so a test
can check that ``succeed_on_timeout`` gives the downstream tasks the statuses.
"""

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


@task(trigger_rule="all_done")
def report(statuses: Any) -> Any:
    """What the sensor handed on (``None`` when it failed)."""
    return statuses


@dag(dag_id="sensor_succeed_on_timeout", schedule=None, start_date=START, catchup=False)
def sensor_succeed_on_timeout() -> None:
    """Each sensor (deferred, rescheduled) polls on the plan, then succeeds at the deadline with what it has.

    ``poll_age_factor=1`` makes the plan visible in seconds: an id is polled again after its age,
    at least 0.3 s and at most 2 s apart.
    """
    for name in ("deferrable", "reschedule"):
        wait = HindsightInterviewSensor(
            task_id=f"wait_{name}",
            interview_request_ids=f"{{{{ dag_run.conf['{name}'] | tojson }}}}",
            deferrable=name == "deferrable",
            mode="reschedule" if name == "reschedule" else "poke",
            poke_interval=0.3,
            poll_age_factor=1,
            max_poll_interval=2,
            timeout=8,
            succeed_on_timeout=True,
        )
        report.override(task_id=f"report_{name}")(wait.output)


@dag(dag_id="sensor_reschedule", schedule=None, start_date=START, catchup=False)
def sensor_reschedule() -> None:
    """Reschedule mode: each poke is a new task execution; the watch is kept between them."""
    HindsightInterviewSensor(
        task_id="wait",
        interview_request_ids=IDS,
        deferrable=False,
        mode="reschedule",
        poke_interval=0.3,
        timeout=60,
    )


def sensor_outage(mode: str) -> None:
    """One sensor per mode on the connection ``hindsight_sensor_outage`` (the tests make its API fail for a while).

    Three failed rounds in a row (pokes, or the trigger's rounds) end it; polls 1 s apart.
    """

    @dag(dag_id=f"sensor_outage_{mode}", schedule=None, start_date=START, catchup=False)
    def outage() -> None:
        HindsightInterviewSensor(
            task_id="wait",
            interview_request_ids=IDS,
            hindsight_conn_id="hindsight_sensor_outage",
            deferrable=mode == "deferrable",
            mode="reschedule" if mode == "reschedule" else "poke",
            poke_interval=1,
            timeout=120,
            max_consecutive_failures=3,
        )

    outage()


sensor_deferrable()
sensor_deferrable_timeout()
sensor_poke()
sensor_succeed_on_timeout()
sensor_reschedule()
for _mode in ("deferrable", "poke", "reschedule"):
    sensor_outage(_mode)
