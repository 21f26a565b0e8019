"""``create_interview`` and ``get_interview`` (requests-mock): the exact request, validation before
sending, and the create rule: retried only when it cannot have reached Hindsight."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightBadRequestError,
    HindsightConnectionError,
    HindsightNotFoundError,
    HindsightRateLimitError,
    HindsightUnknownOutcomeError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook

from .helpers import API_KEY, BASE_URL, GATEWAY_PAGE, MakeHook, envelope

CREATE_URL = f"{BASE_URL}/interviews"
CREATED = {
    "interview_request_id": 4821,
    "contact_id": "contact_abc",
    "deal_id": "deal_xyz789",
    "survey_url": "https://app.usehindsight.com/survey?token=tok",
    "survey_token": "tok",
    "status": "sent",
}
BODY = {"contact_email": "jane@example.com", "sequence_id": "seq_1"}


def created() -> dict[str, Any]:
    return {"status_code": 201, "json": CREATED}


def test_create_sends_exactly_the_given_fields(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.post(CREATE_URL, **created())

    answer = hook.create_interview(
        contact_email="jane@example.com",
        interview_type_id="type_1",
        contact_name="Jane Smith",
        contact_context={"title": "CTO"},
        deal_id="deal_xyz789",
        objective="Why we lost",
    )

    assert answer == CREATED
    (sent,) = requests_mock.request_history
    assert sent.method == "POST"
    assert sent.url == CREATE_URL
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {
        "contact_email": "jane@example.com",
        "interview_type_id": "type_1",
        "contact_name": "Jane Smith",
        "contact_context": {"title": "CTO"},
        "deal_id": "deal_xyz789",
        "objective": "Why we lost",
    }


def test_create_leaves_none_fields_out(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.post(CREATE_URL, **created())

    hook.create_interview(contact_email="jane@example.com", sequence_id="seq_1", contact_name=None, deal_id=None)

    assert requests_mock.last_request.body == b'{"contact_email":"jane@example.com","sequence_id":"seq_1"}'


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"contact_email": None, "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "", "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "jane.example.com", "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "jane@@example.com", "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "jane@example", "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "ja ne@example.com", "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "j" * 250 + "@example.com", "sequence_id": "seq_1"}, "contact_email"),
        ({"contact_email": "jane@example.com"}, "sequence_id"),
        ({"contact_email": "jane@example.com", "sequence_id": "seq_1", "interview_type_id": "type_1"}, "sequence_id"),
        ({"contact_email": "jane@example.com", "sequence_id": "  "}, "sequence_id"),
        ({"contact_email": "jane@example.com", "interview_type_id": ""}, "interview_type_id"),
        ({**BODY, "contact_name": 7}, "contact_name"),
        ({**BODY, "deal_id": 1042}, "deal_id"),
        ({**BODY, "objective": ["x"]}, "objective"),
        ({**BODY, "contact_context": 3.5}, "contact_context"),
        ({**BODY, "contact_context": {"when": object()}}, "contact_context"),
    ],
)
def test_bad_creates_are_refused_before_sending_naming_the_field(
    hook: HindsightHook, requests_mock: Any, fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(HindsightValidationError) as info:
        hook.create_interview(**fields)

    assert info.value.field == named
    assert named in str(info.value)
    assert "example.com" not in str(info.value), "an e-mail address is personal data: never in a message"
    assert requests_mock.call_count == 0


RETRIED_BEFORE_SUCCESS = {
    "429 (the limiter answered)": {"status_code": 429, "json": envelope("rate_limit_exceeded", "slow down")},
    "connection refused": {"exc": requests.exceptions.ConnectionError("[Errno 111] Connection refused")},
    "DNS lookup failed": {"exc": requests.exceptions.ConnectionError("Failed to resolve 'app.usehindsight.com'")},
    "TLS handshake failed": {"exc": requests.exceptions.SSLError("certificate verify failed")},
    "connect timed out": {"exc": requests.exceptions.ConnectTimeout("connect timeout")},
}


@pytest.mark.parametrize("failure", list(RETRIED_BEFORE_SUCCESS))
def test_a_create_that_cannot_have_arrived_is_retried(hook: HindsightHook, requests_mock: Any, failure: str) -> None:
    requests_mock.post(CREATE_URL, [RETRIED_BEFORE_SUCCESS[failure], created()])

    assert hook.create_interview(**BODY) == CREATED
    assert requests_mock.call_count == 2


UNKNOWN_AFTER_ONE_TRY = {
    "read timed out": {"exc": requests.exceptions.ReadTimeout("read timeout")},
    "connection dropped": {"exc": requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")},
    "broke while reading": {"exc": requests.exceptions.ChunkedEncodingError("incomplete read")},
    "500": {"status_code": 500, "json": envelope("internal_error", "boom")},
    "502 page": {"status_code": 502, "text": GATEWAY_PAGE.format(status=502)},
    "503": {"status_code": 503, "json": envelope("internal_error", "down")},
    "504": {"status_code": 504, "text": ""},
    "201 that is not the documented JSON": {"status_code": 201, "text": "<html>ok</html>"},
    "201 without survey_url": {"status_code": 201, "json": {"interview_request_id": 1}},
}


@pytest.mark.parametrize("failure", list(UNKNOWN_AFTER_ONE_TRY))
def test_a_create_that_may_have_arrived_is_never_retried(hook: HindsightHook, requests_mock: Any, failure: str) -> None:
    requests_mock.post(CREATE_URL, [UNKNOWN_AFTER_ONE_TRY[failure], created()])

    with pytest.raises(HindsightUnknownOutcomeError) as info:
        hook.create_interview(**BODY)

    assert requests_mock.call_count == 1
    assert info.value.code == "unknown_outcome"
    assert isinstance(info.value, AirflowFailException), "Airflow's task retries must not resend it either"
    assert "not sent again" in str(info.value)
    assert "jane@example.com" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, "bad_request", HindsightBadRequestError),
        (401, "unauthorized", HindsightAuthError),
        (403, "forbidden", HindsightAuthError),
        (404, "not_found", HindsightNotFoundError),
    ],
)
def test_a_rejected_create_is_its_typed_error_without_retry(
    hook: HindsightHook, requests_mock: Any, status: int, code: str, error_class: type[Exception]
) -> None:
    requests_mock.post(CREATE_URL, status_code=status, json=envelope(code, "no"))

    with pytest.raises(error_class) as info:
        hook.create_interview(**BODY)

    assert requests_mock.call_count == 1
    assert not isinstance(info.value, HindsightUnknownOutcomeError)


@pytest.mark.parametrize(
    ("answer", "error_class"),
    [
        ({"status_code": 429, "json": envelope("rate_limit_exceeded", "slow down")}, HindsightRateLimitError),
        ({"exc": requests.exceptions.ConnectionError("Connection refused")}, HindsightConnectionError),
    ],
)
def test_a_create_that_never_arrived_after_every_retry_stays_transient(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, answer: dict[str, Any], error_class: type
) -> None:
    requests_mock.post(CREATE_URL, **answer)

    with pytest.raises(error_class) as info:
        make_hook(max_retries=2).create_interview(**BODY)

    assert requests_mock.call_count == 3
    assert not isinstance(info.value, HindsightUnknownOutcomeError), "nothing was created: it may be sent again"
    assert info.value.transient


def test_get_interview_reads_one_interview(hook: HindsightHook, requests_mock: Any) -> None:
    body = {"interview_request_id": 4821, "status": "completed", "transcript": {"content": "**Paige:** Hi"}}
    requests_mock.get(f"{BASE_URL}/interviews/4821", json=body)

    assert hook.get_interview("4821") == body
    (sent,) = requests_mock.request_history
    assert (sent.method, sent.url, sent.body) == ("GET", f"{BASE_URL}/interviews/4821", None)
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"


def test_get_interview_retries_transient_errors(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.get(
        f"{BASE_URL}/interviews/7",
        [
            {"exc": requests.exceptions.ReadTimeout()},
            {"status_code": 503},
            {"json": {"interview_request_id": 7, "status": "sent"}},
        ],
    )

    assert hook.get_interview(7)["status"] == "sent"
    assert requests_mock.call_count == 3


@pytest.mark.parametrize("bad_id", ["12/../deals", "abc", 0, -1, True])
def test_get_interview_refuses_bad_ids_before_sending(hook: HindsightHook, requests_mock: Any, bad_id: object) -> None:
    with pytest.raises(HindsightValidationError, match="interview_request_id"):
        hook.get_interview(bad_id)  # type: ignore[arg-type]

    assert requests_mock.call_count == 0
