"""The HTTP layer: a threading server that reads each request fully and writes the answer it is given."""

from __future__ import annotations

import contextlib
import http.server
import socket
import sys
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_hindsight.testing.emulator.answers import Answer


class Server(http.server.ThreadingHTTPServer):
    """Threading server that asks ``respond`` for each answer, tracks open connections and stays quiet on hang-ups."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], respond: Callable[[str, str, dict[str, str], bytes], Answer]) -> None:
        self.respond = respond
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    @property
    def open_connections(self) -> int:
        with self.connections_lock:
            return len(self.connections)

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


class Handler(http.server.BaseHTTPRequestHandler):
    """Reads each request fully, lets the emulator decide the answer, then writes it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Server

    def version_string(self) -> str:
        return "HindsightEmulator"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean: no access log on stderr (the emulator has its own, opt-in)."""

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        answer = self.server.respond(self.command, self.path, dict(self.headers.items()), body)
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

    def __getattr__(self, name: str) -> Any:
        """Every method, ``TRACE`` and made-up ones included, goes to the emulator, which answers in the
        API's envelope (405 with ``Allow`` for a method the path does not serve), not with the
        standard library's HTML 501 page."""
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)
