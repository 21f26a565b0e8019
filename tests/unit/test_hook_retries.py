"""``HindsightHook``'s retries (requests-mock): what is retried, how long it waits, what it logs."""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightConnectionError,
    HindsightRateLimitError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.retry import requested_wait
from airflow_provider_hindsight.testing import HindsightEmulator

from .helpers import (
    API_KEY,
    FAST_RPM,
    GATEWAY_PAGE,
    HOST,
    FakeTime,
    LogRecorder,
    MakeHook,
    SetConnection,
    envelope,
    leaked,
    ok,
    url,
)

# -- retries -------------------------------------------------------------------------------------


def rate_limited(headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"status_code": 429, "headers": headers or {}, "json": envelope("rate_limit_exceeded", "Slow down")}


def test_429_waits_what_retry_after_says(hook: HindsightHook, requests_mock: Any, fake_time: FakeTime) -> None:
    retry_after = "2"
    requests_mock.patch(url(1), [rate_limited({"Retry-After": retry_after}), ok(1)])

    assert hook.update_interview(1, objective="x") == {"interview_request_id": 1}

    assert requests_mock.call_count == 2
    assert fake_time.sleeps == [float(retry_after)]
    assert hook.rate_limited_count == 1


def test_429_waits_until_x_ratelimit_reset_as_unix_time(
    hook: HindsightHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    reset = math.floor(time.time()) + 30
    requests_mock.patch(url(1), [rate_limited({"X-RateLimit-Reset": str(reset)}), ok(1)])

    before = time.time()
    hook.update_interview(1, objective="x")
    after = time.time()

    (waited,) = fake_time.sleeps
    assert reset - after <= waited <= reset - before


def test_429_waits_x_ratelimit_reset_as_seconds(hook: HindsightHook, requests_mock: Any, fake_time: FakeTime) -> None:
    delay = "3"
    requests_mock.patch(url(1), [rate_limited({"X-RateLimit-Reset": delay}), ok(1)])

    hook.update_interview(1, objective="x")

    assert fake_time.sleeps == [float(delay)]


def test_429_retry_after_as_http_date(hook: HindsightHook, requests_mock: Any, fake_time: FakeTime) -> None:
    deadline = math.floor(time.time()) + 10
    requests_mock.patch(url(1), [rate_limited({"Retry-After": email.utils.formatdate(deadline, usegmt=True)}), ok(1)])

    before = time.time()
    hook.update_interview(1, objective="x")
    after = time.time()

    (waited,) = fake_time.sleeps
    assert deadline - after <= waited <= deadline - before


def test_429_without_a_wait_backs_off_exponentially(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    failures = 3
    requests_mock.patch(url(1), [rate_limited()] * failures + [ok(1)])

    make_hook(requests_per_minute=FAST_RPM, max_retries=failures).update_interview(1, objective="x")

    assert len(fake_time.sleeps) == failures
    for retry, waited in enumerate(fake_time.sleeps, start=1):
        base = 2.0 ** (retry - 1)
        assert base <= waited <= base + 1.0


def test_backoff_is_jittered(hook: HindsightHook, requests_mock: Any, fake_time: FakeTime) -> None:
    runs = 3
    requests_mock.patch(url(1), [rate_limited(), ok(1)] * runs)

    for _ in range(runs):
        hook.update_interview(1, objective="x")
        fake_time.advance(60)  # past any pace or pause, so that only backoffs are slept

    assert len(set(fake_time.sleeps)) == runs


def test_longest_wait_is_bounded_by_max_retry_wait(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    longest, failures = 3.0, 4
    requests_mock.patch(url(1), [{"status_code": 500, "json": envelope("internal_error", "x")}] * failures + [ok(1)])

    make_hook(requests_per_minute=FAST_RPM, max_retries=failures, max_retry_wait=longest).update_interview(
        1, objective="x"
    )

    assert len(fake_time.sleeps) == failures
    for retry, waited in enumerate(fake_time.sleeps, start=1):
        base = 2.0 ** (retry - 1)
        assert min(base, longest) <= waited <= min(base + 1.0, longest)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success(hook: HindsightHook, requests_mock: Any, fake_time: FakeTime, status: int) -> None:
    requests_mock.patch(url(1), [{"status_code": status, "text": GATEWAY_PAGE.format(status=status)}, ok(1)])

    assert hook.update_interview(1, objective="x") == {"interview_request_id": 1}

    assert requests_mock.call_count == 2
    (waited,) = fake_time.sleeps
    assert 1.0 <= waited <= 2.0


@pytest.mark.parametrize(
    ("failure", "code", "cause"),
    [
        (requests.exceptions.ConnectionError("Connection aborted."), "connection_error", "the connection was dropped"),
        (
            requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")),
            "connection_error",
            "connection refused",
        ),
        (
            requests.exceptions.ConnectionError(
                "Failed to resolve 'api.example' ([Errno -2] Name or service not known)"
            ),
            "connection_error",
            "DNS lookup failed",
        ),
        (requests.exceptions.SSLError("wrong version number"), "connection_error", "TLS handshake failed"),
        (requests.exceptions.ConnectTimeout(), "timeout", "connect timed out"),
        (requests.exceptions.ReadTimeout(), "timeout", "read timed out"),
        (
            requests.exceptions.ChunkedEncodingError(),
            "connection_error",
            "the connection broke while reading the answer",
        ),
    ],
    ids=["dropped", "refused", "dns", "tls", "connect-timeout", "read-timeout", "broken-answer"],
)
def test_network_failures_are_retried_then_raised_naming_the_cause_and_host(
    hindsight_connection: None,
    make_hook: MakeHook,
    requests_mock: Any,
    hook_logs: LogRecorder,
    failure: Exception,
    code: str,
    cause: str,
) -> None:
    max_retries = 2
    requests_mock.patch(url(1), exc=failure)

    with pytest.raises(HindsightConnectionError) as info:
        make_hook(requests_per_minute=FAST_RPM, max_retries=max_retries).update_interview(1, objective="x")

    assert requests_mock.call_count == max_retries + 1
    assert info.value.code == code
    assert f"{cause} on {HOST}" in str(info.value)
    assert not leaked(info.value)
    assert not isinstance(info.value, AirflowFailException)
    retries = [line for line in hook_logs.at(logging.WARNING) if line.startswith(f"Request failed: {cause} on {HOST}")]
    assert len(retries) == max_retries
    assert "requests.exceptions" not in str(info.value)


def test_a_tls_error_on_a_bare_host_fails_at_once_with_the_http_hint(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any
) -> None:
    """A bare host that fails its TLS handshake is a configuration mistake: no retries, permanent."""
    set_connection(host="127.0.0.1", port=9321)
    requests_mock.patch("https://127.0.0.1:9321/api/v1/interviews/1", exc=requests.exceptions.SSLError("wrong version"))

    with pytest.raises(HindsightConfigurationError) as info:
        make_hook(requests_per_minute=FAST_RPM, max_retries=5).update_interview(1, objective="x")

    assert requests_mock.call_count == 1
    assert isinstance(info.value, AirflowFailException)
    message = str(info.value)
    assert "TLS handshake failed on 127.0.0.1:9321" in message
    assert "without a scheme, so https:// is used" in message
    assert "http://127.0.0.1:9321/api/v1" in message
    assert "allow_insecure_http" in message


def test_network_failure_then_success(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(1), [{"exc": requests.exceptions.ConnectionError}, ok(1)])

    assert hook.update_interview(1, objective="x") == {"interview_request_id": 1}
    assert requests_mock.call_count == 2


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_attempts_are_bounded_by_max_retries(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime, max_retries: int
) -> None:
    requests_mock.patch(url(1), **rate_limited({"Retry-After": "1"}))

    with pytest.raises(HindsightRateLimitError):
        make_hook(requests_per_minute=FAST_RPM, max_retries=max_retries).update_interview(1, objective="x")

    assert requests_mock.call_count == max_retries + 1
    assert len(fake_time.sleeps) == max_retries


def test_retry_after_longer_than_max_retry_wait_is_raised_at_once(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    longest, asked = 10.0, 120
    requests_mock.patch(url(1), **rate_limited({"Retry-After": str(asked)}))

    with pytest.raises(HindsightRateLimitError) as info:
        make_hook(requests_per_minute=FAST_RPM, max_retry_wait=longest).update_interview(1, objective="x")

    assert info.value.retry_after == asked
    assert requests_mock.call_count == 1
    assert fake_time.sleeps == []


def test_a_429_holds_back_the_next_request_of_any_interview(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    retry_after = 3.0
    requests_mock.patch(url(1), **rate_limited({"Retry-After": f"{retry_after:g}"}))
    requests_mock.patch(url(2), **ok(2))
    hook = make_hook(requests_per_minute=FAST_RPM, max_retries=0)

    with pytest.raises(HindsightRateLimitError):
        hook.update_interview(1, objective="x")
    hook.update_interview(2, objective="y")

    assert fake_time.sleeps == [pytest.approx(retry_after)]


def test_each_retry_logs_one_warning_with_status_attempt_and_wait(
    hook: HindsightHook, requests_mock: Any, hook_logs: LogRecorder
) -> None:
    retries, retry_after, objective = 2, 2.0, "Understand why we lost the deal"
    requests_mock.patch(url(1), [rate_limited({"Retry-After": f"{retry_after:g}"})] * retries + [ok(1)])

    hook.update_interview(1, objective=objective)

    warnings = hook_logs.at(30)
    assert len(warnings) == retries
    for attempt, line in enumerate(warnings, start=1):
        assert "429" in line
        assert re.search(rf"\b{attempt}\b", line)
        assert f"{retry_after:.1f}" in line
    assert objective not in hook_logs.text()


def test_the_key_never_reaches_logs_or_errors(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, hook_logs: LogRecorder
) -> None:
    requests_mock.patch(
        url(1),
        [
            rate_limited({"Retry-After": "1"}),
            {"status_code": 500, "json": envelope("internal_error", "x")},
            {"exc": requests.exceptions.ConnectionError},
        ],
    )

    with pytest.raises(HindsightConnectionError) as info:
        make_hook(max_retries=2).update_interview(1, objective="x")

    assert hook_logs.at(logging.WARNING)
    assert API_KEY not in hook_logs.text()
    assert not leaked(info.value)


def test_the_key_never_reaches_wire_logs(
    set_connection: SetConnection, make_hook: MakeHook, hook_logs: LogRecorder
) -> None:
    """Over real HTTP on 127.0.0.1, so that urllib3 logs its DEBUG lines too."""
    with HindsightEmulator(api_key=API_KEY) as emulator:
        set_connection(host=emulator.base_url)
        emulator.inject_status(429, retry_after=1)
        emulator.inject_drop()
        make_hook(requests_per_minute=FAST_RPM, max_retries=2).update_interview(7, objective="x")
        assert emulator.request_count == 3

    assert any(record.name.startswith("urllib3") for record in hook_logs.records)
    assert API_KEY not in hook_logs.text()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "12", "X-RateLimit-Reset": "40"}, 12.0),
        ({"Retry-After": "soon", "X-RateLimit-Reset": "4"}, 4.0),
        ({"X-RateLimit-Reset": "4"}, 4.0),
        ({}, None),
        ({"Retry-After": "soon"}, None),
    ],
)
def test_requested_wait_from_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert requested_wait(headers) == expected


@pytest.mark.parametrize("offset", [12.0, -5.0])
def test_requested_wait_from_times(offset: float) -> None:
    """Dates and Unix times are read against ``now``; a moment already past means no wait."""
    now = 1_750_000_000.0
    as_date = {"Retry-After": email.utils.formatdate(now + offset, usegmt=True)}
    as_epoch = {"X-RateLimit-Reset": f"{now + offset:.0f}"}

    assert requested_wait(as_date, now=lambda: now) == max(offset, 0.0)
    assert requested_wait(as_epoch, now=lambda: now) == max(offset, 0.0)
