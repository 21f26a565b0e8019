"""``HindsightEmulator``: the public face of the emulator (lifecycle, state, recording, connection)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_hindsight.testing.emulator.answers import Answer, json_answer, method_not_allowed, not_found
from airflow_provider_hindsight.testing.emulator.completion import CompletionModel
from airflow_provider_hindsight.testing.emulator.faults import FaultBook, positive_id
from airflow_provider_hindsight.testing.emulator.injection import FaultInjection
from airflow_provider_hindsight.testing.emulator.limiter import SlidingWindowLimiter
from airflow_provider_hindsight.testing.emulator.recording import RecordedRequest, Recorder
from airflow_provider_hindsight.testing.emulator.routes import API_PREFIX, Api
from airflow_provider_hindsight.testing.emulator.server import Server
from airflow_provider_hindsight.testing.emulator.state import Seed, Store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from os import PathLike
    from types import TracebackType

UNLIMITED_PACE = 60_000
"""The connection's pace when the emulator has no rate limit: fast enough never to slow a test or a demo."""

_INTROSPECTION = {
    "/_emulator/interviews": "GET",
    "/_emulator/requests": "GET",
    "/_emulator/stats": "GET",
    "/_emulator/reset": "POST",
}


class HindsightEmulator(FaultInjection):
    """A local Hindsight API for tests and DAG development.

    Use it as a context manager; point a ``hindsight`` connection at it with :meth:`connection_env`
    (or its host at :attr:`base_url` and its password at :attr:`api_key`)::

        with HindsightEmulator(api_key="k", requests_per_minute=300) as emulator:
            ...  # run the code under test against emulator.base_url
            assert emulator.interview(4821)["objective"] == "..."

    ``requests_per_minute`` (None: no limit) allows ``requests_per_minute * rate_window / 60``
    requests in any ``rate_window`` seconds, over ``POST``, ``GET`` and ``PATCH`` together; a short
    window keeps rate-limit tests fast. ``interview_ids`` lists the interviews that exist at the
    start (None: a ``PATCH`` may name any positive id, which then exists; ``GET`` knows only the
    interviews that were created, added or patched). ``latency`` is slept before every answer.
    ``record_requests=False`` keeps only the counters. ``complete_after`` (seconds, None: never)
    completes every interview that long after it was created, with a generated transcript; it is
    checked whenever the interview is read, so ``complete_after=0`` means "completed at the first
    GET". ``completion`` (a :class:`CompletionModel`) instead draws each interview's answer time
    from a seeded spread, with a share that never completes. ``clock`` (monotonic seconds, default
    ``time.monotonic``) drives the limiter and the completions: tests may pass a fake one, and a
    benchmark a fast one. ``state_file`` keeps contacts and interviews across restarts: each change
    is saved before it is answered, and a start reads what was saved. ``on_request(method, path,
    status)`` is called after each API request (status 0: dropped), e.g. for an access log.
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
        complete_after: float | None = None,
        completion: CompletionModel | None = None,
        clock: Callable[[], float] | None = None,
        on_request: Callable[[str, str, int], object] | None = None,
        state_file: str | PathLike[str] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if rate_window <= 0:
            raise ValueError("rate_window must be positive")
        if latency < 0:
            raise ValueError("latency must not be negative")
        if complete_after is not None:
            if completion is not None:
                raise ValueError("give complete_after or completion, not both")
            if complete_after < 0:
                raise ValueError("complete_after must not be negative")
            completion = CompletionModel(median=complete_after)
        self._api_key = api_key
        self._host = host
        self._requested_port = port
        self._latency = latency
        self._requests_per_minute = requests_per_minute
        self._completion = completion
        self._on_request = on_request
        clock = clock or time.monotonic
        limiter = (
            None if requests_per_minute is None else SlidingWindowLimiter.per_minute(requests_per_minute, rate_window)
        )
        self._store = Store(clock, completion, None if state_file is None else Path(state_file))
        for interview_id in interview_ids or ():
            self._store.ensure(positive_id(interview_id))
        self._fault_book = FaultBook()
        self._recorder = Recorder(record_requests)
        self._stopping = threading.Event()
        self._api = Api(
            api_key=api_key,
            store=self._store,
            fault_book=self._fault_book,
            limiter=limiter,
            clock=clock,
            wait=self._stopping.wait,
            every_id_exists=interview_ids is None,
        )
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HindsightEmulator:
        """Bind the port and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = Server((self._host, self._requested_port), self._respond)
        self._stopping.clear()
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="hindsight-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections, end injected waits. Safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        self._stopping.set()  # after the connections are cut: a cut-short wait answers no one
        if thread is not None:
            thread.join()

    def __enter__(self) -> HindsightEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
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

    @property
    def requests_per_minute(self) -> float | None:
        """The rate limit it serves (None: none)."""
        return self._requests_per_minute

    @property
    def completion(self) -> CompletionModel | None:
        """When interviews complete by themselves (None: only when a test completes them)."""
        return self._completion

    @property
    def open_connections(self) -> int:
        """Client connections the server is still handling (0 when stopped)."""
        return 0 if self._server is None else self._server.open_connections

    # --- the Airflow connection ------------------------------------------------------------------

    def connection(
        self, conn_id: str = "hindsight_default", *, requests_per_minute: float | None = None
    ) -> dict[str, Any]:
        """The Airflow connection that points at this emulator, as a JSON-ready dict (``Connection.to_dict()`` form).

        Its pace (``extra.requests_per_minute``) is ``requests_per_minute`` when given, else the
        emulator's own limit, else :data:`UNLIMITED_PACE`: never the hook's 60-a-minute default.
        ``airflow.models.Connection(**emulator.connection())`` builds it; for an ``AIRFLOW_CONN_*``
        variable use :meth:`connection_env`, whose JSON leaves ``conn_id`` out (Airflow refuses it there).
        """
        pace = requests_per_minute if requests_per_minute is not None else self._requests_per_minute
        if pace is None:
            pace = UNLIMITED_PACE
        return {
            "conn_id": conn_id,
            "conn_type": "hindsight",
            "host": self.base_url,
            "password": self._api_key,
            "extra": {"requests_per_minute": int(pace) if float(pace).is_integer() else pace},
        }

    def connection_env(
        self, conn_id: str = "hindsight_default", *, requests_per_minute: float | None = None
    ) -> tuple[str, str]:
        """``("AIRFLOW_CONN_<CONN_ID>", "<JSON>")``: the environment variable that defines :meth:`connection`."""
        connection = self.connection(conn_id, requests_per_minute=requests_per_minute)
        del connection["conn_id"]
        return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection)

    # --- state -----------------------------------------------------------------------------------

    @property
    def interviews(self) -> dict[int, dict[str, Any]]:
        """A copy of the interviews' fields: ``{id: {"contact_context", "contact_name", "objective"}}``."""
        return self._store.all_fields()

    def interview(self, interview_request_id: int) -> dict[str, Any]:
        """One interview's ``contact_context``, ``contact_name`` and ``objective``; ``KeyError`` if unknown."""
        return self._store.fields(interview_request_id)

    def interview_record(self, interview_request_id: int) -> dict[str, Any]:
        """Everything about one interview: the ``GET`` body plus ``survey_token``, ``sequence_id``,
        ``interview_type_id``, ``contact_email``, ``contact_name`` and ``contact_context``; ``KeyError`` if unknown.
        """
        return self._store.record(interview_request_id)

    def created_interviews(self, contact_email: str | None = None) -> list[dict[str, Any]]:
        """Records (as :meth:`interview_record`) of the interviews ``POST`` created, oldest first;
        with ``contact_email`` (any case) only that contact's: how many times a person was invited.
        """
        return self._store.created(contact_email)

    @property
    def contacts(self) -> dict[str, dict[str, Any]]:
        """``{contact_id: {"contact_id", "email", "name", "context"}}`` (email None for added interviews' contacts)."""
        return self._store.contacts()

    def contact(self, email: str) -> dict[str, Any]:
        """The contact a create upserted for ``email`` (any case); ``KeyError`` if none."""
        return self._store.contact(email)

    def add_interview(
        self,
        interview_request_id: int,
        *,
        contact_context: str | dict[str, Any] | None = None,
        contact_name: str | None = None,
        objective: str | None = None,
        status: str = "sent",
        contact_email: str | None = None,
        deal_id: str | None = None,
    ) -> None:
        """Create (or replace) an interview, e.g. to seed prior context or to make an id exist for PATCH and GET.

        ``status`` is ``sent`` (default), ``created`` or ``completed`` (with a generated transcript).
        With ``contact_email`` the contact is upserted as a create does; else the interview has its own.
        """
        seed = Seed(contact_context, contact_name, objective, status, contact_email, deal_id)
        self._store.add(positive_id(interview_request_id), seed)

    def complete(self, interview_request_id: int, transcript: str | None = None) -> None:
        """Finish an interview: status ``completed`` and its transcript (markdown; None: a generated one).

        The generated one has one ``**Name:** message`` paragraph per turn, Paige first, and names
        the competitor the objective or contact context names (else ``Competitor Z``).
        """
        if transcript is not None and not isinstance(transcript, str):
            raise TypeError("transcript must be a markdown string or None")
        self._store.complete(positive_id(interview_request_id), transcript)

    def set_status(self, interview_request_id: int, status: str) -> None:
        """Set ``created``, ``sent`` or ``completed`` (with a generated transcript).

        ``complete_after`` no longer applies to that interview.
        """
        self._store.set_status(positive_id(interview_request_id), status)

    # --- recording -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recorded requests in arrival order (a copy; empty when ``record_requests=False``)."""
        return self._recorder.requests

    def create_requests(self, contact_email: str | None = None) -> list[RecordedRequest]:
        """The recorded ``POST /interviews`` requests (any answer); with ``contact_email``, those naming it."""
        wanted = None if contact_email is None else contact_email.lower()
        return [
            request
            for request in self._recorder.requests
            if request.method == "POST"
            and urlsplit(request.path).path == f"{API_PREFIX}/interviews"
            and (
                wanted is None
                or (isinstance(request.json, dict) and str(request.json.get("contact_email", "")).lower() == wanted)
            )
        ]

    @property
    def request_count(self) -> int:
        """How many API requests arrived (kept even when recording is off)."""
        return self._recorder.request_count

    @property
    def status_counts(self) -> dict[int, int]:
        """How many answers of each status were sent, e.g. ``{200: 48, 429: 2}``; 0 counts drops."""
        return self._recorder.status_counts

    def stats(self) -> dict[str, Any]:
        """Counters, as ``GET /_emulator/stats`` serves them.

        ``{"request_count", "by_status", "by_method", "by_method_status", "by_route", "creates_by_contact"}``;
        ``creates_by_contact`` (``{"jane@example.com": 2}``, lower case) counts the interviews each
        contact got from ``POST /interviews``: it is state, so ``reset_requests()`` keeps it.
        """
        return {**self._recorder.stats(), "creates_by_contact": self._store.creates_by_contact()}

    def reset_requests(self) -> None:
        """Forget the recorded requests and zero the counters (the interviews stay)."""
        self._recorder.reset()

    # --- request handling (called from the server's threads) ------------------------------------

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """Decide, record and count the answer to one request, then sleep the latency (and any injected delay)."""
        arrival = time.time()
        path = urlsplit(target).path
        if path.startswith("/_emulator/"):
            return self._introspect(method, path)
        self._recorder.arrived()
        answer, route = self._api.answer(method, path, headers, body)
        self._recorder.note(method, target, headers, body, arrival, answer.status, route)
        if self._on_request is not None:
            self._on_request(method, path, answer.status)
        pause = (self._latency if answer.status else 0.0) + answer.delay
        if pause:
            self._stopping.wait(pause)
        return answer

    def _introspect(self, method: str, path: str) -> Answer:
        """The ``/_emulator/...`` endpoints (no key needed; not counted nor recorded)."""
        allowed = _INTROSPECTION.get(path)
        if allowed is None:
            return not_found()
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            return method_not_allowed([allowed])
        if path == "/_emulator/interviews":
            return json_answer(200, {str(key): value for key, value in self.interviews.items()})
        if path == "/_emulator/requests":
            return json_answer(200, [request.to_dict() for request in self.requests])
        if path == "/_emulator/stats":
            return json_answer(200, self.stats())
        self.reset_requests()
        return json_answer(200, {"reset": True})
