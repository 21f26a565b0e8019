"""A bulk run that cannot succeed stops within seconds; every row is still accounted for."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.bulk.circuit import DEFAULT_MAX_CONSECUTIVE_TRANSIENT
from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightPermanentError,
    HindsightTransientError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator
from tests.helpers import free_port

from .helpers import Executed

ROWS = 2_000
WORKERS = 4


def rows(count: int = ROWS) -> list[dict[str, Any]]:
    return [{"interview_request_id": n, "objective": f"Renewal {n}"} for n in range(1, count + 1)]


def bulk(**kwargs: Any) -> HindsightBulkUpdateInterviewsOperator:
    return HindsightBulkUpdateInterviewsOperator(task_id="update", max_workers=WORKERS, **kwargs)


def assert_every_row_accounted_for(summary: dict[str, Any], total: int) -> None:
    """Rows that were sent and failed are listed one by one; rows not sent are counted, not listed."""
    assert summary["total"] == total
    assert summary["succeeded"] + summary["failed"] == total
    assert summary["failed"] == len(summary["failures"]) + summary["stopped"]["not_sent"]
    assert "not_sent" not in {failure["code"] for failure in summary["failures"]}
    assert sorted(failure["row"] for failure in summary["failures"]) == sorted(
        {failure["row"] for failure in summary["failures"]}
    )


def test_a_wrong_key_stops_the_run_at_the_first_401(
    execute: Callable[[Any], Executed],
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
    task_logs: Callable[[], str],
) -> None:
    emulator = hindsight_emulator
    connection = json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps({**connection, "password": "a-wrong-key"}))
    emulator.inject_delay(0.05, times=ROWS)  # requests overlap, as they do over a real network
    outcome = execute(bulk(updates=rows()))

    assert isinstance(outcome.error, HindsightPermanentError)
    assert isinstance(outcome.error, AirflowFailException)  # no Airflow retries: the key is wrong for every row
    assert outcome.error.code == "stopped_auth"
    assert "Check the API key" in str(outcome.error)
    # At most one request per worker was already on its way when the first 401 came back.
    assert emulator.status_counts == {401: emulator.request_count}
    assert emulator.request_count <= WORKERS + 1
    summary = outcome.summary
    assert_every_row_accounted_for(summary, ROWS)
    assert summary["succeeded"] == 0
    assert summary["stopped"]["code"] == "stopped_auth"
    assert {failure["code"] for failure in summary["failures"]} == {"unauthorized"}
    assert len(summary["failures"]) == emulator.request_count  # every row that was sent is listed
    assert summary["stopped"]["not_sent"] == ROWS - emulator.request_count
    logged = task_logs()
    assert f"{ROWS - emulator.request_count} rows, between row " in logged
    assert "were not sent: the run stopped (stopped_auth) because the API refused the key (HTTP 401)" in logged


def test_an_api_that_stays_down_stops_the_run_retryably(
    execute: Callable[[Any], Executed], hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hindsight_emulator.inject_status(503, times=ROWS * 10)
    connection = json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"])
    connection["extra"]["max_retries"] = 1
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    outcome = execute(bulk(updates=rows(), max_retry_wait=0.01))

    assert isinstance(outcome.error, HindsightTransientError)  # Airflow's retries may find the API back
    assert not isinstance(outcome.error, AirflowFailException)
    assert outcome.error.code == "stopped_outage"
    summary = outcome.summary
    assert_every_row_accounted_for(summary, ROWS)
    failed_after_retries = summary["failures"]
    assert (
        DEFAULT_MAX_CONSECUTIVE_TRANSIENT
        <= len(failed_after_retries)
        <= DEFAULT_MAX_CONSECUTIVE_TRANSIENT + 2 * WORKERS
    )
    assert {failure["status_code"] for failure in failed_after_retries} == {503}
    assert hindsight_emulator.request_count <= 2 * len(failed_after_retries)  # one retry each, no more rows sent
    assert "10 rows in a row failed after their retries" in summary["stopped"]["reason"]
    assert "service_unavailable" in summary["stopped"]["reason"]


def test_an_unreachable_api_stops_the_run(
    execute: Callable[[Any], Executed], monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    connection = {
        "conn_type": "hindsight",
        "host": f"http://127.0.0.1:{closed_port}/api/v1",
        "password": "test-key",
        "extra": {"requests_per_minute": 60_000, "max_retries": 0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    outcome = execute(bulk(updates=rows()))

    assert isinstance(outcome.error, HindsightTransientError)
    assert outcome.error.code == "stopped_outage"
    assert "connection refused" in outcome.summary["stopped"]["reason"]
    assert_every_row_accounted_for(outcome.summary, ROWS)


def test_failures_that_are_not_transient_do_not_stop_the_run(
    execute: Callable[[Any], Executed], hindsight_emulator_factory: Callable[..., HindsightEmulator]
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=range(1, 51))  # ids 51..80 do not exist: 404
    outcome = execute(bulk(updates=rows(80), max_failures=30))

    assert outcome.error is None
    assert (outcome.summary["succeeded"], outcome.summary["failed"]) == (50, 30)
    assert "stopped" not in outcome.summary
    assert emulator.request_count == 80


@pytest.fixture
def closed_port() -> int:
    return free_port()


# -- configuration errors are permanent and name the connection ------------------------------------


def test_a_missing_hindsight_connection_is_permanent_and_named(
    execute: Callable[[Any], Executed], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_HINDSIGHT", raising=False)
    outcome = execute(bulk(updates=rows(3), hindsight_conn_id="no_such_hindsight"))

    assert isinstance(outcome.error, HindsightConfigurationError)
    assert isinstance(outcome.error, AirflowFailException)
    assert "'no_such_hindsight' does not exist" in str(outcome.error)
    assert "AIRFLOW_CONN_NO_SUCH_HINDSIGHT" in str(outcome.error)


def test_a_missing_sql_connection_is_permanent_and_named(
    execute: Callable[[Any], Executed], hindsight_emulator: HindsightEmulator
) -> None:
    outcome = execute(SqlToHindsightOperator(task_id="t", sql="SELECT 1", sql_conn_id="no_such_warehouse"))

    assert isinstance(outcome.error, HindsightConfigurationError)
    assert isinstance(outcome.error, AirflowFailException)
    assert "sql_conn_id 'no_such_warehouse' is not a defined Airflow connection" in str(outcome.error)
    assert hindsight_emulator.request_count == 0


@pytest.mark.parametrize("max_workers", [0, -1, 257, 2.5, True, "16"])
def test_max_workers_is_validated_naming_it(max_workers: Any) -> None:
    with pytest.raises(HindsightValidationError) as raised:
        HindsightBulkUpdateInterviewsOperator(task_id="update", updates=[], max_workers=max_workers)

    assert raised.value.field == "max_workers"
    assert "max_workers must be a whole number from 1 to 256" in str(raised.value)
    with pytest.raises(HindsightValidationError):
        HindsightHook(max_workers=max_workers)


@pytest.mark.parametrize("max_workers", [1, 48])
def test_the_connection_pool_follows_max_workers(hindsight_emulator: HindsightEmulator, max_workers: int) -> None:
    hook = HindsightHook(max_workers=max_workers)

    adapter = hook.session.get_adapter(hindsight_emulator.base_url)
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == max_workers
