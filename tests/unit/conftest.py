"""Fixtures for the unit tests: the ``hindsight_default`` connection, a fake clock and hooks that use it."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from airflow import __version__ as airflow_version

from airflow_provider_hindsight.budget.permits import SHARED_BUDGETS
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.pacing import SHARED_PACERS

from .helpers import (
    API_KEY,
    BASE_URL,
    FAST_RPM,
    HOOK_LOGGER,
    WIRE_LOGGERS,
    FakeTime,
    LogRecorder,
    MakeHook,
    SetConnection,
)


@pytest.fixture(autouse=True)
def _fresh_shared_pacers() -> Iterator[None]:
    """No pace, pause or slow-down of the process's shared pacers carries from one test to the next."""
    yield
    SHARED_PACERS.reset()
    SHARED_BUDGETS.close()


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> SetConnection:
    """Define ``hindsight_default`` through its ``AIRFLOW_CONN_*`` variable (JSON works on Airflow 2 and 3)."""

    def set_(
        *,
        host: str | None = BASE_URL,
        password: str | None = API_KEY,
        port: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        connection: dict[str, Any] = {"conn_type": "hindsight", "extra": extra or {}}
        for key, value in (("host", host), ("password", password), ("port", port)):
            if value is not None:
                connection[key] = value
        monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    return set_


@pytest.fixture
def hindsight_connection(set_connection: SetConnection) -> None:
    """The default connection: the test key, a loopback base URL, no extras."""
    set_connection()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_hook(fake_time: FakeTime) -> MakeHook:
    """Build hooks that wait on ``fake_time``."""

    def make(*args: Any, **kwargs: Any) -> HindsightHook:
        hook = HindsightHook(*args, **kwargs)
        hook.sleep = fake_time.sleep
        hook.clock = fake_time.clock
        return hook

    return make


@pytest.fixture
def hook(hindsight_connection: None, make_hook: MakeHook) -> HindsightHook:
    """A hook on the default connection, paced fast enough that only retries wait."""
    return make_hook(requests_per_minute=FAST_RPM)


@pytest.fixture
def hook_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogRecorder]:
    """Records at DEBUG from the hook's, urllib3's and requests' loggers, taken at the source.

    Reading records where they are emitted (not at the root, after Airflow's handlers and their
    secret-masking filters) means a leaked key is seen as the hook wrote it. Airflow 2 hooks log
    through stdlib ``logging``; Airflow 3 hooks through structlog, read with its ``capture_logs``.
    """
    recorder = LogRecorder()
    loggers = [logging.getLogger(name) for name in (HOOK_LOGGER, *WIRE_LOGGERS)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        monkeypatch.setattr(logger, "propagate", False)
        logger.addHandler(recorder)
    with contextlib.ExitStack() as stack:
        if not airflow_version.startswith("2."):
            from structlog.testing import capture_logs

            recorder.structlog_entries = stack.enter_context(capture_logs())
        yield recorder
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(recorder)
        logger.setLevel(level)
