"""Shared set-up for the reliability suite: connections, emulators, a truncating server, log capture."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.pytest_plugin import UNLIMITED_PACE
from tests.helpers import free_port

from .helpers import (
    CONNECTION_MAX_RETRIES,
    CONNECTION_TIMEOUT,
    ConnectTo,
    TruncatingServer,
)


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
    return f"http://127.0.0.1:{free_port()}/api/v1"


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
