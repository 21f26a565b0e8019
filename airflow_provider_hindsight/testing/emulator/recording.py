"""What the emulator remembers about the requests it answered: each request, and counters."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from typing import Any


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, with the status it answered (0: connection dropped)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    time: float
    status: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view with the API key masked, as served by ``GET /_emulator/requests``."""
        headers = {
            name: ("Bearer ***" if name.lower() == "authorization" else value) for name, value in self.headers.items()
        }
        return {
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "json": self.json,
            "time": self.time,
            "status": self.status,
        }


class Recorder:
    """Thread-safe list of :class:`RecordedRequest` plus counters that are kept even when recording is off.

    ``route`` is the route's name (``"PATCH /interviews/{id}"``), or ``"other"`` for paths and
    methods the API does not serve.
    """

    def __init__(self, record: bool) -> None:
        self._record = record
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._arrived = 0
        self._by_status: Counter[int] = Counter()
        self._by_method: Counter[str] = Counter()
        self._by_method_status: Counter[tuple[str, int]] = Counter()
        self._by_route: Counter[str] = Counter()

    def arrived(self) -> None:
        with self._lock:
            self._arrived += 1

    def note(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        arrival: float,
        status: int,
        route: str,
    ) -> None:
        parsed: Any = None
        if self._record and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        with self._lock:
            self._by_status[status] += 1
            self._by_method[method] += 1
            self._by_method_status[method, status] += 1
            self._by_route[route] += 1
            if self._record:
                self._requests.append(RecordedRequest(method, target, headers, body, parsed, arrival, status))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._arrived

    @property
    def status_counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._by_status)

    def stats(self) -> dict[str, Any]:
        """Counts by status, method, method and status (``{"POST": {"201": 3}}``) and route (JSON-ready)."""
        with self._lock:
            by_method_status: dict[str, dict[str, int]] = {}
            for (method, status), count in sorted(self._by_method_status.items()):
                by_method_status.setdefault(method, {})[str(status)] = count
            return {
                "request_count": self._arrived,
                "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
                "by_method": dict(sorted(self._by_method.items())),
                "by_method_status": by_method_status,
                "by_route": dict(sorted(self._by_route.items())),
            }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._arrived = 0
            self._by_status.clear()
            self._by_method.clear()
            self._by_method_status.clear()
            self._by_route.clear()
