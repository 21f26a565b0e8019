"""Fixtures for the warehouse-scale tests: run a bulk operator's ``execute()`` and a SQLite warehouse."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

WAREHOUSE_CONN_ID = "bulk_warehouse"


class FakeTaskInstance:
    """Collects what an operator pushes to XCom, standing in for ``context["ti"]``."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        self.xcom[key] = value


class Executed:
    """The outcome of one ``execute()``: the return value (or the error) and the XComs pushed."""

    def __init__(self, operator: Any) -> None:
        self.ti = FakeTaskInstance()
        self.error: BaseException | None = None
        self.result: Any = None
        try:
            self.result = operator.execute({"ti": self.ti})
        except Exception as error:
            self.error = error

    @property
    def summary(self) -> dict[str, Any]:
        return self.ti.xcom["summary"]


@pytest.fixture
def execute() -> Callable[[Any], Executed]:
    """Run ``operator.execute()`` with a minimal context; returns an :class:`Executed`."""
    return Executed


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str, Iterable[Iterable[Any]]], Path]:
    """A SQLite file behind the ``bulk_warehouse`` connection; ``warehouse(table, columns, rows)`` fills it."""
    path = tmp_path / "warehouse.db"
    connection = {"conn_type": "sqlite", "host": str(path)}
    monkeypatch.setenv(f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}", json.dumps(connection))

    def load(table: str, columns: str, rows: Iterable[Iterable[Any]]) -> Path:
        rows = [tuple(row) for row in rows]
        with closing(sqlite3.connect(path)) as database, database:
            database.execute(f"CREATE TABLE {table} ({columns})")
            if rows:
                database.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        return path

    return load


class SpyCursor:
    """A DB-API cursor that records when ``fetchmany`` was called and refuses ``fetchall``."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.fetches: list[tuple[float, int]] = []
        """``(time.time(), size)`` of each ``fetchmany`` call."""
        self.closed = False

    @property
    def description(self) -> Any:
        return self._cursor.description

    def execute(self, sql: str, parameters: Any = ()) -> SpyCursor:
        self._cursor.execute(sql, parameters)
        return self

    def fetchmany(self, size: int) -> list[Any]:
        self.fetches.append((time.time(), size))
        return self._cursor.fetchmany(size)

    def fetchall(self) -> list[Any]:
        raise AssertionError("fetchall() reads the whole result into memory")

    def close(self) -> None:
        self.closed = True
        self._cursor.close()


class SpyConnection:
    """A DB-API connection whose cursors are :class:`SpyCursor` and whose ``close`` is recorded."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.cursors: list[SpyCursor] = []
        self.closed = False

    def cursor(self) -> SpyCursor:
        self.cursors.append(SpyCursor(self._connection.cursor()))
        return self.cursors[-1]

    def close(self) -> None:
        self.closed = True
        self._connection.close()


@pytest.fixture
def spy_connections(monkeypatch: pytest.MonkeyPatch) -> list[SpyConnection]:
    """Every connection ``SqliteHook.get_conn()`` opens during the test, as a :class:`SpyConnection`."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    opened: list[SpyConnection] = []
    real_get_conn = SqliteHook.get_conn

    def get_conn(self: SqliteHook) -> SpyConnection:
        opened.append(SpyConnection(real_get_conn(self)))
        return opened[-1]

    monkeypatch.setattr(SqliteHook, "get_conn", get_conn)
    return opened
