"""The API the emulator serves: a route table (method + path pattern -> handler) and the checks every route shares.

A request is checked in this order: a path no route serves (404), a method the path does not
allow (405 with ``Allow``), the key (401), an injected fault, the rate limit (429 with
``Retry-After``), then the route's own validation and work. Every route draws on one limiter.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import TYPE_CHECKING

from airflow_provider_hindsight.testing.emulator import faults, validation
from airflow_provider_hindsight.testing.emulator.answers import (
    Answer,
    error,
    json_answer,
    method_not_allowed,
    not_found,
    parse_object,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_hindsight.testing.emulator.limiter import SlidingWindowLimiter
    from airflow_provider_hindsight.testing.emulator.state import Store

API_PREFIX = "/api/v1"
OTHER = "other"
"""The route name counted for requests no route serves."""
_ID = re.compile(r"^[0-9]+$")


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]

    @property
    def interview_request_id(self) -> int | None:
        """The path's id when it is a positive decimal integer (``007`` is 7), else None."""
        raw = self.params.get("id")
        if raw is None or not _ID.match(raw) or int(raw) < 1:
            return None
        return int(raw)


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Callable[[Api, Request], Answer]


def _invalid_id() -> Answer:
    return error(
        400, "bad_request", "Invalid interview request id", {"invalid_fields": {"id": "must be a positive integer"}}
    )


def create_interview(api: Api, request: Request) -> Answer:
    """``POST /interviews``: validate, upsert the contact, create the interview; 201 with the survey link."""
    body = parse_object(request.body)
    if isinstance(body, Answer):
        return body
    refused = validation.check_create(body)
    if refused is not None:
        return refused
    fault = api.faults.take(faults.AFTER_CREATE, request.method, None, body["contact_email"])
    answer = json_answer(201, api.store.create(body))
    return answer if fault is None else faults.spoil(answer, fault)


def get_interview(api: Api, request: Request) -> Answer:
    """``GET /interviews/{id}``: status, contact, survey link and (once completed) the transcript."""
    interview_request_id = request.interview_request_id
    if interview_request_id is None:
        return _invalid_id()
    body = api.store.public(interview_request_id)
    if body is None:
        return not_found("Interview request not found")
    return json_answer(200, body)


def update_interview(api: Api, request: Request) -> Answer:
    """``PATCH /interviews/{id}``: set any of the three fields; ``contact_context`` overwrites, never merges."""
    interview_request_id = request.interview_request_id
    if interview_request_id is None:
        return _invalid_id()
    if not (api.every_id_exists or api.store.exists(interview_request_id)):
        return not_found("Interview request not found")
    body = parse_object(request.body)
    if isinstance(body, Answer):
        return body
    refused = validation.check_update(body)
    if refused is not None:
        return refused
    api.store.ensure(interview_request_id)
    api.store.update(interview_request_id, body)
    return json_answer(200, {"interview_request_id": interview_request_id})


ROUTES = (
    Route("POST", re.compile(r"^/api/v1/interviews$"), "POST /interviews", create_interview),
    Route("GET", re.compile(r"^/api/v1/interviews/(?P<id>[^/]*)$"), "GET /interviews/{id}", get_interview),
    Route("PATCH", re.compile(r"^/api/v1/interviews/(?P<id>[^/]*)$"), "PATCH /interviews/{id}", update_interview),
)


class Api:
    """Answers API requests: the shared checks, then the route's handler."""

    def __init__(
        self,
        *,
        api_key: str,
        store: Store,
        fault_book: faults.FaultBook,
        limiter: SlidingWindowLimiter | None,
        clock: Callable[[], float],
        wait: Callable[[float], object],
        every_id_exists: bool,
    ) -> None:
        self.store = store
        self.faults = fault_book
        self.every_id_exists = every_id_exists
        self._authorization = f"Bearer {api_key}"
        self._limiter = limiter
        self._clock = clock
        self._wait = wait

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Answer, str]:
        """The answer to one request and the name of the route that gave it (:data:`OTHER` for none)."""
        matches = [(route, match) for route in ROUTES if (match := route.pattern.match(path)) is not None]
        if not matches:
            return not_found(), OTHER
        chosen = next(((route, match) for route, match in matches if route.method == method), None)
        if chosen is None:
            return method_not_allowed(sorted({route.method for route, _ in matches})), OTHER
        route, match = chosen
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if authorization != self._authorization:
            return error(401, "unauthorized", "Invalid or missing API key"), route.name
        request = Request(method, path, headers, body, match.groupdict())

        fault = self.faults.take(faults.BEFORE_HANDLING, method, request.interview_request_id)
        if fault is not None:
            if fault.kind != "delay":
                return faults.fault_answer(fault, path), route.name
            self._wait(fault.delay)
        limited = self._limit()
        if limited is not None:
            return limited, route.name
        return route.handler(self, request), route.name

    def _limit(self) -> Answer | None:
        if self._limiter is None:
            return None
        wait = self._limiter.acquire(self._clock())
        if wait <= 0:
            return None
        answer = error(429, "rate_limit_exceeded", "Rate limit exceeded. Check the Retry-After header.")
        answer.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        answer.headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + wait))
        return answer
