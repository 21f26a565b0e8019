"""Typed errors for the Hindsight API, and the one place that maps HTTP answers to them.

Every error carries ``status_code``, the API's ``code``, ``message`` and ``details`` so that a DAG
can branch on them. Permanent errors (the request itself is wrong: 400/401/403/404 and other 4xx)
are :class:`HindsightPermanentError` and also :class:`~airflow.exceptions.AirflowFailException`,
so Airflow fails the task without spending its retries on them. Transient errors (429, 5xx,
network) are plain :class:`~airflow.exceptions.AirflowException` and Airflow's task retries apply.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class HindsightError(AirflowException):
    """Base class of every error this provider raises about a Hindsight request.

    ``transient`` is the one rule for what may succeed later: the retry policy retries exactly the
    transient errors, a bulk row's result carries it, and a failed task is retryable by Airflow
    only when a transient error caused it.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code  # type: ignore[assignment]
        self.code = code
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        """The readable message; for an API answer, its status and the API's details in words at the end.

        ``"No interview request 4821 ... (HTTP 404 not_found)"``; an error of this provider's own (a
        bad argument, a connection problem) is its message alone. Never a Python repr.
        """
        if self.status_code is None:
            return self.message
        words = [f"HTTP {self.status_code}" + (f" {self.code}" if self.code else "")]
        words += [f"{key}: {_words(value)}" for key, value in self.details.items() if key != "field"]
        return f"{self.message} ({'; '.join(words)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields must survive pickling: Airflow ships exceptions between processes.
        fields = {
            "status_code": self.status_code,
            "code": self.code,
            "details": self.details,
            "retry_after": self.retry_after,
        }
        return (_rebuild_error, (type(self), self.message, fields))


def _words(value: Any) -> str:
    """A detail's value as text: lists joined by commas, anything else as it prints."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key} {_words(item)}" for key, item in value.items())
    return str(value)


def _rebuild_error(cls: type[HindsightError], message: str, fields: dict[str, Any]) -> HindsightError:
    return cls(message, **fields)


class HindsightPermanentError(HindsightError, AirflowFailException):
    """The request is wrong and sending it again cannot help: fix the input or the connection."""


class HindsightTransientError(HindsightError):
    """The API or the network failed for now; a later try may succeed."""

    transient = True


class HindsightBadRequestError(HindsightPermanentError):
    """400 ``bad_request``: no field, invalid JSON, or an invalid value."""


class HindsightAuthError(HindsightPermanentError):
    """401 ``unauthorized`` or 403: the API key is missing, wrong or not allowed."""


class HindsightNotFoundError(HindsightPermanentError):
    """404 ``not_found``: no such interview request, or it belongs to another organisation."""


class HindsightRateLimitError(HindsightTransientError):
    """429 ``rate_limit_exceeded`` still answered after the retry budget was spent."""


class HindsightServerError(HindsightTransientError):
    """5xx from the API (``internal_error`` and gateway errors)."""


class HindsightConnectionError(HindsightTransientError):
    """The request never got an answer: refused or dropped connection, or a timeout.

    ``details["phase"]`` says how far it got: ``"connect"`` (refused, DNS, TLS handshake, connect
    timeout: the request was never sent) or ``"response"`` (read timeout, dropped while waiting: the
    API may have received and acted on it).
    """

    @property
    def may_have_arrived(self) -> bool:
        """False only when the request cannot have reached the API: the connection was never made."""
        return self.details.get("phase") != "connect"


class HindsightResponseError(HindsightTransientError):
    """The API answered 2xx with a body that is not the documented JSON."""


class HindsightUnknownOutcomeError(HindsightPermanentError):
    """A create may or may not have reached Hindsight: sending it again could e-mail a person twice.

    Raised instead of retrying once a ``POST /interviews`` may have arrived (a read timeout, a dropped
    connection, a 5xx, a 2xx that is not the documented JSON). Permanent: neither the hook nor
    Airflow's task retries send it again; check in Hindsight whether it was created.
    """

    def __init__(self, message: str, **fields: Any) -> None:
        fields["code"] = "unknown_outcome"
        super().__init__(message, **fields)


class HindsightRunStoppedError(HindsightError):
    """A bulk run's circuit breaker stopped the run before this row was sent."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"{subject} was not sent: the run stopped.", code="not_sent")
        self.subject = subject

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.subject,))


class HindsightConfigurationError(HindsightPermanentError):
    """The Airflow connection or the hook's arguments are invalid."""


class HindsightValidationError(HindsightPermanentError, ValueError):
    """An argument or a row is invalid; nothing was sent. The message names the field and the fix."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, code="invalid_input", details={"field": field} if field else None)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), {"field": self.field, "details": self.details})


_PERMANENT_BY_STATUS: dict[int, type[HindsightPermanentError]] = {
    400: HindsightBadRequestError,
    401: HindsightAuthError,
    403: HindsightAuthError,
    404: HindsightNotFoundError,
}

_FIX_BY_STATUS: dict[int, str] = {
    400: "Check the values sent for this interview request.",
    401: "Check the API key in the API key field of the connection{conn}.",
    403: "The API key of the connection{conn} is not allowed to do this.",
    404: "Check interview_request_id: it must be an id returned by POST /interviews in your organisation.",
}


def error_from_response(
    status_code: int, body: Any, *, retry_after: float | None = None, conn_id: str | None = None
) -> HindsightError:
    """Build the typed error for an error answer (4xx or 5xx) from its status code and parsed body.

    ``body`` is the parsed JSON (the API's ``{"error": {...}}`` envelope) or ``None`` when the
    answer was not JSON, such as a proxy's HTML error page. ``conn_id`` (the hook's connection) is
    named in the fix of a 401 or 403.
    """
    envelope = body.get("error") if isinstance(body, dict) else None
    envelope = envelope if isinstance(envelope, dict) else {}
    code = envelope.get("code") if isinstance(envelope.get("code"), str) else None
    message = envelope.get("message") if isinstance(envelope.get("message"), str) else None
    details = envelope.get("details") if isinstance(envelope.get("details"), dict) else None
    if message is None:
        message = "the API answered without its JSON error envelope"
    fix = _FIX_BY_STATUS.get(status_code)
    if fix:
        message = f"{message.rstrip('.')}. {fix.format(conn=f' {conn_id!r}' if conn_id else '')}"
    fields: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "details": details,
        "retry_after": retry_after,
    }
    if status_code == 429:
        return HindsightRateLimitError(message, **fields)
    if status_code >= 500:
        return HindsightServerError(message, **fields)
    return _PERMANENT_BY_STATUS.get(status_code, HindsightPermanentError)(message, **fields)
