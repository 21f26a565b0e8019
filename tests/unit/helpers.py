"""Constants and test doubles shared by the unit tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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


class LogRecorder(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        """The messages logged at exactly ``level``."""
        return [record.getMessage() for record in self.records if record.levelno == level]

    def text(self) -> str:
        """Every message, its raw arguments and any attached traceback, as one string."""
        formatter = logging.Formatter()
        parts: list[str] = []
        for record in self.records:
            parts += [record.getMessage(), repr(record.args)]
            if record.exc_info:
                parts.append(formatter.formatException(record.exc_info))
        return "\n".join(parts)
