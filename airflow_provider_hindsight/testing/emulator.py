"""A local, in-process emulator of the Hindsight API (``PATCH /api/v1/interviews/{id}``).

It exists so that the hook, the operators and users' own DAGs can be tested end to end over real HTTP
without a Hindsight account: it validates requests the way the vendor documents, answers in the
vendor's error envelope, enforces a rate limit, keeps the contact state it was sent, records every
request and can inject faults (error statuses, non-JSON pages, delays, dropped connections).
It uses the standard library only.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import http.server
import json
import math
import re
import socket
import sys
import threading
import time
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

__all__ = ["HindsightEmulator", "RecordedRequest"]

API_PREFIX = "/api/v1"
FIELDS = ("contact_context", "contact_name", "objective")
_INTERVIEW_PATH = re.compile(r"^/api/v1/interviews/(?P<id>[^/]*)$")
_ID = re.compile(r"^[0-9]+$")
_ERROR_CODES = {429: "rate_limit_exceeded", 500: "internal_error"}
_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


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


@dataclasses.dataclass
class _Fault:
    """A pending injected fault; ``remaining`` counts the matching requests it still applies to."""

    kind: Literal["status", "invalid_json", "delay", "drop"]
    remaining: int
    interview_request_id: int | None
    status: int = 0
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    html: bool = False
    delay: float = 0.0


@dataclasses.dataclass
class _Answer:
    """What the handler sends back; ``status == 0`` means: drop the connection without an answer."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class _SlidingWindowLimiter:
    """Allows ``capacity`` requests in any span of ``window`` seconds; rejected requests do not count."""

    def __init__(self, capacity: int, window: float) -> None:
        self._capacity = capacity
        self._window = window
        self._accepted: deque[float] = deque(maxlen=capacity)

    def acquire(self, now: float) -> float:
        """Take a slot at monotonic time ``now``; return 0.0, or the seconds until a slot frees."""
        while self._accepted and self._accepted[0] <= now - self._window:
            self._accepted.popleft()
        if len(self._accepted) < self._capacity:
            self._accepted.append(now)
            return 0.0
        return self._accepted[0] + self._window - now

    def clear(self) -> None:
        self._accepted.clear()


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> _Answer:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return _Answer(status, json.dumps({"error": error}).encode())


def _header_number(value: float | str) -> str:
    """Format a header value: whole numbers without a fraction (``2.0`` -> ``"2"``), strings as given."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _reject_constant(name: str) -> Any:
    """Refuse ``NaN``/``Infinity``, which Python's parser accepts but JSON (and the API) does not."""
    raise ValueError(f"{name} is not valid JSON")


def _field_type_errors(body: dict[str, Any]) -> dict[str, str]:
    errors = {}
    if "contact_context" in body and not isinstance(body["contact_context"], (str, dict)):
        errors["contact_context"] = "must be a string or a JSON object"
    for name in ("contact_name", "objective"):
        if name in body and not isinstance(body[name], str):
            errors[name] = "must be a string"
    return errors


