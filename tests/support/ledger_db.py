"""The sync ledger's database, read and written directly (not through the provider) for the tests' checks."""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresDatabase

TABLE = "hindsight_sync_ledger"


def set_sqlite_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, path: Path, **extra: Any) -> str:
    """Define the Airflow connection ``conn_id`` to the SQLite file ``path``; returns ``conn_id``."""
    connection: dict[str, Any] = {"conn_type": "sqlite", "host": str(path)}
    if extra:
        connection["extra"] = extra
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    return conn_id


@dataclass
class LedgerDatabase:
    """A real database behind the Airflow connection ``conn_id``, with direct access for checks."""

    backend: str
    """``"sqlite"`` or ``"postgres"``."""
    connect: Callable[[], Any]
    """A new DB-API connection of the test's own, outside the ledger."""
    set_connection: Callable[..., str]
    """``set_connection(conn_id, **options)`` defines another Airflow connection to this database."""
    conn_id: str
    sync_id: str
    """The sync_id :meth:`hashes` and :meth:`synced_at` read by default."""

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
            connection.commit()
            return rows

    def run(self, *statements: str) -> None:
        with closing(self.connect()) as connection:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
            connection.commit()

    def table_exists(self, table: str = TABLE) -> bool:
        schema, _, name = table.rpartition(".")
        if self.backend == "sqlite":
            return bool(self.query(f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{name}'"))
        return bool(
            self.query(
                "SELECT 1 FROM information_schema.tables "
                f"WHERE table_schema = '{schema or 'public'}' AND table_name = '{name}'"
            )
        )

    def hashes(self, sync_id: str | None = None, table: str = TABLE) -> dict[int, str]:
        """``{id: body_sha256}`` of one sync_id, checking there is one ledger row per id."""
        rows = self.query(
            f"SELECT interview_request_id, body_sha256 FROM {table} WHERE sync_id = '{sync_id or self.sync_id}' "
            "AND interview_request_id > 0"  # not an earlier version's lease row (-1)
        )
        assert len({row[0] for row in rows}) == len(rows)
        return {int(interview_id): str(value) for interview_id, value in rows}

    def synced_at(self, sync_id: str | None = None) -> dict[int, datetime.datetime]:
        rows = self.query(
            f"SELECT interview_request_id, synced_at FROM {TABLE} WHERE sync_id = '{sync_id or self.sync_id}' "
            "AND interview_request_id > 0"
        )
        return {
            int(interview_id): datetime.datetime.fromisoformat(value) if isinstance(value, str) else value
            for interview_id, value in rows
        }

    def sync_ids(self) -> dict[str, int]:
        return {
            str(key): int(count) for key, count in self.query(f"SELECT sync_id, COUNT(*) FROM {TABLE} GROUP BY sync_id")
        }


def sqlite_ledger(path: Path, monkeypatch: pytest.MonkeyPatch, conn_id: str, *, sync_id: str) -> LedgerDatabase:
    """A ledger database in the SQLite file ``path``, behind ``conn_id``."""
    set_sqlite_connection(monkeypatch, conn_id, path)

    def set_connection(other_conn_id: str, **extra: Any) -> str:
        return set_sqlite_connection(monkeypatch, other_conn_id, path, **extra)

    return LedgerDatabase("sqlite", lambda: sqlite3.connect(path), set_connection, conn_id, sync_id)


def postgres_ledger(
    database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch, conn_id: str, *, sync_id: str
) -> LedgerDatabase:
    """A ledger database in a PostgreSQL database of the test server, behind ``conn_id``."""
    import psycopg

    database.set_airflow_connection(monkeypatch, conn_id)

    def set_connection(other_conn_id: str, **options: Any) -> str:
        return database.set_airflow_connection(monkeypatch, other_conn_id, **options)

    return LedgerDatabase("postgres", lambda: psycopg.connect(**database.params), set_connection, conn_id, sync_id)
