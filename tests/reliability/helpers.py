"""Constants and helpers shared by these tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_hindsight.testing import HindsightEmulator

SECRET = "sk-live-SECRET-7f3a9c"
"""A key distinctive enough that finding it anywhere means it leaked."""


CONNECTION_MAX_RETRIES = 1
"""``max_retries`` the test DAGs' connection sets: a try spends ``1 + CONNECTION_MAX_RETRIES`` requests."""


CONNECTION_TIMEOUT = 0.5
"""``timeout`` (seconds) the test DAGs' connection sets."""


ConnectTo = Callable[..., None]


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
