"""``HindsightHook`` over HTTP (requests-mock): what it sends, how it reads its connection, errors, retries, bulk."""

from __future__ import annotations

import datetime
import email.utils
import itertools
import json
import math
import re
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightBadRequestError,
    HindsightConfigurationError,
    HindsightConnectionError,
    HindsightError,
    HindsightNotFoundError,
    HindsightPermanentError,
    HindsightRateLimitError,
    HindsightResponseError,
    HindsightServerError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.pacing import SAFETY_MARGIN
from airflow_provider_hindsight.hooks.retry import requested_wait
from airflow_provider_hindsight.payload import MAX_FIELD_CHARS, UPDATE_FIELDS
from airflow_provider_hindsight.testing import HindsightEmulator

from .helpers import API_KEY, BASE_URL, FAST_RPM, HOST, FakeTime, LogRecorder, MakeHook, SetConnection

# The contract (DESIGN.md and the vendor's page), written out rather than read from the package.
PUBLIC_BASE_URL = "https://app.usehindsight.com/api/v1"
PLAN_PACES = {"essentials": 60, "growth": 300, "enterprise": 1000}
DEFAULT_PACE = 60
DEFAULT_TIMEOUT = 30
DEFAULT_MAX_RETRIES = 5
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)

CONTEXTS: dict[str, str | dict[str, Any]] = {
    "str": "Completed a 30-day POC; pricing was the blocker.",
    "dict": {"title": "CTO", "seats": 40, "tags": ["pricing", "jira"], "champion": None, "poc": {"days": 30}},
}
VALUES: dict[str, str] = {"contact_name": "Jane Smith", "objective": "Understand the pricing objection"}


def url(interview_id: object) -> str:
    return f"{BASE_URL}/interviews/{interview_id}"


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def ok(interview_id: int) -> dict[str, Any]:
    return {"json": {"interview_request_id": interview_id}}