class _Server(http.server.ThreadingHTTPServer):
    """Threading server that knows its emulator, tracks open connections and stays quiet on hang-ups."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: HindsightEmulator) -> None:
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections so that nothing is answered after ``stop()``."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up mid-request (timeouts, dropped connections); report real bugs."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Reads each request fully, lets the emulator decide the answer, then writes it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "HindsightEmulator"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean: no access log on stderr."""

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        answer = self.server.emulator._answer(self.command, self.path, dict(self.headers.items()), body)
        if answer.status == 0:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _read_body(self) -> bytes | None:
        """Read the whole body (Content-Length or chunked) so the keep-alive stream stays in step."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, "Invalid body framing")
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


class HindsightEmulator:
    """A local Hindsight API for tests and DAG development.

    Use it as a context manager; point a ``hindsight`` connection's host at :attr:`base_url` and its
    password at :attr:`api_key`::

        with HindsightEmulator(api_key="k", requests_per_minute=300) as emulator:
            ...  # run the code under test against emulator.base_url
            assert emulator.interview(4821)["objective"] == "..."

    ``requests_per_minute`` (None: no limit) allows ``requests_per_minute * rate_window / 60``
    requests in any ``rate_window`` seconds; a short window keeps rate-limit tests fast.
    ``interview_ids`` lists the interviews that exist (None: every positive id exists).
    ``latency`` is slept before every answer. ``record_requests=False`` keeps only the counters.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        requests_per_minute: float | None = None,
        rate_window: float = 60.0,
        latency: float = 0.0,
        interview_ids: Iterable[int] | None = None,
        record_requests: bool = True,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if rate_window <= 0:
            raise ValueError("rate_window must be positive")
        if latency < 0:
            raise ValueError("latency must not be negative")
        self._api_key = api_key
        self._host = host
        self._requested_port = port
        self._latency = latency
        self._record = record_requests
        self._limiter: _SlidingWindowLimiter | None = None
        if requests_per_minute is not None:
            capacity = math.floor(requests_per_minute * rate_window / 60 + 1e-9)
            if capacity < 1:
                raise ValueError(
                    f"requests_per_minute={requests_per_minute} allows no request in a window of "
                    f"{rate_window} s; use a longer rate_window"
                )
            self._limiter = _SlidingWindowLimiter(capacity, rate_window)
        self._lock = threading.Lock()
        self._every_id_exists = interview_ids is None
        self._interviews: dict[int, dict[str, Any]] = {}
        for interview_id in interview_ids or ():
            self._interviews[_positive_id(interview_id)] = dict.fromkeys(FIELDS)
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._request_count = 0
        self._status_counts: dict[int, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HindsightEmulator:
        """Bind the port and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = _Server((self._host, self._requested_port), self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="hindsight-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections. Safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join()

    def __enter__(self) -> HindsightEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:51234/api/v1``: the connection's host."""
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return f"http://{host}:{self.port}{API_PREFIX}"

    # --- state -----------------------------------------------------------------------------------

    @property
    def interviews(self) -> dict[int, dict[str, Any]]:
        """A copy of the stored interviews: ``{id: {"contact_context", "contact_name", "objective"}}``."""
        with self._lock:
            return copy.deepcopy(self._interviews)

    def interview(self, interview_request_id: int) -> dict[str, Any]:
        """A copy of one stored interview; ``KeyError`` if it was never seeded nor updated."""
        with self._lock:
            return copy.deepcopy(self._interviews[interview_request_id])

    def add_interview(
        self,
        interview_request_id: int,
        *,
        contact_context: str | dict[str, Any] | None = None,
        contact_name: str | None = None,
        objective: str | None = None,
    ) -> None:
        """Create (or replace) an interview, e.g. to seed prior context or to make an id exist."""
        record = {"contact_context": contact_context, "contact_name": contact_name, "objective": objective}
        with self._lock:
            self._interviews[_positive_id(interview_request_id)] = copy.deepcopy(record)

    # --- recording -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recorded requests in arrival order (a copy; empty when ``record_requests=False``)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many API requests arrived (kept even when recording is off)."""
        with self._lock:
            return self._request_count

    @property
    def status_counts(self) -> dict[int, int]:
        """How many answers of each status were sent, e.g. ``{200: 48, 429: 2}``; 0 counts drops."""
        with self._lock:
            return dict(self._status_counts)

    def reset_requests(self) -> None:
        """Forget the recorded requests and zero the counters."""
        with self._lock:
            self._requests.clear()
            self._request_count = 0
            self._status_counts.clear()

    # --- fault injection -------------------------------------------------------------------------

    def inject_status(
        self,
        status: int,
        *,
        times: int = 1,
        interview_request_id: int | None = None,
        retry_after: float | str | None = None,
        ratelimit_reset: float | None = None,
        html: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (400-599).

        The body is the API's JSON error envelope, or an nginx-style HTML page with ``html=True``.
        ``retry_after`` becomes ``Retry-After`` and ``ratelimit_reset`` (Unix time) ``X-RateLimit-Reset``.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = _header_number(retry_after)
        if ratelimit_reset is not None:
            headers["X-RateLimit-Reset"] = _header_number(ratelimit_reset)
        self._add_fault(_Fault("status", times, interview_request_id, status=status, headers=headers, html=html))

    def inject_invalid_json(self, *, times: int = 1, interview_request_id: int | None = None) -> None:
        """Answer the next ``times`` matching requests with 200 and an HTML body that is not JSON."""
        self._add_fault(_Fault("invalid_json", times, interview_request_id))

    def inject_delay(self, seconds: float, *, times: int = 1, interview_request_id: int | None = None) -> None:
        """Sleep ``seconds`` before handling the next ``times`` matching requests (to hit read timeouts)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._add_fault(_Fault("delay", times, interview_request_id, delay=seconds))

    def inject_drop(self, *, times: int = 1, interview_request_id: int | None = None) -> None:
        """Read the next ``times`` matching requests, then close the connection without an answer."""
        self._add_fault(_Fault("drop", times, interview_request_id))

    def clear_faults(self) -> None:
        """Forget all pending faults."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        if fault.interview_request_id is not None:
            _positive_id(fault.interview_request_id)
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, interview_request_id: int | None) -> _Fault | None:
        """Consume one application of the first pending fault that matches this request."""
        with self._lock:
            for fault in self._faults:
                if fault.interview_request_id in (None, interview_request_id):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- request handling (called from the server's threads) ------------------------------------

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        """Decide, record and count the answer to one request; sleeps the configured latency."""
        arrival = time.time()
        path = urlsplit(target).path
        if path.startswith("/_emulator/"):
            answer = self._introspect(method, path)
        else:
            with self._lock:
                self._request_count += 1
            answer = self._api(method, path, headers, body)
        if answer.status and self._latency:
            time.sleep(self._latency)
        if not path.startswith("/_emulator/"):
            self._note(method, target, headers, body, arrival, answer.status)
        return answer

    def _note(
        self, method: str, target: str, headers: dict[str, str], body: bytes, arrival: float, status: int
    ) -> None:
        parsed: Any = None
        if self._record and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        with self._lock:
            self._status_counts[status] = self._status_counts.get(status, 0) + 1
            if self._record:
                self._requests.append(RecordedRequest(method, target, headers, body, parsed, arrival, status))

    def _introspect(self, method: str, path: str) -> _Answer:
        """``GET /_emulator/interviews`` and ``GET /_emulator/requests``: the state, for demos."""
        if path not in ("/_emulator/interviews", "/_emulator/requests"):
            return _error(404, "not_found", "Not found")
        if method not in ("GET", "HEAD"):
            answer = _error(405, "method_not_allowed", "Method not allowed")
            answer.headers["Allow"] = "GET"
            return answer
        if path == "/_emulator/interviews":
            payload: Any = {str(key): value for key, value in self.interviews.items()}
        else:
            payload = [request.to_dict() for request in self.requests]
        return _Answer(200, json.dumps(payload).encode())

    def _api(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        """``PATCH /api/v1/interviews/{id}``: auth, faults, rate limit, validation, then the update."""
        match = _INTERVIEW_PATH.match(path)
        if match is None:
            return _error(404, "not_found", "Not found")
        if method != "PATCH":
            answer = _error(405, "method_not_allowed", "Method not allowed")
            answer.headers["Allow"] = "PATCH"
            return answer
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if authorization != f"Bearer {self._api_key}":
            return _error(401, "unauthorized", "Invalid or missing API key")

        raw_id = match["id"]
        interview_request_id = int(raw_id) if _ID.match(raw_id) and int(raw_id) > 0 else None
        fault = self._take_fault(interview_request_id)
        if fault is not None:
            if fault.kind != "delay":
                return _fault_answer(fault)
            time.sleep(fault.delay)

        if self._limiter is not None:
            with self._lock:
                wait = self._limiter.acquire(time.monotonic())
            if wait > 0:
                answer = _error(429, "rate_limit_exceeded", "Rate limit exceeded. Check the Retry-After header.")
                answer.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                answer.headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + wait))
                return answer

        if interview_request_id is None:
            return _error(
                400,
                "bad_request",
                "Invalid interview request id",
                {"invalid_fields": {"id": "must be a positive integer"}},
            )
        with self._lock:
            exists = self._every_id_exists or interview_request_id in self._interviews
        if not exists:
            return _error(404, "not_found", "Interview request not found")

        try:
            update = json.loads(body, parse_constant=_reject_constant)
        except ValueError:
            return _error(400, "bad_request", "Invalid JSON")
        if not isinstance(update, dict):
            return _error(400, "bad_request", "Request body must be a JSON object")
        unknown = [name for name in update if name not in FIELDS]
        if unknown:
            return _error(400, "bad_request", f"Unknown fields: {', '.join(unknown)}", {"unknown_fields": unknown})
        if not update:
            return _error(400, "bad_request", "No fields provided", {"missing_fields": list(FIELDS)})
        invalid = _field_type_errors(update)
        if invalid:
            return _error(400, "bad_request", "Invalid field types", {"invalid_fields": invalid})

        with self._lock:
            record = self._interviews.setdefault(interview_request_id, dict.fromkeys(FIELDS))
            record.update(update)
        return _Answer(200, json.dumps({"interview_request_id": interview_request_id}).encode())


def _fault_answer(fault: _Fault) -> _Answer:
    """The answer an injected fault gives (``delay`` faults never get here)."""
    if fault.kind == "drop":
        return _Answer(0)
    if fault.kind == "invalid_json":
        return _Answer(200, b"<html>OK</html>", "text/html")
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    if fault.html:
        page = _HTML_PAGE.format(status=fault.status, phrase=phrase)
        return _Answer(fault.status, page.encode(), "text/html", dict(fault.headers))
    code = _ERROR_CODES.get(fault.status, phrase.lower().replace(" ", "_").replace("-", "_"))
    answer = _error(fault.status, code, phrase)
    answer.headers.update(fault.headers)
    return answer


def _positive_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"interview request ids must be positive integers, got {value!r}")
    return value
