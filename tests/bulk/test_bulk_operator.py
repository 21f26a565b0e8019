"""HindsightBulkUpdateInterviewsOperator end to end: real HTTP to the emulator, real DAG runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_hindsight.exceptions import HindsightPermanentError
from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import task_states, xcom_value


def bulk(**kwargs: Any) -> HindsightBulkUpdateInterviewsOperator:
    return HindsightBulkUpdateInterviewsOperator(task_id="update", **kwargs)


def sent_ids(emulator: HindsightEmulator) -> list[int]:
    """The interview ids of the PATCH requests the emulator received, in arrival order."""
    return [int(request.path.rsplit("/", 1)[1]) for request in emulator.requests]


def assert_accounts_for(summary: dict[str, Any], rows: int) -> None:
    assert summary["total"] == rows
    assert summary["succeeded"] + summary["failed"] == rows
    assert summary["failed"] == len(summary["failures"])


# -- in a DAG run ------------------------------------------------------------------------------


def test_dag_rows_from_an_upstream_task_all_land(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    rows = [
        {"interview_request_id": 10 + n, "contact_context": {"seats": n}, "objective": f"Renewal {n}"}
        for n in range(1, 6)
    ]

    dag_run = run_dag("bulk_update_from_task", rows=rows)

    assert task_states(dag_run) == {"rows": "success", "update": "success"}
    summary = xcom_value(dag_run, "update", key="summary")
    assert summary == {"total": 5, "succeeded": 5, "failed": 0, "failures": []}
    assert xcom_value(dag_run, "update") == summary
    for row in rows:
        stored = hindsight_emulator.interview(row["interview_request_id"])
        assert stored == {
            "contact_context": row["contact_context"],
            "contact_name": None,
            "objective": row["objective"],
        }


def test_dag_fails_past_max_failures_after_every_row_and_keeps_the_summary(
    run_dag: Any, hindsight_emulator_factory: Any
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=[3, 4, 5])
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 6)]  # 1 and 2 do not exist

    dag_run = run_dag("bulk_update_from_task", rows=rows)

    assert task_states(dag_run)["update"] == "failed"
    summary = xcom_value(dag_run, "update", key="summary")
    assert_accounts_for(summary, 5)
    failures = sorted((f["interview_request_id"], f["status_code"], f["code"]) for f in summary["failures"])
    assert failures == [(1, 404, "not_found"), (2, 404, "not_found")]
    assert sorted(sent_ids(emulator)) == [1, 2, 3, 4, 5]
    assert all(emulator.interview(n)["objective"] == "Pricing" for n in (3, 4, 5))


# -- execute() ---------------------------------------------------------------------------------


def test_invalid_rows_are_reported_with_reasons_and_never_sent(
    execute: Any, hindsight_emulator: HindsightEmulator
) -> None:
    rows: list[Any] = [
        {"interview_request_id": 1, "objective": "first"},
        {"objective": "no id"},
        {"interview_request_id": "12/../deals", "objective": "path"},
        {"interview_request_id": 4},
        {"interview_request_id": 5, "objective": "x", "stage": "Closed Won"},
        {"interview_request_id": 1, "objective": "second"},
        {"interview_request_id": 7, "contact_context": "Met at the summit."},
    ]

    outcome = execute(bulk(updates=rows, max_failures=5))

    assert outcome.error is None
    assert_accounts_for(outcome.summary, 7)
    assert outcome.summary["succeeded"] == 2
    failures = {f["row"]: f for f in outcome.summary["failures"]}
    assert {row: (f["interview_request_id"], f["code"]) for row, f in failures.items()} == {
        2: (None, "invalid_input"),
        3: ("12/../deals", "invalid_input"),
        4: (4, "invalid_input"),
        5: (5, "invalid_input"),
        6: (1, "duplicate_id"),
    }
    reasons = {2: "no interview_request_id", 3: "positive integer", 4: "Nothing to update", 5: "unknown keys ['stage']"}
    for row, reason in reasons.items():
        assert reason in failures[row]["message"]
    assert all(f["status_code"] is None for f in outcome.summary["failures"])
    assert sorted(sent_ids(hindsight_emulator)) == [1, 7]
    assert hindsight_emulator.interview(1)["objective"] == "first"


def test_rows_for_missing_interviews_fail_with_status_and_code(execute: Any, hindsight_emulator_factory: Any) -> None:
    emulator = hindsight_emulator_factory(interview_ids=[1, 2])
    rows = [{"interview_request_id": n, "contact_name": f"Contact {n}"} for n in (1, 2, 3)]

    outcome = execute(bulk(updates=rows, max_failures=1))

    assert outcome.error is None
    assert_accounts_for(outcome.summary, 3)
    (failure,) = outcome.summary["failures"]
    assert failure["interview_request_id"] == 3
    assert (failure["status_code"], failure["code"]) == (404, "not_found")
    assert "interview_request_id" in failure["message"]
    assert sorted(sent_ids(emulator)) == [1, 2, 3]


@pytest.mark.parametrize(
    ("max_failures", "missing", "fails"),
    [(0, 1, True), (2, 2, False), (2, 3, True), (0.25, 2, False), (0.25, 3, True)],
)
def test_max_failures_as_count_and_ratio(
    execute: Any, hindsight_emulator_factory: Any, max_failures: float, missing: int, fails: bool
) -> None:
    """Eight rows, the first ``missing`` of them 404: the task fails only past the limit, after every row."""
    emulator = hindsight_emulator_factory(interview_ids=range(missing + 1, 9))
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 9)]

    outcome = execute(bulk(updates=rows, max_failures=max_failures))

    assert isinstance(outcome.error, HindsightPermanentError) == fails
    if fails:
        assert "max_failures" in str(outcome.error)
        assert outcome.error.code == "too_many_failures"
    assert_accounts_for(outcome.summary, 8)
    assert outcome.summary["failed"] == missing
    assert sorted(sent_ids(emulator)) == list(range(1, 9))
    assert all(emulator.interview(n)["objective"] == "Pricing" for n in range(missing + 1, 9))


def test_dry_run_sends_nothing_and_still_checks_every_row(execute: Any, hindsight_emulator: HindsightEmulator) -> None:
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 6)] + [{"interview_request_id": 0}]

    outcome = execute(bulk(updates=rows, dry_run=True, max_failures=1))

    assert outcome.error is None
    assert outcome.summary["dry_run"] is True
    assert_accounts_for(outcome.summary, 6)
    assert outcome.summary["failed"] == 1
    assert hindsight_emulator.request_count == 0


def test_rows_may_be_a_json_list_rendered_by_a_template(execute: Any, hindsight_emulator: HindsightEmulator) -> None:
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in (1, 2)]

    outcome = execute(bulk(updates=json.dumps(rows)))

    assert outcome.summary["succeeded"] == 2
    assert sorted(sent_ids(hindsight_emulator)) == [1, 2]


# -- pacing ------------------------------------------------------------------------------------


def test_pace_at_the_limit_gets_no_429(execute: Any, hindsight_emulator_factory: Any) -> None:
    """Emulator: 30 requests in any three seconds; the operator paced at the same 600 a minute.

    Three seconds, not one: at 0.97 of the limit a one-second window leaves 30 ms of slack, which a
    loaded machine's scheduling jitter between client and server can eat; three leave 90 ms.
    """
    emulator = hindsight_emulator_factory(requests_per_minute=600, rate_window=3.0)
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 61)]

    outcome = execute(bulk(updates=rows, requests_per_minute=600))

    assert outcome.summary["succeeded"] == 60
    assert emulator.status_counts == {200: 60}


def test_pace_three_times_too_high_costs_a_handful_of_429s(execute: Any, hindsight_emulator_factory: Any) -> None:
    """The plan says 1,800 a minute, the API allows 600: a few 429s, then the engine slows down."""
    emulator = hindsight_emulator_factory(requests_per_minute=600, rate_window=1.0)
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 61)]

    outcome = execute(bulk(updates=rows, requests_per_minute=1800))

    assert outcome.error is None
    assert outcome.summary["succeeded"] == 60
    counts = emulator.status_counts
    assert counts[200] == 60
    assert 1 <= counts.get(429, 0) <= 6, counts


# -- faults ------------------------------------------------------------------------------------


def test_faults_on_some_rows_are_retried_or_reported(execute: Any, hindsight_emulator: HindsightEmulator) -> None:
    hindsight_emulator.inject_status(500, interview_request_id=3, times=6)  # outlasts the 5 retries
    hindsight_emulator.inject_status(503, interview_request_id=5)
    hindsight_emulator.inject_drop(interview_request_id=7)
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 11)]

    outcome = execute(bulk(updates=rows, max_failures=1, max_retry_wait=0.05))

    assert outcome.error is None
    assert_accounts_for(outcome.summary, 10)
    (failure,) = outcome.summary["failures"]
    assert (failure["interview_request_id"], failure["status_code"], failure["code"]) == (3, 500, "internal_error")
    assert hindsight_emulator.status_counts == {200: 9, 500: 6, 503: 1, 0: 1}
    assert all(hindsight_emulator.interview(n)["objective"] == "Pricing" for n in range(1, 11) if n != 3)


def test_a_transient_failure_past_max_failures_leaves_airflow_retries_on(
    execute: Any, hindsight_emulator: HindsightEmulator
) -> None:
    hindsight_emulator.inject_status(500, interview_request_id=2, times=6)
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in (1, 2, 3)]

    outcome = execute(bulk(updates=rows, max_retry_wait=0.05))

    assert outcome.error is not None
    assert not isinstance(outcome.error, HindsightPermanentError)
    assert_accounts_for(outcome.summary, 3)
    assert outcome.summary["failed"] == 1


# -- every row is accounted for ----------------------------------------------------------------

ROW_KINDS = st.sampled_from(["valid", "missing", "no_id", "bad_id", "no_field", "unknown_key", "repeat"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(ROW_KINDS, max_size=12))
def test_summary_accounts_for_every_row(execute: Any, hindsight_emulator_factory: Any, kinds: list[str]) -> None:
    """Any mix of good and bad rows: each row ends once, as succeeded or failed with a reason.

    ``missing`` rows are sent and answered 404; ``repeat`` rows reuse the id of the last row that
    was sent and must not be sent again; the other bad kinds must not be sent at all.
    """
    emulator = hindsight_emulator_factory(interview_ids=range(1, 100))
    rows: list[dict[str, Any]] = []
    failed: set[int] = set()
    sent: list[int] = []
    for position, kind in enumerate(kinds, start=1):
        row: dict[str, Any] = {"interview_request_id": position, "objective": kind}
        if kind == "missing":
            row["interview_request_id"] = 1000 + position
        elif kind == "no_id":
            del row["interview_request_id"]
        elif kind == "bad_id":
            row["interview_request_id"] = -position
        elif kind == "no_field":
            del row["objective"]
        elif kind == "unknown_key":
            row["stage"] = "Closed Won"
        duplicate = kind == "repeat" and bool(sent)
        if duplicate:
            row["interview_request_id"] = sent[-1]
        elif kind in ("valid", "missing", "repeat"):
            sent.append(row["interview_request_id"])
        if duplicate or kind not in ("valid", "repeat"):
            failed.add(position)
        rows.append(row)

    outcome = execute(bulk(updates=rows, max_failures=len(rows)))

    assert_accounts_for(outcome.summary, len(rows))
    assert {f["row"] for f in outcome.summary["failures"]} == failed
    assert all(f["code"] and f["message"] for f in outcome.summary["failures"])
    assert sorted(sent_ids(emulator)) == sorted(sent)