def leaked(error: BaseException) -> bool:
    """Whether the key shows anywhere a user could see the exception."""
    shown = [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    return any(API_KEY in text for text in shown)


# -- what is sent --------------------------------------------------------------------------------


def field_combinations() -> Iterator[Any]:
    """Every non-empty subset of the three fields, ``contact_context`` both as text and as an object."""
    for size in range(1, len(UPDATE_FIELDS) + 1):
        for fields in itertools.combinations(UPDATE_FIELDS, size):
            context_forms = CONTEXTS.items() if "contact_context" in fields else [("", None)]
            for form, context in context_forms:
                given = {**VALUES, "contact_context": context}
                kwargs = {field: given[field] if field in fields else None for field in UPDATE_FIELDS}
                yield pytest.param(kwargs, id="+".join(fields) + (f"[{form}]" if form else ""))


@pytest.mark.parametrize("fields", list(field_combinations()))
def test_update_interview_patches_exactly_the_given_fields(
    hook: HindsightHook, requests_mock: Any, fields: dict[str, Any]
) -> None:
    interview_id = 4821
    answer = {"interview_request_id": interview_id}
    requests_mock.patch(url(interview_id), json=answer)

    result = hook.update_interview(interview_id, **fields)

    (sent,) = requests_mock.request_history
    assert sent.method == "PATCH"
    assert sent.url == url(interview_id)
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {field: value for field, value in fields.items() if value is not None}
    assert result == answer


def test_non_ascii_text_is_sent_as_utf8_json(hook: HindsightHook, requests_mock: Any) -> None:
    name, context = "Zoë Ødegård", {"notes": "山田さんの評価: 良い"}
    requests_mock.patch(url(7), **ok(7))

    hook.update_interview(7, contact_name=name, contact_context=context)

    assert json.loads(requests_mock.last_request.body.decode("utf-8")) == {
        "contact_name": name,
        "contact_context": context,
    }


def test_digit_string_id_is_sent_as_that_integer(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(4821), **ok(4821))

    hook.update_interview("4821", objective="x")

    assert requests_mock.last_request.url == url(4821)


def test_one_session_is_reused(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(1), **ok(1))
    requests_mock.patch(url(2), **ok(2))

    hook.update_interview(1, objective="a")
    session = hook.get_conn()
    hook.update_interview(2, objective="b")

    assert hook.get_conn() is session
    assert isinstance(session, requests.Session)


# -- the connection ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [None, ""])
def test_no_host_means_the_public_api(set_connection: SetConnection, make_hook: MakeHook, host: str | None) -> None:
    set_connection(host=host)
    assert make_hook().settings.base_url == PUBLIC_BASE_URL


@pytest.mark.parametrize(
    "host",
    [
        "https://hindsight.internal.example:8443/proxy/api/v1",
        "https://hindsight.internal.example:8443/proxy/api/v1/",
        "http://127.0.0.1:8089/api/v1",
        "http://127.10.20.30/api/v1",
        "http://localhost:5000/api/v1",
        "http://[::1]:8089/api/v1",
    ],
)
def test_full_url_host_is_kept(set_connection: SetConnection, make_hook: MakeHook, host: str) -> None:
    set_connection(host=host)
    assert make_hook().settings.base_url == host.rstrip("/")


@pytest.mark.parametrize("port", [None, 8443])
def test_bare_host_means_https_api_v1(set_connection: SetConnection, make_hook: MakeHook, port: int | None) -> None:
    host = "hindsight.internal.example"
    set_connection(host=host, port=port)
    netloc = f"{host}:{port}" if port else host
    assert make_hook().settings.base_url == f"https://{netloc}/api/v1"


@pytest.mark.parametrize("host", ["http://hindsight.example.com/api/v1", "http://10.0.0.5:8080/api/v1"])
@pytest.mark.parametrize("flag", [None, False, "false"])
def test_plain_http_to_a_remote_host_is_refused(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, host: str, flag: object
) -> None:
    set_connection(host=host, extra={} if flag is None else {"allow_insecure_http": flag})

    with pytest.raises(HindsightConfigurationError, match="allow_insecure_http") as info:
        make_hook().update_interview(1, objective="x")

    assert host in str(info.value)
    assert isinstance(info.value, AirflowFailException)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("flag", [True, "true"])
def test_plain_http_to_a_remote_host_with_allow_insecure_http(
    set_connection: SetConnection, make_hook: MakeHook, flag: object
) -> None:
    host = "http://hindsight.example.com/api/v1"
    set_connection(host=host, extra={"allow_insecure_http": flag})
    assert make_hook().settings.base_url == host


@pytest.mark.parametrize(
    "host",
    ["https://", "ftp://hindsight.example.com", "https://hind sight.example.com", "http://127.0.0.1:port/api/v1"],
)
def test_malformed_host_is_refused(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, host: str
) -> None:
    set_connection(host=host)

    with pytest.raises(HindsightConfigurationError, match="host") as info:
        make_hook().update_interview(1, objective="x")

    assert repr(host) in str(info.value)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("password", [None, ""])
def test_missing_key_is_refused_naming_the_password_field(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, password: str | None
) -> None:
    set_connection(password=password)

    with pytest.raises(HindsightConfigurationError, match="Password"):
        make_hook().update_interview(1, objective="x")

    assert requests_mock.call_count == 0


@pytest.mark.parametrize(("plan", "pace"), PLAN_PACES.items())
def test_plan_sets_the_pace(set_connection: SetConnection, make_hook: MakeHook, plan: str, pace: int) -> None:
    set_connection(extra={"plan": plan})
    assert make_hook().settings.requests_per_minute == pace


def test_unknown_plan_is_refused_listing_the_plans(set_connection: SetConnection, make_hook: MakeHook) -> None:
    set_connection(extra={"plan": "platinum"})

    with pytest.raises(HindsightConfigurationError, match="platinum") as info:
        make_hook().settings  # noqa: B018

    assert all(plan in str(info.value) for plan in PLAN_PACES)


def test_requests_per_minute_wins_over_plan(set_connection: SetConnection, make_hook: MakeHook) -> None:
    set_connection(extra={"plan": "enterprise", "requests_per_minute": 120})
    assert make_hook().settings.requests_per_minute == 120


def test_hook_arguments_win_over_extras(set_connection: SetConnection, make_hook: MakeHook) -> None:
    set_connection(extra={"plan": "enterprise", "requests_per_minute": 120, "timeout": 7, "max_retries": 1})

    settings = make_hook(requests_per_minute=30, timeout=3, max_retries=4).settings

    assert (settings.requests_per_minute, settings.timeout, settings.max_retries) == (30, 3, 4)


def test_default_pace_is_logged_once(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, hook_logs: LogRecorder
) -> None:
    set_connection()
    requests_mock.patch(url(1), **ok(1))
    hook = make_hook()

    hook.update_interview(1, objective="a")
    hook.update_interview(1, objective="b")

    assert hook.settings.requests_per_minute == DEFAULT_PACE
    (line,) = hook_logs.at(20)
    assert str(DEFAULT_PACE) in line
    assert "plan" in line
    assert "requests_per_minute" in line


def test_no_pace_line_when_a_plan_is_set(
    set_connection: SetConnection, make_hook: MakeHook, hook_logs: LogRecorder
) -> None:
    set_connection(extra={"plan": "growth"})
    make_hook().settings  # noqa: B018
    assert hook_logs.at(20) == []


def test_timeout_and_max_retries_extras_are_used(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any
) -> None:
    timeout, max_retries = 7.5, 2
    set_connection(extra={"timeout": timeout, "max_retries": max_retries})
    requests_mock.patch(url(1), status_code=500, json=envelope("internal_error", "boom"))

    with pytest.raises(HindsightServerError):
        make_hook(requests_per_minute=FAST_RPM).update_interview(1, objective="x")

    assert requests_mock.call_count == max_retries + 1
    assert {request.timeout for request in requests_mock.request_history} == {timeout}


def test_timeout_and_max_retries_defaults(hindsight_connection: None, make_hook: MakeHook, requests_mock: Any) -> None:
    requests_mock.patch(url(1), status_code=503, text="<html>Service Unavailable</html>")

    with pytest.raises(HindsightServerError):
        make_hook(requests_per_minute=FAST_RPM).update_interview(1, objective="x")

    assert requests_mock.call_count == DEFAULT_MAX_RETRIES + 1
    assert {request.timeout for request in requests_mock.request_history} == {DEFAULT_TIMEOUT}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", 0),
        ("timeout", "soon"),
        ("max_retries", -1),
        ("max_retries", "many"),
        ("requests_per_minute", 0),
        ("requests_per_minute", True),
    ],
)
def test_bad_extras_are_refused_by_name(
    set_connection: SetConnection, make_hook: MakeHook, name: str, value: object
) -> None:
    set_connection(extra={name: value})
    with pytest.raises(HindsightConfigurationError, match=name):
        make_hook().settings  # noqa: B018


