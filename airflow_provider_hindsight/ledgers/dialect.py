"""What differs between databases for the provider's tables: placeholders, upserts, timestamps, lock waits.

:class:`SqlDialect` is made from a connection's common-sql ``DbApiHook`` and its DB-API connection.
Its session bounds lock waits (:func:`~airflow_provider_hindsight.sql_connection.session.bound_waits`):
a PostgreSQL statement waits :data:`POSTGRES_LOCK_TIMEOUT_MS` for a lock (unless the role's
``lock_timeout`` is shorter), SQLite waits :data:`SQLITE_BUSY_TIMEOUT_MS` for another writer.

SQLite has one writer at a time, and a reader in the default rollback-journal mode blocks every
writer's commit until its query finishes. A table may live in the very file whose rows a transfer is
streaming (one ``SELECT`` open for the whole run, on another connection), so a writable table
switches that database to write-ahead logging (:meth:`SqlDialect.use_write_ahead_log`; logged at
INFO when it does): readers then never block the writer, nor the writer them. WAL is a lasting
property of the file (SQLite keeps ``-wal`` and ``-shm`` files beside it, and the file must be on a
local disk); a dry run leaves the file as it is.
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from airflow_provider_hindsight.sql_connection.session import bound_waits, is_sqlite
from airflow_provider_hindsight.times import utc_now, utc_timestamp

SQLITE_BUSY_TIMEOUT_MS = 120_000
"""How long a table's SQLite connection waits for another writer's lock."""
POSTGRES_LOCK_TIMEOUT_MS = 10_000
"""``lock_timeout`` of a table's PostgreSQL session: how long one statement waits for a lock (a role's
shorter ``lock_timeout`` is kept)."""
_REPLACE_INTO_DIALECTS = frozenset({"sqlite", "mysql", "mariadb"})
"""Dialects whose ``REPLACE INTO`` (the generic dialect's replace statement) is an upsert."""

log = logging.getLogger(__name__)


def upsert_statement(hook: Any, table: str, columns: Sequence[str], key: Sequence[str]) -> str | None:
    """The hook's dialect's upsert of one row of ``columns`` on ``key``, or ``None`` when it has none.

    Postgres ``INSERT ... ON CONFLICT DO UPDATE``, any other dialect's own replace statement;
    SQLite and MySQL ``REPLACE INTO``. ``None`` means: update the keys that exist, insert the others.
    """
    try:
        from airflow.providers.common.sql.dialects.dialect import Dialect

        dialect = hook.dialect
        specific = type(dialect).generate_replace_sql is not Dialect.generate_replace_sql
        if not specific and hook.dialect_name not in _REPLACE_INTO_DIALECTS:
            return None
        return str(dialect.generate_replace_sql(table, (None,) * len(columns), list(columns), replace_index=list(key)))
    except Exception as error:  # common-sql without dialects, a dialect's provider missing, or no upsert
        log.debug("No upsert from the SQL dialect (%s): updating, then inserting.", error)
        return None


class SqlDialect:
    """The database behind one connection: its placeholder, upsert, timestamps and session settings."""

    def __init__(self, hook: Any, connection: Any) -> None:
        self._hook = hook
        self.placeholder = str(hook.placeholder)
        self.is_sqlite = is_sqlite(connection)

    def placeholders(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)

    def upsert_sql(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str | None:
        """See :func:`upsert_statement`."""
        return upsert_statement(self._hook, table, columns, key)

    def stored(self, moment: datetime.datetime | None) -> Any:
        """A naive UTC ``datetime`` as this database stores it: ISO text on SQLite, which has no timestamp type."""
        if moment is None:
            return None
        return moment.isoformat(sep=" ") if self.is_sqlite else moment

    def timestamp(self, value: object) -> Any:
        """Any timestamp (``datetime`` or ISO text, parsed by :func:`~airflow_provider_hindsight.times.utc_timestamp`)
        as this database stores it."""
        return self.stored(utc_timestamp(value))

    def now(self) -> Any:
        """Now in UTC, as this database stores it."""
        return self.stored(utc_now())

    def set_up_session(self, connection: Any) -> None:
        """Bound the session's lock waits; raises the driver's error."""
        bound_waits(connection, lock_timeout_ms=POSTGRES_LOCK_TIMEOUT_MS, sqlite_busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS)

    def use_write_ahead_log(self, connection: Any, *, conn_parameter: str, conn_id: str) -> None:
        """On SQLite, switch the database to write-ahead logging (see the module's docstring)."""
        if not self.is_sqlite:
            return
        try:
            before = str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if before in ("wal", "memory"):
                return
            mode = str(connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.Error as error:
            mode = f"unchanged: {error}"
        if mode == "wal":
            log.info(
                "Switched the SQLite database of %s %r to write-ahead logging (PRAGMA journal_mode=WAL), so that "
                "writes do not wait for a query reading the same file. The file stays in WAL mode: SQLite keeps "
                "-wal and -shm files beside it.",
                conn_parameter,
                conn_id,
            )
            return
        log.warning(
            "Could not switch the SQLite database of %s %r to write-ahead logging (journal mode %s): writes can "
            "fail with 'database is locked' while a query on the same file is running.",
            conn_parameter,
            conn_id,
            mode,
        )
