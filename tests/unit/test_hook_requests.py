"""``HindsightHook`` over HTTP (requests-mock): what it sends, how it reads its connection, errors, test_connection."""

from __future__ import annotations

import datetime
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightBadRequestError,
    HindsightConfigurationError,
    HindsightError,
    HindsightNotFoundError,
    HindsightPermanentError,
    HindsightRateLimitError,
    HindsightResponseError,
    HindsightServerError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.pace import SAFETY_MARGIN
from airflow_provider_hindsight.resources.interviews import MAX_FIELD_CHARS, UPDATE_FIELDS

from .helpers import (
    ANY_INTERVIEW,
    API_KEY,
    CONTEXTS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PACE,
    DEFAULT_TIMEOUT,
    FAST_RPM,
    GATEWAY_PAGE,
    HOST,
    PLAN_PACES,
    PUBLIC_BASE_URL,
    TRANSIENT_STATUSES,
    VALUES,
    FakeTime,
    LogRecorder,
    MakeHook,
    SetConnection,
    echo_id,
    envelope,
    ok,
    url,
)

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

    with pytest.raises(HindsightConfigurationError, match="API key field"):
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


TEST_BUTTON_ANSWERS = [
    (400, True, "Connected to 127.0.0.1:8089: the API key was accepted."),
    (404, True, "Connected to 127.0.0.1:8089: the API key was accepted."),
    (429, True, "Connected to 127.0.0.1:8089: the API key was accepted."),
    (401, False, "127.0.0.1:8089 refused the API key (HTTP 401)."),
    (403, False, "127.0.0.1:8089 refused the API key (HTTP 403)."),
    (500, False, "127.0.0.1:8089 answered HTTP 500; try again later."),
    (503, False, "127.0.0.1:8089 answered HTTP 503; try again later."),
]


@pytest.mark.parametrize(("status", "accepted", "shown"), TEST_BUTTON_ANSWERS)
def test_test_connection_sends_one_empty_patch(
    hook: HindsightHook, requests_mock: Any, fake_time: FakeTime, status: int, accepted: bool, shown: str
) -> None:
    requests_mock.patch(url(0), status_code=status, json=envelope("any", "any"), headers={"Retry-After": "30"})

    assert hook.test_connection() == (accepted, shown)

    (sent,) = requests_mock.request_history  # once: someone waits at the Test button, nothing is retried
    assert (sent.method, sent.url, sent.body) == ("PATCH", url(0), b"{}")
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["User-Agent"].startswith("airflow-provider-hindsight/")  # the request core's session
    assert fake_time.sleeps == []


def test_test_connection_takes_its_turn_at_the_hook_pace(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    """The key check goes through the request core: paced like every other request of the hook."""
    set_connection(extra={"plan": "essentials"})
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    requests_mock.patch(url(0), status_code=404, json=envelope("not_found", "Interview request not found"))
    hook = make_hook()

    hook.update_interview(1, objective="x")
    assert hook.test_connection()[0] is True

    assert fake_time.sleeps == [pytest.approx(60 / (PLAN_PACES["essentials"] * SAFETY_MARGIN))]


def test_test_connection_refuses_a_redirect_and_names_where_it_points(hook: HindsightHook, requests_mock: Any) -> None:
    location = "https://www.example.com/login"
    requests_mock.patch(url(0), status_code=302, headers={"Location": location})
    followed = requests_mock.get(location, json={"interview_request_id": 0})

    succeeded, message = hook.test_connection()

    assert succeeded is False
    assert "HTTP 302" in message and repr(location) in message
    assert not followed.called


def test_test_connection_refuses_an_answer_that_is_not_the_api(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(0), status_code=200, text="<html>Welcome</html>", headers={"Content-Type": "text/html"})

    succeeded, message = hook.test_connection()

    assert succeeded is False
    assert "not with the documented JSON" in message
    assert requests_mock.call_count == 1


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
    assert "API key field" in message
    assert requests_mock.call_count == 0