def test_settings_repr_hides_the_key(hook: HindsightHook) -> None:
    assert API_KEY not in repr(hook.settings)


# -- documented errors ---------------------------------------------------------------------------

GATEWAY_PAGE = "<html><body><h1>{status}</h1>nginx</body></html>"


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (
            400,
            envelope("bad_request", "Invalid parameters", {"missing_fields": ["objective"]}),
            HindsightBadRequestError,
        ),
        (401, envelope("unauthorized", "Invalid API key"), HindsightAuthError),
        (403, envelope("forbidden", "Not allowed"), HindsightAuthError),
        (404, envelope("not_found", "Interview request not found"), HindsightNotFoundError),
        (429, envelope("rate_limit_exceeded", "Rate limit exceeded"), HindsightRateLimitError),
        (500, envelope("internal_error", "An unexpected error occurred"), HindsightServerError),
        (502, None, HindsightServerError),
        (503, None, HindsightServerError),
        (504, None, HindsightServerError),
    ],
)
def test_documented_errors_are_typed(
    make_hook: MakeHook,
    hindsight_connection: None,
    requests_mock: Any,
    status: int,
    body: dict[str, Any] | None,
    error_class: type[HindsightError],
) -> None:
    max_retries = 1
    if body is None:
        requests_mock.patch(url(1), status_code=status, text=GATEWAY_PAGE.format(status=status))
    else:
        requests_mock.patch(url(1), status_code=status, json=body)

    with pytest.raises(error_class) as info:
        make_hook(requests_per_minute=FAST_RPM, max_retries=max_retries).update_interview(1, objective="x")

    error = info.value
    sent = body["error"] if body else {}
    assert error.status_code == status
    assert error.code == sent.get("code")
    assert error.message.startswith(sent.get("message", ""))
    assert error.details == sent.get("details", {})
    transient = status in TRANSIENT_STATUSES
    assert requests_mock.call_count == (max_retries + 1 if transient else 1)
    assert isinstance(error, AirflowFailException) is not transient


