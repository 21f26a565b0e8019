"""Typed errors (``exceptions.py``): mapping HTTP answers to classes, fix hints, and surviving pickling."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

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
    error_from_response,
)

STATUSES: list[tuple[int, str, type[HindsightError]]] = [
    (400, "bad_request", HindsightBadRequestError),
    (401, "unauthorized", HindsightAuthError),
    (403, "forbidden", HindsightAuthError),
    (404, "not_found", HindsightNotFoundError),
    (409, "conflict", HindsightPermanentError),
    (422, "unprocessable", HindsightPermanentError),
    (429, "rate_limit_exceeded", HindsightRateLimitError),
    (500, "internal_error", HindsightServerError),
    (502, "bad_gateway", HindsightServerError),
    (503, "unavailable", HindsightServerError),
    (504, "gateway_timeout", HindsightServerError),
]
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
HINTS = {400: "values", 401: "API key", 403: "API key", 404: "interview_request_id"}
"""What the message must point the user at, for the statuses where the fix is on their side."""


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


@pytest.mark.parametrize(("status", "code", "error_class"), STATUSES)
def test_error_from_response_reads_the_envelope(status: int, code: str, error_class: type[HindsightError]) -> None:
    message, details = "Something specific went wrong", {"missing_fields": ["objective"]}

    error = error_from_response(status, envelope(code, message, details), retry_after=4.0)

    assert type(error) is error_class
    assert (error.status_code, error.code, error.details, error.retry_after) == (status, code, details, 4.0)
    assert error.message.startswith(message)
    assert str(error).startswith(message), "the readable message comes first"
    assert str(error).endswith(f"(HTTP {status} {code}; missing_fields: objective)"), "no Python repr"
    assert "{" not in str(error) and "details=" not in str(error)
    assert isinstance(error, AirflowException)
    assert isinstance(error, AirflowFailException) is (status not in TRANSIENT_STATUSES)


@pytest.mark.parametrize(("status", "code", "error_class"), STATUSES)
def test_error_from_response_without_json(status: int, code: str, error_class: type[HindsightError]) -> None:
    error = error_from_response(status, None)

    assert type(error) is error_class
    assert (error.status_code, error.code, error.details, error.retry_after) == (status, None, {}, None)
    assert error.message
    assert str(error) == f"{error.message} (HTTP {status})"


@pytest.mark.parametrize("body", ["Bad Gateway", ["error"], {"error": "oops"}, {"error": {"code": 5, "details": "x"}}])
def test_error_from_response_with_an_unexpected_body(body: object) -> None:
    error = error_from_response(500, body)

    assert type(error) is HindsightServerError
    assert (error.code, error.details) == (None, {})
    assert error.message


@pytest.mark.parametrize(("status", "hint"), HINTS.items())
@pytest.mark.parametrize("body", [envelope("any", "The API said no"), None], ids=["json", "not-json"])
def test_messages_carry_the_fix(status: int, hint: str, body: dict[str, Any] | None) -> None:
    assert hint in error_from_response(status, body).message


@pytest.mark.parametrize(("status", "transient"), [(418, False), (422, False), (429, True), (500, True), (599, True)])
def test_every_error_status_maps_to_a_permanent_or_transient_error(status: int, transient: bool) -> None:
    error = error_from_response(status, None)
    assert error.status_code == status
    assert error.transient is transient
    assert isinstance(error, AirflowFailException) is not transient


def round_trip(error: HindsightError) -> HindsightError:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    return copy


@pytest.mark.parametrize(("status", "code", "error_class"), STATUSES)
def test_mapped_errors_survive_pickling(status: int, code: str, error_class: type[HindsightError]) -> None:
    error = error_from_response(status, envelope(code, "No", {"field": "objective"}), retry_after=2.5)

    copy = round_trip(error)

    assert (copy.status_code, copy.code, copy.details, copy.retry_after, copy.message) == (
        error.status_code,
        error.code,
        error.details,
        error.retry_after,
        error.message,
    )
    assert str(copy) == str(error)


@pytest.mark.parametrize(
    "error",
    [
        HindsightConnectionError("Could not reach 127.0.0.1:8089", code="connection_error"),
        HindsightConfigurationError("Connection 'x': bad host", code="invalid_connection"),
        HindsightResponseError("Not JSON", status_code=200, code="invalid_response"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_hand_made_errors_survive_pickling(error: HindsightError) -> None:
    copy = round_trip(error)
    assert (copy.status_code, copy.code, copy.message, str(copy)) == (
        error.status_code,
        error.code,
        error.message,
        str(error),
    )


def test_validation_error_survives_pickling() -> None:
    error = HindsightValidationError("objective must be a string", field="objective")

    copy = round_trip(error)

    assert (copy.field, copy.code, copy.details, str(copy)) == (error.field, error.code, error.details, str(error))
    assert isinstance(copy, ValueError)
    assert isinstance(copy, AirflowFailException)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_names_the_connection_and_its_api_key_field(status: int) -> None:
    error = error_from_response(status, envelope("unauthorized", "Invalid API key"), conn_id="hindsight_prod")

    assert "'hindsight_prod'" in error.message
    assert "API key" in error.message and "assword" not in error.message
    assert str(error).endswith(f"(HTTP {status} unauthorized)")


def test_an_error_of_the_provider_s_own_is_its_message_alone() -> None:
    error = HindsightValidationError("objective must be a string, got 5.", field="objective")

    assert str(error) == "objective must be a string, got 5."
