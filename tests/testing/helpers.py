"""Constants and a small HTTP client shared by the emulator's tests."""

from __future__ import annotations

import http.client
import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_hindsight.testing import HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Callable


KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ALL_FIELDS = ["contact_context", "contact_name", "objective"]


class Answer:
    """A finished HTTP exchange: status, headers and the parsed (or raw) body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.raw = response.read()

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def error(self) -> dict[str, Any]:
        return self.json["error"]


def send(
    emulator: HindsightEmulator,
    path: str,
    body: Any = None,
    *,
    method: str = "PATCH",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> Answer:
    """Send one request; ``path`` is relative to the API base (``/interviews/1``) or absolute (``/_...``)."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    target = path if path.startswith("/_") else "/api/v1" + path
    all_headers = {**AUTH, "Content-Type": "application/json"} if headers is None else headers
    conn.request(method, target, body=data, headers=all_headers)
    answer = Answer(conn.getresponse())
    if connection is None:
        conn.close()
    return answer


def patch(emulator: HindsightEmulator, interview_id: int | str, body: Any, **kwargs: Any) -> Answer:
    return send(emulator, f"/interviews/{interview_id}", body, **kwargs)


def post(emulator: HindsightEmulator, body: Any, **kwargs: Any) -> Answer:
    return send(emulator, "/interviews", body, method="POST", **kwargs)


def get(emulator: HindsightEmulator, interview_id: int | str, **kwargs: Any) -> Answer:
    return send(emulator, f"/interviews/{interview_id}", method="GET", **kwargs)


class FakeClock:
    """A monotonic clock the test drives: ``HindsightEmulator(clock=clock)``, then ``clock.advance(1.0)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; the timeout only bounds a broken test, it is no timing assumption."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