@pytest.mark.parametrize("status", [405, 409, 410, 413, 422])
def test_other_4xx_are_permanent_and_not_retried(hook: HindsightHook, requests_mock: Any, status: int) -> None:
    requests_mock.patch(url(1), status_code=status, json=envelope("whatever", "No"))

    with pytest.raises(HindsightPermanentError) as info:
        hook.update_interview(1, objective="x")

    assert info.value.status_code == status
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    "answer",
    [{"text": "<html>Sign in</html>"}, {"json": []}, {"json": {"ok": True}}],
    ids=["html", "json-list", "json-without-id"],
)
def test_2xx_that_is_not_the_documented_json_is_a_hindsight_error(
    hook: HindsightHook, requests_mock: Any, answer: dict[str, Any]
) -> None:
    requests_mock.patch(url(1), status_code=200, **answer)

    with pytest.raises(HindsightResponseError) as info:
        hook.update_interview(1, objective="x")

    assert isinstance(info.value, HindsightError)
    assert info.value.status_code == 200


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
    ("failure", "code"),
    [
        (requests.exceptions.ConnectionError, "connection_error"),
        (requests.exceptions.ConnectTimeout, "timeout"),
        (requests.exceptions.ReadTimeout, "timeout"),
    ],
)
def test_network_failures_are_retried_then_raised_naming_the_host(
    hindsight_connection: None,
    make_hook: MakeHook,
    requests_mock: Any,
    failure: type[Exception],
    code: str,
) -> None:
    max_retries = 2
    requests_mock.patch(url(1), exc=failure)

    with pytest.raises(HindsightConnectionError) as info:
        make_hook(requests_per_minute=FAST_RPM, max_retries=max_retries).update_interview(1, objective="x")

    assert requests_mock.call_count == max_retries + 1
    assert info.value.code == code
    assert HOST in str(info.value)
    assert not leaked(info.value)
    assert not isinstance(info.value, AirflowFailException)


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

    assert hook_logs.records
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


# -- refused before sending ----------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["12/../deals", "abc", 0, -1, True, None, "", "4821 ", 1.5, "0012"], ids=repr)
def test_bad_ids_are_refused_before_sending(hook: HindsightHook, requests_mock: Any, bad_id: object) -> None:
    with pytest.raises(HindsightValidationError, match="interview_request_id") as info:
        hook.update_interview(bad_id, objective="x")  # type: ignore[arg-type]

    assert isinstance(info.value, ValueError)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("fields", [{}, dict.fromkeys(UPDATE_FIELDS)], ids=["no-field", "all-none"])
def test_nothing_to_update_is_refused_before_sending(
    hook: HindsightHook, requests_mock: Any, fields: dict[str, Any]
) -> None:
    with pytest.raises(HindsightValidationError) as info:
        hook.update_interview(1, **fields)

    assert all(field in str(info.value) for field in UPDATE_FIELDS)
    assert requests_mock.call_count == 0


class Opaque:
    """An object json cannot encode."""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("contact_context", {"pricing", "jira"}),
        ("contact_context", Opaque()),
        ("contact_context", {"closed_at": datetime.datetime(2024, 1, 5, tzinfo=datetime.timezone.utc)}),
        ("contact_context", float("nan")),
        ("contact_context", {"score": float("nan")}),
        ("contact_context", {"deal": {"competitors": {"X", "Y"}}}),
        ("contact_context", {("a", "b"): "tuple key"}),
        ("contact_context", {"notes": "x" * MAX_FIELD_CHARS}),
        ("contact_name", 42),
        ("contact_name", ["Jane"]),
        ("contact_name", "x" * MAX_FIELD_CHARS),
        ("objective", {"goal": "pricing"}),
        ("objective", b"pricing"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 else type(value).__name__,
)
def test_bad_fields_are_refused_naming_the_field(
    hook: HindsightHook, requests_mock: Any, field: str, value: object
) -> None:
    with pytest.raises(HindsightValidationError, match=field) as info:
        hook.update_interview(1, **{field: value})

    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert requests_mock.call_count == 0


# -- test_connection -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "accepted"), [(400, True), (404, True), (401, False), (403, False), (500, False)])
def test_test_connection_sends_one_empty_patch(
    hook: HindsightHook, requests_mock: Any, status: int, accepted: bool
) -> None:
    requests_mock.patch(url(0), status_code=status, json=envelope("any", "any"))

    succeeded, message = hook.test_connection()

    assert succeeded is accepted
    (sent,) = requests_mock.request_history
    assert (sent.method, sent.url, sent.json()) == ("PATCH", url(0), {})
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in message


def test_test_connection_when_unreachable(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(0), exc=requests.exceptions.ConnectionError)

    succeeded, message = hook.test_connection()

    assert succeeded is False
    assert HOST in message
    assert requests_mock.call_count == 1


