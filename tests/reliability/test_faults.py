"""Fault matrix: every fault the network or the API can throw, through real HTTP on 127.0.0.1.

Each case checks the outcome, the exact number of requests that reached the server, and the
emulator's stored state: a success stores exactly the update, a failure leaves the interview as it
was, and every retry resends the same body (PATCH is idempotent, so a retry cannot corrupt).
"""

from __future__ import annotations

import json
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import (
    HindsightConnectionError,
    HindsightRateLimitError,
    HindsightResponseError,
    HindsightServerError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.retry import RetryPolicy
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import task_states, xcom_value

from .helpers import CONNECTION_MAX_RETRIES, CONNECTION_TIMEOUT, ConnectTo, TruncatingServer, host_of, settle

ID = 4821
PRIOR: dict[str, Any] = {"contact_context": "Met at the 2025 summit.", "contact_name": "Jane Smith", "objective": None}
UPDATE: dict[str, Any] = {
    "contact_context": {"title": "CTO", "stage": "Closed Lost", "seats": 40},
    "objective": "Understand the pricing objection",
}

MAX_RETRIES = 3
SHORT_WAIT = 0.05
"""``max_retry_wait`` for cases where the length of the wait is not under test."""
TIMEOUT = 0.25
OVERHEAD = 0.5
"""Seconds allowed per request on top of the policy's waits (loopback round trip, thread start-up)."""


@pytest.fixture
def emulator(hindsight_emulator_factory: Callable[..., HindsightEmulator]) -> HindsightEmulator:
    """An emulator holding interview ``ID`` with ``PRIOR`` state, ``hindsight_default`` pointing at it."""
    emulator = hindsight_emulator_factory()
    emulator.add_interview(ID, **PRIOR)
    return emulator


def fast_hook(**kwargs: Any) -> HindsightHook:
    """A hook with ``MAX_RETRIES`` retries that wait at most ``SHORT_WAIT`` each."""
    return HindsightHook(**{"max_retries": MAX_RETRIES, "max_retry_wait": SHORT_WAIT, **kwargs})


def statuses(emulator: HindsightEmulator) -> list[int]:
    return [request.status for request in emulator.requests]


def assert_updated(emulator: HindsightEmulator) -> None:
    assert emulator.interview(ID) == {**PRIOR, **UPDATE}
    assert [request.json for request in emulator.requests] == [UPDATE] * len(emulator.requests)


def assert_unchanged(emulator: HindsightEmulator) -> None:
    assert emulator.interview(ID) == PRIOR
    assert [request.json for request in emulator.requests] == [UPDATE] * len(emulator.requests)


def longest_sleep(policy: RetryPolicy) -> float:
    """The most a request can sleep between attempts under ``policy`` when the API names no wait."""
    return sum(
        min(policy.initial_backoff * 2**retry + policy.jitter, policy.max_wait) for retry in range(policy.max_retries)
    )


def shortest_sleep(policy: RetryPolicy) -> float:
    return sum(min(policy.initial_backoff * 2**retry, policy.max_wait) for retry in range(policy.max_retries))


# -- 429 -----------------------------------------------------------------------------------------


def test_429_waits_what_retry_after_says_once(emulator: HindsightEmulator) -> None:
    retry_after = 1
    emulator.inject_status(429, retry_after=retry_after)

    assert HindsightHook().update_interview(ID, **UPDATE) == {"interview_request_id": ID}

    first, second = emulator.requests
    assert (first.status, second.status) == (429, 200)
    # Waited what was asked, and only once (the engine-wide pause and the retry wait overlap).
    assert retry_after <= second.time - first.time < retry_after + OVERHEAD
    assert_updated(emulator)


@pytest.mark.parametrize("as_unix_time", [True, False], ids=["unix-time", "seconds"])
def test_429_with_only_x_ratelimit_reset_waits_until_the_reset(emulator: HindsightEmulator, as_unix_time: bool) -> None:
    wait = 0.6
    reset = time.time() + wait if as_unix_time else wait
    emulator.inject_status(429, ratelimit_reset=reset)

    HindsightHook().update_interview(ID, **UPDATE)

    first, second = emulator.requests
    assert (first.status, second.status) == (429, 200)
    earliest = reset if as_unix_time else first.time + wait
    assert earliest <= second.time < earliest + OVERHEAD
    assert_updated(emulator)


def test_429_without_wait_headers_backs_off_exponentially_with_jitter(emulator: HindsightEmulator) -> None:
    emulator.inject_status(429)
    hook = HindsightHook()

    hook.update_interview(ID, **UPDATE)

    policy = hook.retry_policy
    first, second = emulator.requests
    assert (first.status, second.status) == (429, 200)
    assert policy.initial_backoff <= second.time - first.time < policy.initial_backoff + policy.jitter + OVERHEAD
    assert_updated(emulator)


def test_429_storm_longer_than_the_budget_fails_clearly_in_bounded_time(emulator: HindsightEmulator) -> None:
    hook = fast_hook(max_retry_wait=0.2)
    emulator.inject_status(429, times=2 * (MAX_RETRIES + 1))  # outlasts the budget

    started = time.monotonic()
    with pytest.raises(HindsightRateLimitError) as raised:
        hook.update_interview(ID, **UPDATE)
    elapsed = time.monotonic() - started

    policy = hook.retry_policy
    assert (raised.value.status_code, raised.value.code) == (429, "rate_limit_exceeded")
    assert statuses(emulator) == [429] * (MAX_RETRIES + 1)
    assert shortest_sleep(policy) <= elapsed < longest_sleep(policy) + (MAX_RETRIES + 1) * OVERHEAD
    assert_unchanged(emulator)


def test_retry_after_longer_than_max_retry_wait_is_handed_back_at_once(emulator: HindsightEmulator) -> None:
    """No point retrying before the API allows it: the error carries the wait, for deferral or Airflow retries."""
    max_retry_wait, retry_after = 1.0, 30
    emulator.inject_status(429, retry_after=retry_after)

    started = time.monotonic()
    with pytest.raises(HindsightRateLimitError) as raised:
        HindsightHook(max_retry_wait=max_retry_wait).update_interview(ID, **UPDATE)

    assert time.monotonic() - started < max_retry_wait
    assert raised.value.retry_after == retry_after
    assert statuses(emulator) == [429]
    assert_unchanged(emulator)


# -- 5xx and bodies that are not JSON ------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_burst_then_success(emulator: HindsightEmulator, status: int) -> None:
    emulator.inject_status(status, times=MAX_RETRIES)

    assert fast_hook().update_interview(ID, **UPDATE) == {"interview_request_id": ID}

    assert statuses(emulator) == [status] * MAX_RETRIES + [200]
    assert_updated(emulator)


def test_html_502_page_is_retried(emulator: HindsightEmulator) -> None:
    emulator.inject_status(502, html=True, times=MAX_RETRIES)

    assert fast_hook().update_interview(ID, **UPDATE) == {"interview_request_id": ID}

    assert statuses(emulator) == [502] * MAX_RETRIES + [200]
    assert_updated(emulator)


def test_html_502_page_that_persists_is_a_server_error_saying_what_came_back(emulator: HindsightEmulator) -> None:
    emulator.inject_status(502, html=True, times=MAX_RETRIES + 1)

    with pytest.raises(HindsightServerError) as raised:
        fast_hook().update_interview(ID, **UPDATE)

    assert (raised.value.status_code, raised.value.code) == (502, None)
    assert "HTTP 502" in str(raised.value)
    assert "without its JSON error envelope" in str(raised.value)
    assert statuses(emulator) == [502] * (MAX_RETRIES + 1)
    assert_unchanged(emulator)


def test_200_with_a_body_that_is_not_json_is_a_transient_response_error(emulator: HindsightEmulator) -> None:
    emulator.inject_invalid_json(times=MAX_RETRIES + 1)

    with pytest.raises(HindsightResponseError) as raised:
        fast_hook().update_interview(ID, **UPDATE)

    assert (raised.value.status_code, raised.value.code) == (200, "invalid_response")
    assert "text/html" in str(raised.value)  # says what came back
    assert not isinstance(raised.value, AirflowFailException)  # Airflow's task retries may try again
    assert statuses(emulator) == [200] * (MAX_RETRIES + 1)  # transient, so retried like a 5xx
    assert_unchanged(emulator)


# -- the network -----------------------------------------------------------------------------------


def test_read_timeout_is_retried_then_the_update_lands(emulator: HindsightEmulator) -> None:
    emulator.inject_delay(3 * TIMEOUT)

    assert fast_hook(timeout=TIMEOUT).update_interview(ID, **UPDATE) == {"interview_request_id": ID}

    settle(emulator, 2)  # the timed-out request is answered (and applied) once its delay is over
    assert emulator.request_count == 2
    assert_updated(emulator)


def test_read_timeout_that_persists_names_the_host_in_bounded_time(emulator: HindsightEmulator) -> None:
    attempts = MAX_RETRIES + 1
    emulator.inject_delay(3 * TIMEOUT, times=attempts)

    started = time.monotonic()
    with pytest.raises(HindsightConnectionError) as raised:
        fast_hook(timeout=TIMEOUT).update_interview(ID, **UPDATE)
    elapsed = time.monotonic() - started

    assert raised.value.code == "timeout"
    assert host_of(emulator.base_url) in str(raised.value)
    assert attempts * TIMEOUT <= elapsed < attempts * (TIMEOUT + OVERHEAD) + MAX_RETRIES * SHORT_WAIT
    settle(emulator, attempts)
    assert emulator.request_count == attempts
    # The API may still apply a request the client gave up on; every attempt carried the same body.
    assert [request.json for request in emulator.requests] == [UPDATE] * attempts


def test_dropped_connection_is_retried(emulator: HindsightEmulator) -> None:
    emulator.inject_drop(times=MAX_RETRIES)

    assert fast_hook().update_interview(ID, **UPDATE) == {"interview_request_id": ID}

    assert statuses(emulator) == [0] * MAX_RETRIES + [200]
    assert_updated(emulator)


def test_dropped_connection_that_persists_names_the_host(emulator: HindsightEmulator) -> None:
    emulator.inject_drop(times=MAX_RETRIES + 1)

    with pytest.raises(HindsightConnectionError) as raised:
        fast_hook().update_interview(ID, **UPDATE)

    assert raised.value.code == "connection_error"
    assert host_of(emulator.base_url) in str(raised.value)
    assert statuses(emulator) == [0] * (MAX_RETRIES + 1)
    assert_unchanged(emulator)


def test_connection_broken_mid_answer_is_retried(
    truncating_server: Callable[[int], TruncatingServer], connect_to: ConnectTo
) -> None:
    server = truncating_server(MAX_RETRIES)
    connect_to(server.base_url)

    assert fast_hook().update_interview(ID, **UPDATE) == {"interview_request_id": ID}

    assert [json.loads(body) for body in server.bodies] == [UPDATE] * (MAX_RETRIES + 1)


def test_connection_broken_mid_answer_that_persists_names_the_host(
    truncating_server: Callable[[int], TruncatingServer], connect_to: ConnectTo
) -> None:
    server = truncating_server(MAX_RETRIES + 1)
    connect_to(server.base_url)

    with pytest.raises(HindsightConnectionError) as raised:
        fast_hook().update_interview(ID, **UPDATE)

    assert raised.value.code == "connection_error"
    assert host_of(server.base_url) in str(raised.value)
    assert len(server.bodies) == MAX_RETRIES + 1


def test_refused_connection_fails_after_bounded_attempts(
    emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    """The API goes away mid-run: the next update is refused on every attempt, then named."""
    hook = fast_hook()
    hook.update_interview(ID, **UPDATE)
    emulator.stop()

    started = time.monotonic()
    with pytest.raises(HindsightConnectionError) as raised:
        hook.update_interview(ID + 1, objective="Renewal")
    elapsed = time.monotonic() - started

    assert raised.value.code == "connection_error"
    host = host_of(emulator.base_url)
    assert f"connection refused on {host}" in str(raised.value)
    assert f"Is the Hindsight emulator (or your local server) running on {host}?" in str(raised.value)
    assert "tenacity" not in "".join(traceback.format_exception(raised.value))
    assert elapsed < MAX_RETRIES * SHORT_WAIT + (MAX_RETRIES + 1) * OVERHEAD
    # One WARNING per retry (Airflow 2 may print a line twice: to the console and to logging).
    logged = task_logs()
    pattern = rf"Request failed: connection refused on {re.escape(host)}; retry (\d+) of {MAX_RETRIES}\b"
    retries = {int(attempt) for attempt in re.findall(pattern, logged)}
    assert retries == set(range(1, MAX_RETRIES + 1))
    assert emulator.request_count == 1
    assert_updated(emulator)


# -- the bulk operator: faults on some rows only ---------------------------------------------------

BUDGET = 1 + CONNECTION_MAX_RETRIES
"""Requests one row may spend under the test DAGs' connection."""


@dataclass(frozen=True)
class RowFault:
    """A fault injected for one interview, and what the row must end as."""

    interview_request_id: int
    inject: str
    times: int
    retried: bool
    failure: tuple[int | None, str | None] | None = None
    """``(status_code, code)`` the summary reports when the row fails; ``None``: it succeeds."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        if not self.retried:
            return 1
        return min(self.times + 1, BUDGET)


ROW_FAULTS = [
    RowFault(102, "status", CONNECTION_MAX_RETRIES, True, options={"status": 429, "retry_after": 0}),
    RowFault(103, "status", BUDGET, True, (502, None), {"status": 502, "html": True}),
    RowFault(104, "invalid_json", BUDGET, True, (200, "invalid_response")),
    RowFault(105, "delay", BUDGET, True, (None, "timeout"), {"seconds": CONNECTION_TIMEOUT + 0.25}),
    RowFault(106, "drop", CONNECTION_MAX_RETRIES, True),
    RowFault(107, "status", 1, False, (404, "not_found"), {"status": 404}),
    RowFault(108, "status", CONNECTION_MAX_RETRIES, True, options={"status": 503}),
    RowFault(109, "drop", BUDGET, True, (None, "connection_error")),
]


def test_bulk_faults_on_some_rows_every_row_accounted_for(
    run_dag: Any, dag_emulator: Callable[..., HindsightEmulator]
) -> None:
    emulator = dag_emulator()
    faults = {fault.interview_request_id: fault for fault in ROW_FAULTS}
    ids = range(101, 112)
    rows: list[dict[str, Any]] = [
        {"interview_request_id": n, "contact_context": {"seats": n}, "objective": f"Renewal {n}"} for n in ids
    ]
    for row in rows:
        emulator.add_interview(row["interview_request_id"], **PRIOR)
    for fault in ROW_FAULTS:
        inject = getattr(emulator, f"inject_{fault.inject}")
        inject(**fault.options, times=fault.times, interview_request_id=fault.interview_request_id)

    dag_run = run_dag("reliability_bulk_tolerant", rows=rows)

    assert task_states(dag_run) == {"rows": "success", "update": "success"}
    summary = xcom_value(dag_run, "update", key="summary")
    failing = {n: fault.failure for n, fault in faults.items() if fault.failure}
    assert summary["total"] == summary["succeeded"] + summary["failed"] == len(rows)
    assert summary["failed"] == len(summary["failures"]) == len(failing)
    reported = {failure["interview_request_id"]: failure for failure in summary["failures"]}
    assert {n: (f["status_code"], f["code"]) for n, f in reported.items()} == failing
    for n, failure in reported.items():
        assert failure["row"] == ids.index(n) + 1
        assert isinstance(failure["message"], str)
        assert failure["message"]
    assert host_of(emulator.base_url) in reported[105]["message"]

    expected_requests = {n: faults[n].requests if n in faults else 1 for n in ids}
    settle(emulator, sum(expected_requests.values()))
    assert Counter(int(request.path.rsplit("/", 1)[1]) for request in emulator.requests) == expected_requests
    for row in rows:
        n = row["interview_request_id"]
        updated = {**PRIOR, **{key: value for key, value in row.items() if key != "interview_request_id"}}
        if n not in failing:
            assert emulator.interview(n) == updated
        elif failing[n][1] == "timeout":  # answered after the client gave up: the API may have applied it
            assert emulator.interview(n) in (PRIOR, updated)
        else:
            assert emulator.interview(n) == PRIOR
