"""Permanent vs transient failures, as Airflow sees them in real DAG runs (``dag.test()``).

The test DAGs' Hindsight tasks have ``retries=2`` and no retry delay. A permanent failure (the
request is wrong: 400/401/403/404) must fail the task on its first try, with a log line that says
what to fix; a transient one (429, 5xx, network) that outlasts the hook's retries must leave
Airflow's task retries to try again, and the next try succeeds once the fault has passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import task_states, xcom_value

from .helpers import CONNECTION_MAX_RETRIES, CONNECTION_TIMEOUT, settle, task_instance

ID = 4821
OBJECTIVE = "Understand the pricing objection"
BUDGET = 1 + CONNECTION_MAX_RETRIES
"""Requests one try spends on one interview under the test DAGs' connection."""

Inject = Callable[[HindsightEmulator, int | None], None]


def statuses(emulator: HindsightEmulator) -> list[int]:
    return [request.status for request in emulator.requests]


# -- HindsightUpdateInterviewOperator ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "emulator_arguments", "fix"),
    [
        pytest.param(400, {}, "Check the values sent", id="400"),
        pytest.param(401, {"password": "not-the-key"}, "API key field of the connection 'hindsight_default'", id="401"),
        pytest.param(403, {}, "The API key of the connection 'hindsight_default' is not allowed", id="403"),
        pytest.param(404, {"interview_ids": []}, "Check interview_request_id", id="404"),
    ],
)
def test_permanent_api_errors_fail_on_the_first_try_saying_what_to_fix(
    run_dag: Any,
    dag_emulator: Callable[..., HindsightEmulator],
    task_logs: Callable[[], str],
    status: int,
    emulator_arguments: dict[str, Any],
    fix: str,
) -> None:
    emulator = dag_emulator(**emulator_arguments)
    if status in (400, 403):  # the hook never sends what would earn these: the API's own view of the request
        emulator.inject_status(status)

    dag_run = run_dag("reliability_update", interview_request_id=ID, objective=OBJECTIVE)

    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("failed", 1)  # retries=2 were not used
    assert statuses(emulator) == [status]
    assert f"HTTP {status}" in task_logs()
    assert fix in task_logs()


TRANSIENT: dict[str, tuple[Inject, int]] = {
    # name: (inject the fault for one try, requests that try spends)
    "429": (lambda e, n: e.inject_status(429, retry_after=0, times=BUDGET, interview_request_id=n), BUDGET),
    "429-html": (lambda e, n: e.inject_status(429, html=True, times=BUDGET, interview_request_id=n), BUDGET),
    "429-retry-after-too-long": (lambda e, n: e.inject_status(429, retry_after=30, interview_request_id=n), 1),
    "502-html": (lambda e, n: e.inject_status(502, html=True, times=BUDGET, interview_request_id=n), BUDGET),
    "503": (lambda e, n: e.inject_status(503, times=BUDGET, interview_request_id=n), BUDGET),
    "timeout": (
        lambda e, n: e.inject_delay(CONNECTION_TIMEOUT + 0.25, times=BUDGET, interview_request_id=n),
        BUDGET,
    ),
    "dropped": (lambda e, n: e.inject_drop(times=BUDGET, interview_request_id=n), BUDGET),
    "200-not-json": (lambda e, n: e.inject_invalid_json(times=BUDGET, interview_request_id=n), BUDGET),
}


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_failures_past_the_budget_are_retried_by_airflow(
    run_dag: Any, dag_emulator: Callable[..., HindsightEmulator], fault: str
) -> None:
    emulator = dag_emulator()
    inject, first_try_requests = TRANSIENT[fault]
    inject(emulator, ID)

    dag_run = run_dag("reliability_update", interview_request_id=ID, objective=OBJECTIVE)

    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("success", 2)
    assert xcom_value(dag_run, "update") == {"interview_request_id": ID}
    settle(emulator, first_try_requests + 1)
    assert emulator.interview(ID)["objective"] == OBJECTIVE


# -- HindsightBulkUpdateInterviewsOperator ----------------------------------------------------------

ROWS: list[dict[str, Any]] = [{"interview_request_id": n, "objective": OBJECTIVE} for n in range(1, 7)]
IDS = [row["interview_request_id"] for row in ROWS]


@pytest.mark.parametrize("fault", ["503", "429-html", "timeout", "dropped"])
def test_bulk_with_only_transient_failures_is_retried_by_airflow(
    run_dag: Any, dag_emulator: Callable[..., HindsightEmulator], fault: str
) -> None:
    """``max_failures=0``: one row outlasts the budget in the first try; the second try sends every row."""
    emulator = dag_emulator()
    inject, first_try_requests = TRANSIENT[fault]
    inject(emulator, IDS[1])

    dag_run = run_dag("reliability_bulk_strict", rows=ROWS)

    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("success", 2)
    summary = xcom_value(dag_run, "update", key="summary")  # the last try's
    assert summary == {"total": len(ROWS), "succeeded": len(ROWS), "failed": 0, "failures": []}
    settle(emulator, 2 * len(ROWS) + first_try_requests - 1)
    assert all(emulator.interview(n)["objective"] == OBJECTIVE for n in IDS)


def test_bulk_with_only_permanent_failures_fails_on_the_first_try(
    run_dag: Any, dag_emulator: Callable[..., HindsightEmulator], task_logs: Callable[[], str]
) -> None:
    missing = IDS[1]
    emulator = dag_emulator(interview_ids=[n for n in IDS if n != missing])

    dag_run = run_dag("reliability_bulk_strict", rows=ROWS)

    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("failed", 1)
    summary = xcom_value(dag_run, "update", key="summary")
    assert summary["total"] == summary["succeeded"] + summary["failed"] == len(ROWS)
    (failure,) = summary["failures"]
    assert (failure["interview_request_id"], failure["status_code"], failure["code"]) == (missing, 404, "not_found")
    assert len(emulator.requests) == len(ROWS)
    assert f"1 of {len(ROWS)} rows failed (max_failures=0, 0 allowed)" in task_logs()
    assert "key 'summary'" in task_logs()


def test_bulk_retried_for_a_transient_failure_stops_when_only_permanent_ones_remain(
    run_dag: Any, dag_emulator: Callable[..., HindsightEmulator]
) -> None:
    """Try 1: a 404 row and a 503 row, so Airflow retries; try 2: only the 404 is left, so no try 3."""
    missing, flaky = IDS[1], IDS[2]
    emulator = dag_emulator(interview_ids=[n for n in IDS if n != missing])
    emulator.inject_status(503, times=BUDGET, interview_request_id=flaky)

    dag_run = run_dag("reliability_bulk_strict", rows=ROWS)

    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("failed", 2)
    (failure,) = xcom_value(dag_run, "update", key="summary")["failures"]
    assert (failure["interview_request_id"], failure["status_code"]) == (missing, 404)
    assert len(emulator.requests) == 2 * len(ROWS) + BUDGET - 1
    assert emulator.interview(flaky)["objective"] == OBJECTIVE
    assert task_states(dag_run)["rows"] == "success"
