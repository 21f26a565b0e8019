"""The connection's run history extras, read and checked before any request; how a run's end is told."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hindsight.bulk.rows import RunStop
from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightNotFoundError,
    HindsightValidationError,
)
from airflow_provider_hindsight.history import HistoryRecorder, failed_rows, run_end
from airflow_provider_hindsight.hooks.connection import parse_connection
from airflow_provider_hindsight.ledgers.history import FailedRow


def settings(extra: dict[str, Any]) -> Any:
    return parse_connection("hindsight_default", host=None, port=None, password="k", extra=extra)


def test_without_history_conn_id_nothing_is_recorded() -> None:
    assert HistoryRecorder.of(settings({})) is None
    assert HistoryRecorder.of(settings({"history_conn_id": "  "})) is None


def test_the_history_extras_and_their_defaults() -> None:
    read = settings({"history_conn_id": "warehouse"})
    assert (read.history_conn_id, read.history_table, read.history_retention_days) == (
        "warehouse",
        "hindsight_runs",
        90,
    )
    read = settings({"history_conn_id": "warehouse", "history_table": "ops.runs", "history_retention_days": "30"})
    assert (read.history_table, read.history_retention_days) == ("ops.runs", 30)


@pytest.mark.parametrize("table", ["run history", "runs;drop table x", "a.b.c", "1runs", "r" * 125, 7])
def test_a_history_table_that_is_not_a_table_name_is_refused_as_the_connection_is_read(table: object) -> None:
    """``"r" * 125`` is a table name, but its rows' table (``_rows`` added) is one character too long."""
    with pytest.raises(HindsightConfigurationError, match="history_table") as raised:
        settings({"history_conn_id": "warehouse", "history_table": table})
    message = raised.value.message
    assert "hindsight_default" in message and "Fix: correct the connection's extra history_table" in message
    assert raised.value.code == "invalid_connection"


def test_the_rows_table_is_the_history_table_with_rows_added() -> None:
    read = settings({"history_conn_id": "warehouse", "history_table": "ops.runs", "budget_table": "ops.budget"})
    assert (read.history_table, read.history_rows_table, read.budget_table) == (
        "ops.runs",
        "ops.runs_rows",
        "ops.budget",
    )
    longest = "r" * 123
    assert settings({"history_table": longest}).history_rows_table == longest + "_rows"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"history_conn_id": 3}, "history_conn_id"),
        ({"budget_conn_id": ["db"]}, "budget_conn_id"),
        ({"budget_table": "budget table"}, "budget_table"),
        ({"history_retention_days": 0}, "history_retention_days"),
        ({"history_retention_days": "soon"}, "history_retention_days"),
    ],
)
def test_bad_history_extras_are_refused_naming_them(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(HindsightConfigurationError, match=field):
        settings(extra)


SUMMARY = {
    "total": 4,
    "created": 1,
    "existing": 1,
    "failed": 1,
    "unknown": 1,
    "failures": [
        {"row": 3, "request_key": "deal-3", "status_code": 422, "code": "validation_error", "message": "bad"},
        {"row": 4, "request_key": "deal-4", "status_code": None, "code": "unknown_outcome", "message": "timed out"},
    ],
}


def test_a_run_end_has_the_summary_counts_in_their_columns() -> None:
    end = run_end(SUMMARY, requests=3, answered_429=1)

    assert end.state == "succeeded"
    assert end.counts == {"total": 4, "created": 1, "existing": 1, "failed": 1, "unknown": 1}
    assert (end.requests, end.answered_429, end.error_code) == (3, 1, None)
    assert list(failed_rows(SUMMARY)) == [
        FailedRow(3, "deal-3", "validation_error", 422, "bad"),
        FailedRow(4, "deal-4", "unknown_outcome", None, "timed out"),
    ]


def test_a_failed_run_keeps_the_error_code_and_message_and_a_stopped_one_why_it_stopped() -> None:
    failed = run_end(
        SUMMARY, error=HindsightNotFoundError("Interview\n 7 not found.", status_code=404, code="not_found")
    )
    assert (failed.state, failed.error_code, failed.error_message) == ("failed", "not_found", "Interview 7 not found.")
    assert run_end(None, error=KeyError("x")).error_code == "KeyError"

    stopped = {**SUMMARY, "stopped": {"code": "auth_failed", "reason": "401", "not_sent": 7}}
    stop = RunStop(reason="Hindsight refused the API key", code="auth_failed", transient=False)
    end = run_end(stopped, error=HindsightValidationError("x"), stop=stop)
    assert (end.state, end.error_code, end.error_message, end.counts["not_sent"]) == (
        "stopped",
        "auth_failed",
        "Hindsight refused the API key",
        7,
    )
