"""``streaming_cursor`` against a real PostgreSQL server (psycopg2 and psycopg 3) and SQLite."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.transfers.streaming import connection_driver, streaming_cursor, streaming_kind
from tests.support.postgres import PostgresDatabase, PostgresServer

ROWS = 2500
BATCH = 1000
QUERY = "SELECT interview_request_id, contact_name FROM deals ORDER BY interview_request_id"


@pytest.fixture
def deals(postgres_server: PostgresServer, postgres_database: PostgresDatabase) -> PostgresDatabase:
    """The test's database with a ``deals`` table of ``ROWS`` rows."""
    postgres_server.execute(
        "CREATE TABLE deals AS SELECT g AS interview_request_id, 'Contact ' || g AS contact_name "
        f"FROM generate_series(1, {ROWS}) AS g",
        database=postgres_database.name,
    )
    return postgres_database


def _hook_connection(database: PostgresDatabase, conn_id: str, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Any:
    """A connection the way users get one: ``PostgresHook(postgres_conn_id=...).get_conn()``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    database.set_airflow_connection(monkeypatch, conn_id, extra=extra or None)
    return PostgresHook(postgres_conn_id=conn_id).get_conn()


def _psycopg2_connection(database: PostgresDatabase, **options: Any) -> Any:
    import psycopg2

    connection = psycopg2.connect(**database.params)
    if options.get("autocommit"):
        connection.autocommit = True
    return connection


def _psycopg_connection(database: PostgresDatabase, **options: Any) -> Any:
    import psycopg

    return psycopg.connect(**database.params, **options)


CONNECTIONS: dict[str, Callable[..., Any]] = {
    "psycopg2": _psycopg2_connection,
    "psycopg": _psycopg_connection,
}


def _open_cursors(connection: Any) -> list[tuple[str, str]]:
    """``(name, statement)`` of the server-side cursors open in ``connection``'s session (``pg_cursors``)."""
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT name, statement FROM pg_cursors ORDER BY name")
        return [(str(name), str(statement)) for name, statement in cursor.fetchall()]
    finally:
        cursor.close()


def _stream(
    connection: Any, sql: str = QUERY, **options: Any
) -> tuple[list[str], list[int], list[tuple[Any, ...]], Any]:
    """Column names, batch sizes and rows read through ``streaming_cursor``, plus the cursors open mid-way."""
    with streaming_cursor(connection, **options) as cursor:
        cursor.execute(sql)
        columns = [str(column[0]) for column in cursor.description]
        sizes: list[int] = []
        rows: list[tuple[Any, ...]] = []
        open_mid_way = None
        while batch := cursor.fetchmany(BATCH):
            sizes.append(len(batch))
            rows.extend(tuple(row) for row in batch)
            if open_mid_way is None:
                open_mid_way = _open_cursors(connection)
    return columns, sizes, rows, open_mid_way


def _assert_streamed_from_server(connection: Any, result: tuple[Any, ...], name_prefix: str = "hindsight_") -> None:
    columns, sizes, rows, open_mid_way = result
    assert columns == ["interview_request_id", "contact_name"]
    assert sizes == [1000, 1000, 500]
    assert rows == [(n, f"Contact {n}") for n in range(1, ROWS + 1)]
    assert len(open_mid_way) == 1, open_mid_way
    name, statement = open_mid_way[0]
    assert name.startswith(name_prefix)
    assert "FROM deals" in statement
    assert _open_cursors(connection) == [], "the server-side cursor is closed on exit"


def test_postgres_hook_connection_streams_through_a_server_side_cursor(
    deals: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.postgres.hooks import postgres as provider

    connection = _hook_connection(deals, "warehouse_pg", monkeypatch)
    try:
        expected = "psycopg" if provider.USE_PSYCOPG3 else "psycopg2"
        assert connection_driver(connection) == expected
        assert streaming_kind(connection) == f"server-side cursor ({expected})"
        _assert_streamed_from_server(connection, _stream(connection))
    finally:
        connection.close()


@pytest.mark.parametrize("driver", sorted(CONNECTIONS))
def test_each_postgres_driver_streams_through_a_server_side_cursor(deals: PostgresDatabase, driver: str) -> None:
    connection = CONNECTIONS[driver](deals)
    try:
        assert streaming_kind(connection) == f"server-side cursor ({driver})"
        _assert_streamed_from_server(connection, _stream(connection, name="deals_stream"), "deals_stream")
    finally:
        connection.close()


@pytest.mark.parametrize("driver", sorted(CONNECTIONS))
def test_description_is_known_right_after_execute(deals: PostgresDatabase, driver: str) -> None:
    connection = CONNECTIONS[driver](deals)
    try:
        with streaming_cursor(connection) as cursor:
            cursor.execute("SELECT interview_request_id AS id, contact_name FROM deals WHERE interview_request_id < 0")
            assert [column[0] for column in cursor.description] == ["id", "contact_name"]
            assert cursor.fetchmany(BATCH) == []
    finally:
        connection.close()


@pytest.mark.parametrize("driver", sorted(CONNECTIONS))
def test_rows_are_computed_as_they_are_fetched(deals: PostgresDatabase, driver: str) -> None:
    """Row 1,500 divides by zero: a client-side cursor fails in execute(), a server-side one at the second batch."""
    failing = "SELECT interview_request_id, 1 / (interview_request_id - 1500) AS x FROM deals"  # no sort: row by row
    connection = CONNECTIONS[driver](deals)
    try:
        plain = connection.cursor()
        with pytest.raises(Exception, match="division by zero"):
            plain.execute(failing)
        plain.close()
        connection.rollback()
        with streaming_cursor(connection) as cursor:
            cursor.execute(failing)
            assert len(cursor.fetchmany(BATCH)) == BATCH
            with pytest.raises(Exception, match="division by zero"):
                cursor.fetchmany(BATCH)
        connection.rollback()
    finally:
        connection.close()


@pytest.mark.parametrize("driver", sorted(CONNECTIONS))
def test_autocommit_connection_streams_and_gets_autocommit_back(deals: PostgresDatabase, driver: str) -> None:
    """``DECLARE CURSOR`` needs a transaction: autocommit is switched off for the cursor's life only."""
    connection = CONNECTIONS[driver](deals, autocommit=True)
    try:
        _assert_streamed_from_server(connection, _stream(connection))
        assert connection.autocommit is True
    finally:
        connection.close()


def test_hook_connection_with_autocommit_extra_streams(
    deals: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.postgres.hooks import postgres as provider

    if not provider.USE_PSYCOPG3:
        pytest.skip("the Postgres provider passes extras to psycopg 3 only; psycopg2 takes no autocommit argument")
    connection = _hook_connection(deals, "warehouse_pg_autocommit", monkeypatch, autocommit=True)
    try:
        assert connection.autocommit is True
        _assert_streamed_from_server(connection, _stream(connection))
        assert connection.autocommit is True
    finally:
        connection.close()


def test_sqlite_uses_its_own_cursor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE deals (interview_request_id INTEGER, contact_name TEXT)")
        database.executemany("INSERT INTO deals VALUES (?, ?)", [(n, f"Contact {n}") for n in range(1, ROWS + 1)])
    database.close()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    connection = SqliteHook(sqlite_conn_id="warehouse_sqlite").get_conn()
    try:
        assert streaming_kind(connection) == "the driver's cursor with fetchmany (sqlite3)"
        with streaming_cursor(connection) as cursor:
            assert type(cursor) is sqlite3.Cursor
            cursor.execute(QUERY)
            assert [column[0] for column in cursor.description] == ["interview_request_id", "contact_name"]
            sizes = []
            while batch := cursor.fetchmany(BATCH):
                sizes.append(len(batch))
        assert sizes == [1000, 1000, 500]
        with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
            cursor.fetchmany(1)
    finally:
        connection.close()
