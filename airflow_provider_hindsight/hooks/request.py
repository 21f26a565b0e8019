"""The one request core, transport-neutral: what a request is, and what any answer or failure means.

The sync hook (``requests``, worker threads) and the async hook (``httpx``, the triggerer's event
loop) each only send an :class:`ApiRequest` and hand back what came: :func:`interpret_answer` turns
an HTTP answer into the parsed body or the typed error (through the one error mapping,
:func:`~airflow_provider_hindsight.exceptions.error_from_response`), and :func:`network_error` names
a network failure by its cause and says whether the request may have arrived. Neither transport
maps anything itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightConnectionError,
    HindsightError,
    HindsightResponseError,
    error_from_response,
)
from airflow_provider_hindsight.hooks.connection import ConnectionSettings
from airflow_provider_hindsight.hooks.connection_form import DEFAULT_BASE_URL
from airflow_provider_hindsight.hooks.retry import CREATE, IDEMPOTENT, RetryRule, requested_wait
from airflow_provider_hindsight.resources.interviews import InterviewCreate, InterviewUpdate


@dataclass(frozen=True)
class ApiRequest:
    """One request to the API: method, path below the base URL, exact body bytes, and its retry rule.

    ``subject`` names what the request is about in messages (``"interview 4821"``, ``"request_key
    'D-1042:C-7781'"``): never a body value. ``expected`` are the keys a 2xx JSON answer must hold.
    """

    method: str
    path: str
    body: bytes | None
    rule: RetryRule
    subject: str
    expected: tuple[str, ...] = ("interview_request_id",)


NETWORK_CAUSES: dict[str, tuple[str, str]] = {
    "tls": ("TLS handshake failed", "connect"),
    "connect_timeout": ("connect timed out", "connect"),
    "refused": ("connection refused", "connect"),
    "dns": ("DNS lookup failed", "connect"),
    "read_timeout": ("read timed out", "response"),
    "broken_read": ("the connection broke while reading the answer", "response"),
    "dropped": ("the connection was dropped", "response"),
}
"""Each network failure's words for messages and its phase: ``connect`` failures never sent the request."""


def interpret_answer(
    request: ApiRequest, status_code: int, headers: Mapping[str, str], text: str, *, conn_id: str | None = None
) -> dict[str, Any]:
    """The parsed 2xx body, or raise the typed error for this answer (``retry_after`` set from its headers).

    ``conn_id`` is the hook's connection, named in the fix of a 401 or 403 and of a redirect.
    """
    if 300 <= status_code < 400:
        raise redirect_error(request, status_code, headers.get("Location"), conn_id)
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if 200 <= status_code < 300:
        if isinstance(body, dict) and all(key in body for key in request.expected):
            return body
        raise HindsightResponseError(
            f"The API answered {status_code} for {request.subject} but not with the documented JSON "
            f"(Content-Type {headers.get('Content-Type')!r}, body starts {text[:80]!r}). Check the "
            "connection's host points at the Hindsight API.",
            status_code=status_code,
            code="invalid_response",
        )
    wait_for = requested_wait(headers) if status_code in (429, 503) else None
    raise error_from_response(status_code, body, retry_after=wait_for, conn_id=conn_id)


MAX_LOCATION_CHARS = 200
"""How much of a redirect's ``Location`` a message quotes."""


def redirect_error(
    request: ApiRequest, status_code: int, location: str | None, conn_id: str | None
) -> HindsightConfigurationError:
    """A 3xx is never followed: the base URL is wrong, and nothing was delivered.

    Following it would turn a PATCH or a POST into a GET (``requests`` does, for 301/302/303), and
    ``GET /interviews/{id}`` answers 200 with an ``interview_request_id``: an update that changed
    nothing would count as delivered. Both transports refuse redirects and end here.
    """
    location = location[:MAX_LOCATION_CHARS] if location else None
    where = repr(location) if location else "nowhere (no Location header)"
    why = "" if request.method == "GET" else f" (a {request.method} would arrive as a GET and change nothing)"
    connection = f" {conn_id!r}" if conn_id else ""
    return HindsightConfigurationError(
        f"The API answered HTTP {status_code} for {request.subject}, a redirect to {where}; redirects are never "
        f"followed{why}, so nothing was delivered. Set the host of the connection{connection} to the API's base "
        f"URL itself, such as {DEFAULT_BASE_URL}.",
        status_code=status_code,
        code="redirect",
        details={"location": location} if location else None,
    )


def network_error(cause: str, settings: ConnectionSettings, subject: str) -> HindsightError:
    """The error for a request that got no answer: its cause, the host, a hint; never the key.

    A TLS handshake that fails on a host given without a scheme is a configuration mistake (the
    emulator or a local server speaks plain http), not an outage: it fails at once, permanently,
    with the fix.
    """
    words, phase = NETWORK_CAUSES[cause]
    host = settings.host
    if cause == "tls" and settings.host_without_scheme:
        return HindsightConfigurationError(
            f"TLS handshake failed on {host} ({subject}): the connection {settings.conn_id!r} gives the host "
            "without a scheme, so https:// is used. For a local test server put a full URL such as "
            "http://127.0.0.1:9321/api/v1 in the host field (plain http is allowed to loopback hosts, and "
            "elsewhere only with the extra allow_insecure_http).",
            code="invalid_connection",
            details={"cause": words},
        )
    hint = {
        "tls": "Check that the host serves HTTPS (and, behind a proxy, REQUESTS_CA_BUNDLE).",
        "connect_timeout": "Check the host and any firewall between.",
        "read_timeout": f"No answer within {settings.timeout:g}s; raise the connection's timeout if the API is slow.",
        "refused": "Nothing listens there: check the host and port.",
        "dns": "Check the host name in the connection.",
    }.get(cause, "")
    if cause == "refused" and settings.is_loopback:
        hint = f"Is the Hindsight emulator (or your local server) running on {host}?"
    code = "timeout" if cause.endswith("timeout") else "connection_error"
    message = f"{words} on {host} ({subject})." + (f" {hint}" if hint else "")
    return HindsightConnectionError(message, code=code, details={"cause": words, "phase": phase})


def update_request(update: InterviewUpdate) -> ApiRequest:
    """``PATCH /interviews/{id}``: idempotent (the same body twice changes nothing more)."""
    subject = f"interview {update.interview_request_id}"
    return ApiRequest("PATCH", f"/interviews/{update.interview_request_id}", update.payload, IDEMPOTENT, subject)


def create_request(create: InterviewCreate, subject: str) -> ApiRequest:
    """``POST /interviews``: not idempotent, so under the create rule."""
    return ApiRequest("POST", "/interviews", create.payload, CREATE, subject, CREATED_KEYS)


def get_request(interview_request_id: int) -> ApiRequest:
    """``GET /interviews/{id}``: safe to repeat."""
    subject = f"interview {interview_request_id}"
    return ApiRequest("GET", f"/interviews/{interview_request_id}", None, IDEMPOTENT, subject, INTERVIEW_KEYS)


def key_check_request(rule: RetryRule = IDEMPOTENT) -> ApiRequest:
    """The key check: an empty ``PATCH /interviews/0``. No interview 0 exists and ``{}`` changes nothing,
    so a 400 or 404 means the key was accepted, a 401 or 403 that it was not. ``rule``: the UI's Test
    button sends it once (:data:`~airflow_provider_hindsight.hooks.retry.ONCE`)."""
    return ApiRequest("PATCH", "/interviews/0", b"{}", rule, "the API key check (interview 0)")


CREATED_KEYS = ("interview_request_id", "survey_url", "status")
"""What a 201 to ``POST /interviews`` must hold to count as the documented answer."""
INTERVIEW_KEYS = ("interview_request_id", "status")
"""What a 200 to ``GET /interviews/{id}`` must hold."""
