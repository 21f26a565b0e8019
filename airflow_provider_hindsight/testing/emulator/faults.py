"""Injected faults: what they are, how a request finds the one meant for it, and the answers they give.

Two stages: the faults of :data:`BEFORE_HANDLING` replace the normal handling of a request (after the
key check, before the rate limit); the ``create_then_*`` faults of :data:`AFTER_CREATE` let a
``POST /interviews`` create its interview and be recorded, and then spoil only the answer: the
"unknown outcome" a client cannot tell from a failure.
"""

from __future__ import annotations

import dataclasses
import threading
from http import HTTPStatus
from typing import Literal

from airflow_provider_hindsight.testing.emulator.answers import Answer, error, header_number

FaultKind = Literal["status", "invalid_json", "delay", "drop", "redirect", "create_then_drop", "create_then_delay"]
BEFORE_HANDLING: frozenset[str] = frozenset({"status", "invalid_json", "delay", "drop", "redirect"})
AFTER_CREATE: frozenset[str] = frozenset({"create_then_drop", "create_then_delay"})
METHODS = ("GET", "PATCH", "POST")

_ERROR_CODES = {429: "rate_limit_exceeded", 500: "internal_error"}
_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclasses.dataclass
class Fault:
    """A pending injected fault; ``remaining`` counts the matching requests it still applies to.

    It matches a request when each of ``method``, ``interview_request_id`` and ``contact_email``
    is ``None`` or equal to the request's.
    """

    kind: FaultKind
    remaining: int
    interview_request_id: int | None = None
    method: str | None = None
    contact_email: str | None = None
    status: int = 0
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    html: bool = False
    delay: float = 0.0
    location: str | None = None

    def matches(self, method: str, interview_request_id: int | None, contact_email: str | None) -> bool:
        return (
            self.method in (None, method)
            and self.interview_request_id in (None, interview_request_id)
            and (self.contact_email is None or self.contact_email == (contact_email or "").lower())
        )


class FaultBook:
    """The pending faults, first injected first used."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        if fault.interview_request_id is not None:
            positive_id(fault.interview_request_id)
        if fault.method is not None:
            fault.method = fault.method.upper()
            if fault.method not in METHODS:
                raise ValueError(f"method must be one of {', '.join(METHODS)} (or None for every method)")
        if fault.contact_email is not None:
            fault.contact_email = fault.contact_email.lower()
        with self._lock:
            self._faults.append(fault)

    def take(
        self,
        kinds: frozenset[str],
        method: str,
        interview_request_id: int | None = None,
        contact_email: str | None = None,
    ) -> Fault | None:
        """Consume one application of the first pending fault of ``kinds`` that matches this request."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, interview_request_id, contact_email):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def status_fault_headers(retry_after: float | str | None, ratelimit_reset: float | None) -> dict[str, str]:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = header_number(retry_after)
    if ratelimit_reset is not None:
        headers["X-RateLimit-Reset"] = header_number(ratelimit_reset)
    return headers


def fault_answer(fault: Fault, path: str) -> Answer:
    """The answer a fault of :data:`BEFORE_HANDLING` gives to a request for ``path`` instead of the normal one
    (not ``delay``)."""
    if fault.kind == "drop":
        return Answer(0)
    if fault.kind == "redirect":
        return Answer(fault.status, b"", "text/html", {"Location": fault.location or path})
    if fault.kind == "invalid_json":
        return Answer(200, b"<html>OK</html>", "text/html")
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    if fault.html:
        page = _HTML_PAGE.format(status=fault.status, phrase=phrase)
        return Answer(fault.status, page.encode(), "text/html", dict(fault.headers))
    code = _ERROR_CODES.get(fault.status, phrase.lower().replace(" ", "_").replace("-", "_"))
    answer = error(fault.status, code, phrase)
    answer.headers.update(fault.headers)
    return answer


def spoil(answer: Answer, fault: Fault) -> Answer:
    """Apply a fault of :data:`AFTER_CREATE` to the create's real answer."""
    if fault.kind == "create_then_drop":
        return Answer(0)
    answer.delay = fault.delay
    return answer


def positive_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"interview request ids must be positive integers, got {value!r}")
    return value
