"""Cursors that stream a query's result instead of holding all of it in memory.

Most DB-API drivers hand rows over as ``fetchmany`` asks for them (SQLite, Snowflake, BigQuery,
mysql-connector). Two common ones do not: psycopg2 and psycopg 3 (Postgres) read the whole result
into the client on ``execute()``, and MySQLdb and PyMySQL do the same with their default cursor.
:func:`streaming_cursor` picks the cursor that streams for the driver behind a connection:

- psycopg2 and psycopg 3: a named, server-side cursor (``DECLARE ... CURSOR``); each ``fetchmany(n)``
  fetches ``n`` rows from the server. The query must be one ``SELECT`` (or ``VALUES``/``TABLE``),
  and it runs in a transaction: a connection in autocommit mode is switched out of it for the
  cursor's life and back afterwards.
- MySQLdb (mysqlclient) and PyMySQL: their unbuffered ``SSCursor``.
- anything else: the connection's own cursor.

The driver is recognised by the module of the connection's class, so no driver is imported unless
the connection already comes from it.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from airflow_provider_hindsight.sql_connection.session import driver_of

DEFAULT_ITERSIZE = 1000
"""Rows a server-side cursor fetches per round trip when iterated (``fetchmany(n)`` fetches ``n``)."""

_SERVER_SIDE_DRIVERS = ("psycopg2", "psycopg")
_UNBUFFERED_DRIVERS = ("MySQLdb", "pymysql")


def connection_driver(connection: Any) -> str:
    """The top-level module of the driver behind ``connection`` (``"psycopg2"``, ``"sqlite3"``, ...).

    A known driver is recognised through the class hierarchy (the SQL layer's ``driver_of``), so a
    driver's connection subclass (psycopg2's ``LoggingConnection``, a user's own) counts too; another
    driver is named by its connection class's module.
    """
    return driver_of(connection) or type(connection).__module__.partition(".")[0]


def streaming_kind(connection: Any) -> str:
    """How :func:`streaming_cursor` reads from ``connection``, for a log line."""
    driver = connection_driver(connection)
    if driver in _SERVER_SIDE_DRIVERS:
        return f"server-side cursor ({driver})"
    if driver in _UNBUFFERED_DRIVERS:
        return f"unbuffered cursor ({driver} SSCursor)"
    return f"the driver's cursor with fetchmany ({driver})"


@contextmanager
def streaming_cursor(connection: Any, *, name: str | None = None, itersize: int = DEFAULT_ITERSIZE) -> Iterator[Any]:
    """A DB-API cursor on ``connection`` that streams its result; closed on exit.

    :param name: the server-side cursor's name (psycopg); a unique ``hindsight_<hex>`` by default.
    :param itersize: rows per round trip when the server-side cursor is iterated.

    ``cursor.description`` is set right after ``execute()`` for every driver (psycopg2 named
    cursors only learn it from a first fetch, which this cursor makes without consuming a row).
    """
    driver = connection_driver(connection)
    if driver in _UNBUFFERED_DRIVERS:
        unbuffered = importlib.import_module(f"{driver}.cursors").SSCursor
        cursor = connection.cursor(unbuffered)
        try:
            yield cursor
        finally:
            cursor.close()
        return
    if driver not in _SERVER_SIDE_DRIVERS:
        cursor = connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
        return
    was_autocommit = bool(connection.autocommit)
    if was_autocommit:  # DECLARE CURSOR needs a transaction
        connection.autocommit = False
    try:
        server_side = connection.cursor(name=name or f"hindsight_{uuid.uuid4().hex}")
        server_side.itersize = itersize
        try:
            yield _Psycopg2NamedCursor(server_side) if driver == "psycopg2" else server_side
        finally:
            server_side.close()
    finally:
        if was_autocommit:
            connection.rollback()  # ends the read-only transaction the cursor ran in
            connection.autocommit = True


class _Psycopg2NamedCursor:
    """A psycopg2 named cursor whose ``description`` is known right after ``execute()``.

    psycopg2 sets it only when rows are first fetched; ``fetchmany(0)`` fetches none and sets it.
    Everything else is the wrapped cursor's own.
    """

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: Any, parameters: Mapping[str, Any] | Sequence[Any] | None = None) -> None:
        self._cursor.execute(sql, parameters)
        if self._cursor.description is None:
            self._cursor.fetchmany(0)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._cursor, attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        if attribute == "_cursor":
            object.__setattr__(self, attribute, value)
        else:
            setattr(self._cursor, attribute, value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)


_PG_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def idle_in_transaction_timeout(connection: Any) -> float | None:
    """PostgreSQL's ``idle_in_transaction_session_timeout`` for this session in seconds; ``None`` when it is
    off (0), cannot be read, or the database is not PostgreSQL.

    The source query holds one transaction for the whole run (a server-side cursor), idle between two
    fetches while a batch is being sent: past this timeout the server ends the session.
    """
    if connection_driver(connection) not in _SERVER_SIDE_DRIVERS:
        return None
    cursor = connection.cursor()
    try:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        row = cursor.fetchone()
    except Exception:  # an old server, a proxy that hides settings: no warning, no harm
        connection.rollback()
        return None
    finally:
        cursor.close()
    return postgres_duration(str(row[0])) if row else None


def postgres_duration(text: str) -> float | None:
    """``"30s"``, ``"2min"``, ``"500ms"``, ``"1h"`` or milliseconds (``"30000"``) in seconds; ``None`` for 0."""
    text = text.strip().lower()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :].strip() or "ms"
    try:
        seconds = float(number) * _PG_UNITS[unit]
    except (ValueError, KeyError):
        return None
    return seconds or None
