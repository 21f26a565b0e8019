"""HindsightUpdateInterviewOperator run for real in DAGs (``dag.test()``) against the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import task_states, xcom_value


def test_xcomarg_and_jinja_inputs_reach_the_api(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    conf = {
        "interview_request_id": 4821,
        "contact_context": {"title": "CTO", "evaluation_notes": "Completed POC, flagged pricing"},
        "contact_name": "Jane Smith",
        "objective": "Understand the pricing objection",
    }
    dag_run = run_dag("operator_xcom_inputs", **conf)

    assert task_states(dag_run) == {"build": "success", "update": "success"}
    (request,) = hindsight_emulator.requests
    assert request.method == "PATCH"
    assert request.path == "/api/v1/interviews/4821"
    assert request.headers["Authorization"] == "Bearer test-key"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {key: conf[key] for key in ("contact_context", "contact_name", "objective")}
    assert hindsight_emulator.interview(4821) == {key: conf[key] for key in request.json}
    assert xcom_value(dag_run, "update") == {"interview_request_id": 4821}


def test_rendered_python_dict_string_fails_with_the_fix(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Any
) -> None:
    dag_run = run_dag("operator_jinja_dict_trap")

    assert task_states(dag_run)["update"] == "failed"
    assert hindsight_emulator.requests == []
    assert "render_template_as_native_obj=True" in task_logs()
    assert "XComArg" in task_logs()


def test_native_rendering_sends_the_dict_as_an_object(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    dag_run = run_dag("operator_jinja_native")

    assert task_states(dag_run)["update"] == "success"
    (request,) = hindsight_emulator.requests
    assert request.path == "/api/v1/interviews/4821"
    assert request.json == {"contact_context": {"title": "CTO", "stage": "Closed Lost"}}


def test_mapped_over_rows_updates_each_interview(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    rows = [
        {"interview_request_id": 101, "contact_name": "Sam Lee"},
        {"interview_request_id": "102", "objective": "Pricing", "contact_context": "Met at the summit."},
        {"interview_request_id": 103, "contact_context": {"title": "CFO"}, "objective": "Budget"},
    ]
    dag_run = run_dag("operator_mapped", rows=rows)

    assert task_states(dag_run) == {"rows": "success", **{f"update[{i}]": "success" for i in range(len(rows))}}
    sent = {request.path: request.json for request in hindsight_emulator.requests}
    for row in rows:
        fields = {key: value for key, value in row.items() if key != "interview_request_id"}
        assert sent[f"/api/v1/interviews/{row['interview_request_id']}"] == fields
        assert xcom_value(dag_run, "update", map_index=rows.index(row)) == {
            "interview_request_id": int(row["interview_request_id"])
        }


@pytest.mark.parametrize("bad_id", ["12/../deals", "abc", 0, -5, True, "4821 "])
def test_bad_id_fails_without_retries_and_sends_nothing(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Any, bad_id: Any
) -> None:
    dag_run = run_dag("operator_bad_input", interview_request_id=bad_id)

    (update,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "update"]
    assert str(update.state) == "failed"  # not up_for_retry, although the task has retries=2
    assert hindsight_emulator.requests == []
    assert "interview_request_id must be a positive integer" in task_logs()


def test_dry_run_sends_nothing_and_logs_the_body(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Any
) -> None:
    dag_run = run_dag("operator_dry_run")

    assert task_states(dag_run) == {"update": "success"}
    assert hindsight_emulator.requests == []
    assert json.dumps({"contact_context": "Met at the summit."}, separators=(",", ":")) in task_logs()
    assert xcom_value(dag_run, "update") == {
        "dry_run": True,
        "interview_request_id": 4821,
        "body": {"contact_context": "Met at the summit."},
    }


@pytest.mark.parametrize(("status", "expected_state"), [(404, "failed"), (401, "failed"), (400, "failed")])
def test_permanent_api_errors_fail_the_task_without_airflow_retries(
    run_dag: Any, hindsight_emulator: HindsightEmulator, status: int, expected_state: str
) -> None:
    hindsight_emulator.inject_status(status)
    dag_run = run_dag("operator_bad_input", interview_request_id=4821)

    (update,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "update"]
    assert str(update.state) == expected_state
    assert len(hindsight_emulator.requests) == 1


def test_transient_errors_after_the_budget_are_retried_by_airflow(
    run_dag: Any, hindsight_emulator: HindsightEmulator
) -> None:
    hindsight_emulator.inject_status(503, times=6, retry_after=0)
    dag_run = run_dag("operator_bad_input", interview_request_id=4821)

    (update,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "update"]
    assert str(update.state) == "success"
    assert update.try_number == 2  # the first try spent its budget of 1 + max_retries=5 requests
    assert [request.status for request in hindsight_emulator.requests] == [503] * 6 + [200]


def test_long_retry_after_defers_then_resumes_and_sends(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    hindsight_emulator.inject_status(429, retry_after=2)
    dag_run = run_dag("operator_deferrable")

    assert task_states(dag_run) == {"update": "success"}
    first, second = hindsight_emulator.requests
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 2.0
    assert hindsight_emulator.interview(4821)["objective"] == "Pricing"
