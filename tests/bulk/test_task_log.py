"""What a bulk run writes in the task log: every failed row with its reason, the pace in force, readable ETAs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_hindsight.bulk.report import LOGGED_FAILURES, format_duration
from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.pace import SAFETY_MARGIN
from airflow_provider_hindsight.testing import HindsightEmulator

from .helpers import Executed


def bulk(**kwargs: Any) -> HindsightBulkUpdateInterviewsOperator:
    return HindsightBulkUpdateInterviewsOperator(task_id="update", **kwargs)


def test_failed_rows_are_logged_with_id_and_reason_when_the_task_succeeds(
    execute: Callable[[Any], Executed], hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    rows: list[dict[str, Any]] = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 301)]
    rows[9] = {"interview_request_id": None, "objective": "Pricing"}  # a NULL id from SQL
    rows[99] = {"interview_request_id": 5, "objective": "again"}  # the id of row 5
    rows[199] = {"interview_request_id": 200, "objective": 42}

    outcome = execute(bulk(updates=rows, max_failures=5))

    assert outcome.error is None
    assert outcome.summary["failed"] == 3
    logged = task_logs()
    assert re.search(r"Row 10, interview None failed: interview_request_id is missing \(NULL in SQL", logged)
    assert re.search(
        r"Row 100, interview 5 failed: interview_request_id 5 already came in row 5, which was sent", logged
    )
    assert re.search(r"Row 200, interview 200 failed: objective must be a string, got int", logged)
    assert re.search(
        r"Finished: 300 rows done of 300 in [0-9.]+s: 297 sent \(297 accepted\), 297 succeeded, 3 failed;", logged
    )
    assert "3 of 300 rows failed, within max_failures=5 (5 allowed): the task succeeds." in logged


def test_failed_rows_past_the_cap_are_counted(
    execute: Callable[[Any], Executed], hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    rows = [{"interview_request_id": n, "objective": 7} for n in range(1, LOGGED_FAILURES + 21)]

    outcome = execute(bulk(updates=rows, max_failures=1.0))

    assert outcome.error is None
    logged = task_logs()
    assert len(re.findall(r"Row \d+, interview \d+ failed", logged)) in (LOGGED_FAILURES, 2 * LOGGED_FAILURES)
    assert "20 more rows failed; the summary XCom (key 'summary') lists every one and why." in logged


def test_the_progress_line_states_the_pace_in_force(
    execute: Callable[[Any], Executed],
    hindsight_emulator_factory: Callable[..., HindsightEmulator],
    task_logs: Callable[[], str],
) -> None:
    hindsight_emulator_factory(requests_per_minute=6000)
    outcome = execute(bulk(updates=[{"interview_request_id": 1, "objective": "x"}], requests_per_minute=300))

    assert outcome.error is None
    in_force = f"{300 * SAFETY_MARGIN:,.0f} requests a minute"
    logged = task_logs()
    assert f"at {in_force} with 16 workers" in logged
    assert f"pace {in_force}, 0 answered 429" in logged


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.21, "4.2s"), (59.9, "59.9s"), (60, "1min 0s"), (61.4, "1min 1s"), (9330, "2h 35min 30s"), (7200, "2h 0min 0s")],
)
def test_durations_read_as_hours_minutes_seconds(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_lower_api_limit_is_logged_as_a_pace_change_with_its_reason(
    execute: Callable[[Any], Executed],
    hindsight_emulator_factory: Callable[..., HindsightEmulator],
    task_logs: Callable[[], str],
) -> None:
    """The plan says 1,800 a minute, the API allows 600: the log says when the pace dropped, and why."""
    hindsight_emulator_factory(requests_per_minute=600, rate_window=1.0)
    rows = [{"interview_request_id": n, "objective": "Pricing"} for n in range(1, 61)]

    outcome = execute(bulk(updates=rows, requests_per_minute=1800))

    assert outcome.error is None
    logged = task_logs()
    drops = re.findall(r"Pace (\d+) -> (\d+) requests a minute: the API answered 429", logged)
    assert drops
    first_old, first_new = (int(value) for value in drops[0])
    assert first_old == round(1800 * SAFETY_MARGIN)
    assert first_new < first_old
    assert "after 429s)" in logged  # the progress line names the lowered pace and the configured one
