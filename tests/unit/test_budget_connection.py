"""The connection's budget extras: read and checked before any request, and the budget made at the connection's pace."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_provider_hindsight.budget.permits import SHARED_BUDGETS, SharedBudget
from airflow_provider_hindsight.budget.share import budget_name
from airflow_provider_hindsight.exceptions import HindsightConfigurationError
from airflow_provider_hindsight.hooks.connection import parse_connection
from airflow_provider_hindsight.hooks.pacing import connection_budget

from .helpers import FAST_RPM, LogRecorder, MakeHook, SetConnection, ok, url

KEY = "budget-test-key"


def settings(extra: dict[str, Any], requests_per_minute: float | None = None) -> Any:
    return parse_connection(
        "hindsight_default",
        host=None,
        port=None,
        password=KEY,
        extra={"plan": "growth", **extra},
        requests_per_minute=requests_per_minute,
    )


def test_without_budget_conn_id_there_is_no_budget() -> None:
    assert connection_budget(settings({})) is None


def test_the_budget_runs_at_the_connection_pace_and_a_task_pace_only_caps_it() -> None:
    budget = connection_budget(settings({"budget_conn_id": "budget_db"}, requests_per_minute=100))

    assert isinstance(budget, SharedBudget)
    assert budget.requests_per_minute == 300  # the plan's, for every process of the key
    assert budget.cap_requests_per_minute == 100  # this task's own pace
    assert budget.name == budget_name(KEY, "https://app.usehindsight.com/api/v1")
    assert (budget.store.budget_conn_id, budget.store.table) == ("budget_db", "hindsight_rate_budget")
    assert (
        connection_budget(settings({"budget_conn_id": "budget_db"}, requests_per_minute=900)).cap_requests_per_minute
        == 300
    )  # type: ignore[union-attr]


@pytest.mark.parametrize("table", ["rate budget", "budget;drop table x", "a.b.c", "1budget"])
def test_a_budget_table_that_is_not_a_table_name_is_refused_naming_the_extra(table: str) -> None:
    with pytest.raises(HindsightConfigurationError, match="budget_table") as raised:
        connection_budget(settings({"budget_conn_id": "budget_db", "budget_table": table}))

    assert KEY not in str(raised.value)
    assert raised.value.code == "invalid_connection"


def test_a_budget_conn_id_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(HindsightConfigurationError, match="budget_conn_id"):
        settings({"budget_conn_id": 5})


def test_hooks_of_one_key_and_pace_share_one_budget_in_a_process_until_closed() -> None:
    budget = connection_budget(settings({"budget_conn_id": "budget_db"}))

    assert connection_budget(settings({"budget_conn_id": "budget_db"})) is budget
    assert connection_budget(settings({"budget_conn_id": "budget_db"}, requests_per_minute=100)) is not budget
    SHARED_BUDGETS.close()
    assert connection_budget(settings({"budget_conn_id": "budget_db"})) is not budget


def test_a_budget_conn_id_that_names_no_connection_warns_once_with_the_fix_that_applies(
    set_connection: SetConnection, make_hook: MakeHook, hook_logs: LogRecorder, requests_mock: Any
) -> None:
    set_connection(extra={"budget_conn_id": "no_such_db", "requests_per_minute": FAST_RPM})
    requests_mock.patch(url(7), **ok(7))
    for _ in range(3):  # a task that makes a hook per call
        make_hook().update_interview(7, contact_name="Budget")

    warnings = [line for line in hook_logs.at(logging.WARNING) if "shared rate budget" in line]
    assert len(warnings) == 1
    assert "is not a defined Airflow connection. Fix: create it" in hook_logs.text()
    assert "up and writable" not in hook_logs.text()
    assert len(requests_mock.request_history) == 3