def test_test_connection_without_a_key(set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any) -> None:
    set_connection(password=None)

    succeeded, message = make_hook().test_connection()

    assert succeeded is False
    assert "Password" in message
    assert requests_mock.call_count == 0


# -- the bulk engine -----------------------------------------------------------------------------

ANY_INTERVIEW = re.compile(rf"^{re.escape(BASE_URL)}/interviews/\d+$")


def echo_id(request: Any, context: Any) -> dict[str, int]:
    return {"interview_request_id": int(request.path.rsplit("/", 1)[1])}


def test_update_interviews_accounts_for_every_row(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(1), **ok(1))
    requests_mock.patch(url(3), status_code=404, json=envelope("not_found", "Interview request not found"))
    first = {"interview_request_id": 1, "objective": "first"}
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (first, {"succeeded": True}),
        ({"interview_request_id": "abc", "objective": "x"}, {"code": "invalid_input", "names": "interview_request_id"}),
        ({"interview_request_id": 1, "objective": "again"}, {"code": "duplicate_id", "id": 1}),
        ({"interview_request_id": 3, "contact_name": "x"}, {"status_code": 404, "code": "not_found", "id": 3}),
        ({"interview_request_id": 4, "objective": "x", "deal": 9}, {"code": "invalid_input", "names": "deal"}),
        ({"objective": "no id"}, {"code": "invalid_input", "names": "interview_request_id"}),
        ({"interview_request_id": 5}, {"code": "invalid_input", "names": "contact_context"}),
    ]

    results = {result.row: result for result in hook.update_interviews(row for row, _ in cases)}

    assert sorted(results) == list(range(1, len(cases) + 1))
    for position, (row, expected) in enumerate(cases, start=1):
        result = results[position]
        assert result.succeeded is expected.get("succeeded", False)
        assert result.interview_request_id == expected.get("id", row.get("interview_request_id"))
        assert result.status_code == expected.get("status_code")
        assert result.code == expected.get("code")
        assert expected.get("names", "") in (result.message or "")
    sent = [(request.path, request.json()) for request in requests_mock.request_history]
    assert sorted(sent) == [
        ("/api/v1/interviews/1", {"objective": "first"}),
        ("/api/v1/interviews/3", {"contact_name": "x"}),
    ]


@pytest.mark.parametrize("max_workers", [1, 4])
def test_update_interviews_pulls_rows_lazily(hook: HindsightHook, requests_mock: Any, max_workers: int) -> None:
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    count = 60
    pulled = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for interview_id in range(1, count + 1):
            pulled += 1
            yield {"interview_request_id": interview_id, "objective": f"objective {interview_id}"}

    consumed = []
    for result in hook.update_interviews(rows(), max_workers=max_workers):
        consumed.append(result)
        assert pulled <= len(consumed) + 2 * max_workers

    assert sorted(result.row for result in consumed) == list(range(1, count + 1))
    assert all(result.succeeded for result in consumed)
    assert {result.row: result.interview_request_id for result in consumed} == {n: n for n in range(1, count + 1)}


def test_pace_comes_from_the_connection(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    """Back-to-back updates start ``60 / (pace * SAFETY_MARGIN)`` seconds apart, on the hook's clock."""
    plan, updates = "essentials", 3
    set_connection(extra={"plan": plan})
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    hook = make_hook()

    for interview_id in range(1, updates + 1):
        hook.update_interview(interview_id, objective="x")

    gap = 60 / (PLAN_PACES[plan] * SAFETY_MARGIN)
    assert fake_time.sleeps == [pytest.approx(gap)] * (updates - 1)


@pytest.mark.parametrize(
    "bad_row",
    [
        {"interview_request_id": 2, "objective": "Caf\udce9 owner"},
        {"interview_request_id": "9" * 5000, "objective": "x"},
    ],
    ids=["lone-surrogate", "5000-digit-id"],
)
def test_a_row_that_cannot_be_encoded_is_reported_not_fatal(
    hook: HindsightHook, requests_mock: Any, bad_row: dict[str, Any]
) -> None:
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    rows = [{"interview_request_id": 1, "objective": "ok"}, bad_row, {"interview_request_id": 3, "objective": "ok"}]

    results = sorted(hook.update_interviews(rows), key=lambda result: result.row)

    assert [result.succeeded for result in results] == [True, False, True]
    assert results[1].code == "invalid_input"
