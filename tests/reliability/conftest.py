"""Shared set-up for the reliability suite: connections, emulators, a truncating server, log capture."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.pytest_plugin import UNLIMITED_PACE

SECRET = "sk-live-SECRET-7f3a9c"
"""A key distinctive enough that finding it anywhere means it leaked."""

CONNECTION_MAX_RETRIES = 1
"""``max_retries`` the test DAGs' connection sets: a try spends ``1 + CONNECTION_MAX_RETRIES`` requests."""

CONNECTION_TIMEOUT = 0.5
"""``timeout`` (seconds) the test DAGs' connection sets."""

ConnectTo = Callable[..., None]


@pytest.fixture
def connect_to(monkeypatch: pytest.MonkeyPatch) -> ConnectTo:
    """Point ``hindsight_default`` at ``host`` with ``password`` and connection extras.

    ``connect_to(emulator.base_url, password=..., max_retries=1)``; ``password=None`` leaves it out.
    Without an explicit pace the connection is paced fast enough never to slow a test down.
    """

    def connect(host: str, *, password: str | None = "test-key", **extra: Any) -> None:
        connection: dict[str, Any] = {
            "conn_type": "hindsight",
            "host": host,
            "extra": {"requests_per_minute": UNLIMITED_PACE, **extra},
        }
        if password is not None:
            connection["password"] = password
        monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    return connect


@pytest.fixture
def dag_emulator(
    hindsight_emulator_factory: Callable[..., HindsightEmulator], connect_to: ConnectTo
) -> Callable[..., HindsightEmulator]:
    """Start an emulator for a DAG run: the connection sets a short timeout and one retry per request.

    ``password`` (default: the emulator's key) is the key the connection sends.
    """

    def start(api_key: str = "test-key", *, password: str | None = None, **kwargs: Any) -> HindsightEmulator:
        emulator = hindsight_emulator_factory(api_key, **kwargs)
        connect_to(
            emulator.base_url,
            password=api_key if password is None else password,
            max_retries=CONNECTION_MAX_RETRIES,
            timeout=CONNECTION_TIMEOUT,
        )
        return emulator

    return start


@pytest.fixture
def closed_port_url() -> str:
    """A loopback base URL on which nothing listens: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1"


def host_of(base_url: str) -> str:
    """``host:port`` of a base URL, as error messages name it."""
    return urlsplit(base_url).netloc


def task_instance(dag_run: Any, task_id: str) -> Any:
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]
    return ti


def settle(emulator: HindsightEmulator, count: int, timeout: float = 5.0) -> None:
    """Wait until ``count`` requests are recorded.

    A request is recorded when its answer is ready: one the client gave up on (a read timeout)
    shows up only after the injected delay has passed on the server.
    """
    deadline = time.monotonic() + timeout
    while len(emulator.requests) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(emulator.requests) == count, [request.status for request in emulator.requests]


class TruncatingServer:
    """A loopback HTTP server that cuts its first ``truncate`` answers off mid-body, then answers properly.

    The emulator can drop a connection only before answering; this one sends the status line, the
    headers and part of the body, then closes: the connection breaks while the client reads.
    """

    def __init__(self, truncate: int) -> None:
        self.truncate = truncate
        self.bodies: list[bytes] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/api/v1"

    def __enter__(self) -> TruncatingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        """Answer one request per connection (``Connection: close``), truncated or whole."""
        stream = connection.makefile("rb")
        request_line = stream.readline()
        path = request_line.split()[1].decode()
        length = 0
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self.bodies.append(stream.read(length))
        body = json.dumps({"interview_request_id": int(path.rsplit("/", 1)[1])}).encode()
        cut = len(self.bodies) <= self.truncate
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        connection.sendall(head + (body[: len(body) // 2] if cut else body))


@pytest.fixture
def truncating_server() -> Iterator[Callable[[int], TruncatingServer]]:
    """``truncating_server(n)``: a running :class:`TruncatingServer` that cuts its first ``n`` answers."""
    started: list[TruncatingServer] = []

    def start(truncate: int) -> TruncatingServer:
        server = TruncatingServer(truncate).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()
