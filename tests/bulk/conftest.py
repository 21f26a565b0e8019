"""Fixtures for the warehouse-scale tests: run a bulk operator's ``execute()`` and a SQLite warehouse."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from .helpers import WAREHOUSE_CONN_ID, Executed, SpyConnection


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
