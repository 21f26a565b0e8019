"""Helpers of the run history tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import FakeTaskInstance
from tests.support.ledger_db import LedgerDatabase

HISTORY_CONN_ID = "history_store"
RUN_COLUMNS = (
    "operation, state, dag_id, task_id, run_id, map_index, try_number, total, succeeded, failed, unchanged, created, "
    "existing, unknown, requests, answered_429, error_code, error_message, finished_at, provider_version"
)


def point_history(
    emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch, conn_id: str = "hindsight_default", **extra: Any
) -> None:
    """The Hindsight connection ``conn_id`` to ``emulator``, with the extras given (``history_conn_id``...)."""
    connection = emulator.connection(conn_id)
    del connection["conn_id"]
    connection["extra"].update(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def runs(store: LedgerDatabase, table: str = "hindsight_runs") -> list[dict[str, Any]]:
    """Every run of the history, oldest first, as ``{column: value}``."""
    names = [name.strip() for name in RUN_COLUMNS.split(",")]
    rows = store.query(f"SELECT {RUN_COLUMNS} FROM {table} ORDER BY started_at, try_number")
    return [dict(zip(names, row, strict=True)) for row in rows]


def failed_rows(store: LedgerDatabase, table: str = "hindsight_runs_rows") -> list[tuple[Any, ...]]:
    """``(row_position, row_key, code, status_code, message)`` of every row recorded, in order."""
    rows = store.query(f"SELECT row_position, row_key, code, status_code, message FROM {table} ORDER BY row_position")
    return [tuple(row) for row in rows]


class TryOfTask(FakeTaskInstance):
    """``context["ti"]`` of one try of a task instance: its map index and try number."""

    def __init__(self, try_number: int = 1, map_index: int = -1) -> None:
        super().__init__()
        self.try_number = try_number
        self.map_index = map_index


class Tried:
    """One try of a task instance running ``operator.execute()``: the result (or the error) and the XComs."""

    def __init__(self, operator: Any, try_number: int = 1, run_id: str = "manual__1") -> None:
        self.ti = TryOfTask(try_number)
        self.error: BaseException | None = None
        self.result: Any = None
        try:
            self.result = operator.execute({"ti": self.ti, "run_id": run_id})
        except Exception as error:
            self.error = error

    @property
    def summary(self) -> dict[str, Any]:
        return self.ti.xcom["summary"]


def wait_until(condition: Callable[[], bool], what: str = "the condition", timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
