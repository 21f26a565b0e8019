"""Constants and test doubles shared by the unit tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any

from airflow_provider_hindsight.hooks.hindsight import HindsightHook

API_KEY = "sk-test-secret"
BASE_URL = "http://127.0.0.1:8089/api/v1"
HOST = "127.0.0.1:8089"
FAST_RPM = 600_000.0
"""A pace so high that the pacer never adds a wait of its own to the waits a retry test records."""
HOOK_LOGGER = f"airflow.task.hooks.{HindsightHook.__module__}.{HindsightHook.__qualname__}"
WIRE_LOGGERS = ("urllib3", "requests")

SetConnection = Callable[..., None]
MakeHook = Callable[..., HindsightHook]


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it; remembers every sleep."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class TaskClocks:
    """Fake monotonic time kept per asyncio task: every task starts at the same moment, and sleeping moves
    only the sleeper's clock (then yields, so the other tasks ask the pacer as fast as they can).

    A task's clock when ``acquire_async()`` returns is the moment the pacer told it to start, whatever
    the machine's load.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._now: contextvars.ContextVar[float] = contextvars.ContextVar("now", default=start)

    def now(self) -> float:
        return self._now.get()

    def sleep(self, seconds: float) -> None:
        self._now.set(self._now.get() + seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


class LogRecorder(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.structlog_entries: list[dict[str, Any]] = []
        """Events of structlog loggers (Airflow 3 hooks), as ``structlog.testing.capture_logs`` keeps them."""

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        """The messages logged at exactly ``level``."""
        name = logging.getLevelName(level).lower()
        return [record.getMessage() for record in self.records if record.levelno == level] + [
            str(entry["event"]) for entry in self.structlog_entries if entry.get("log_level") == name
        ]

    def text(self) -> str:
        """Every message, its raw arguments and any attached traceback, as one string."""
        formatter = logging.Formatter()
        parts: list[str] = []
        for record in self.records:
            parts += [record.getMessage(), repr(record.args)]
            if record.exc_info:
                parts.append(formatter.formatException(record.exc_info))
        parts += [repr(entry) for entry in self.structlog_entries]
        return "\n".join(parts)


# The API and the plans as the docs state them, written out rather than read from the package.
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


ANY_INTERVIEW = re.compile(rf"^{re.escape(BASE_URL)}/interviews/\d+$")


def echo_id(request: Any, context: Any) -> dict[str, int]:
    return {"interview_request_id": int(request.path.rsplit("/", 1)[1])}


GATEWAY_PAGE = "<html><body><h1>{status}</h1>nginx</body></html>"
