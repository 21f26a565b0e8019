"""What the emulator sends back: an :class:`Answer`, the API's error envelope and header helpers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass
class Answer:
    """What the handler sends back; ``status == 0`` means: drop the connection without an answer.

    ``delay`` is slept after the request was handled and recorded, before the answer is written
    (the "created, then answered too late" fault).
    """

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


def json_answer(status: int, payload: Any) -> Answer:
    return Answer(status, json.dumps(payload).encode())


def error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Answer:
    """The API's error envelope: ``{"error": {"code", "message", "details"?}}``."""
    envelope: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        envelope["details"] = details
    return json_answer(status, {"error": envelope})


def not_found(message: str = "Not found") -> Answer:
    return error(404, "not_found", message)


def method_not_allowed(allowed: list[str]) -> Answer:
    answer = error(405, "method_not_allowed", "Method not allowed")
    answer.headers["Allow"] = ", ".join(allowed)
    return answer


def header_number(value: float | str) -> str:
    """Format a header value: whole numbers without a fraction (``2.0`` -> ``"2"``), strings as given."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _reject_constant(name: str) -> Any:
    """Refuse ``NaN``/``Infinity``, which Python's parser accepts but JSON (and the API) does not."""
    raise ValueError(f"{name} is not valid JSON")


def parse_object(body: bytes) -> dict[str, Any] | Answer:
    """The request body as a JSON object, or the 400 answer that refuses it."""
    try:
        parsed = json.loads(body, parse_constant=_reject_constant)
    except ValueError:
        return error(400, "bad_request", "Invalid JSON")
    if not isinstance(parsed, dict):
        return error(400, "bad_request", "Request body must be a JSON object")
    return parsed
