"""A ledger table's own shape: reading its columns, creating it, checking it and probing a write.

:class:`LedgerSchema` is the base of :class:`~.sql.SqlTable` for its ``prepare()``: the columns read
back and checked against the :class:`~.statements.Column` spec, ``CREATE TABLE IF NOT EXISTS`` (two
runs creating it at once both go on), a write probe that leaves no trace, and SQLite's switch to
write-ahead logging (see :mod:`.sql`). Each runs on the table's connection and rolls back what failed;
a transient driver error is carried out as :class:`~.faults._Transient` to ``prepare()``'s retries.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, ClassVar

from airflow_provider_hindsight.ledgers.faults import (
    DatabaseFault,
    HindsightLedgerError,
    LedgerMessages,
    _is_missing_table,
    _raise_if_transient,
    _Transient,
    classify_database_error,
)
from airflow_provider_hindsight.ledgers.statements import Row, SqlStatements

log = logging.getLogger(__name__)


class LedgerSchema(SqlStatements, LedgerMessages):
    """Reading, creating, checking and probing the table on :attr:`_connection`; see :class:`~.sql.SqlTable`."""

    KIND: ClassVar[str] = "Hindsight ledger"
    """What the table is, in messages: "the table 'x' ... is not a <KIND>"."""

    _connection: Any
    """The ledger's DB-API connection, open from ``prepare()`` to ``close()``."""

    def _read_columns(self) -> tuple[list[str] | None, Exception | None]:
        """The table's column names, lower-cased, or ``None`` and the error when it cannot be read."""
        cursor = self._connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM {self.table} WHERE 1 = 0")
            columns = [str(column[0]).lower() for column in cursor.description or ()]
            cursor.fetchall()
        except Exception as error:
            _rollback_quietly(self._connection)
            _raise_if_transient(error)
            return None, error
        finally:
            _close_quietly(cursor)
        self._connection.commit()
        return columns, None

    def _create_table(self, read_error: Exception | None) -> None:
        cursor = self._connection.cursor()
        notices = _ExistingTableNotices(self._connection)
        try:
            if self._is_sqlite:  # one writer at a time: nobody can create it between the check and the CREATE
                cursor.execute("BEGIN IMMEDIATE")
                notices.existing = self._sqlite_table_exists(cursor)
            with notices:
                cursor.execute(self.create_table_sql(self.table))
            self._connection.commit()
        except Exception as error:
            _rollback_quietly(self._connection)
            fault = classify_database_error(error)
            if fault in (DatabaseFault.BUSY, DatabaseFault.LOST):
                raise _Transient(fault, error) from None
            if self._read_columns()[0] is not None:  # another run created it at the same time
                log.info(
                    "Found the ledger table %s on %r: another run created it at the same moment.",
                    self.table,
                    self.ledger_conn_id,
                )
                return
            if read_error is not None and not _is_missing_table(read_error):
                raise self._unreadable(read_error) from None  # it exists, most likely: reading is the problem
            schema = self.table.partition(".")[0] if "." in self.table else None
            hint = f" The schema {schema!r} must exist: CREATE SCHEMA {schema}." if schema else ""
            raise self._error(
                f"cannot create the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
                f"{self._message(error)}.{hint} Fix: let the connection's user create tables "
                f"there, create the table yourself (columns {', '.join(self.column_names())}; "
                f"primary key ({', '.join(self.KEY)})), or point ledger_conn_id at a writable database."
            ) from None
        finally:
            _close_quietly(cursor)
        if notices.existing:
            log.info(
                "Found the ledger table %s on %r: another run created it at the same moment.",
                self.table,
                self.ledger_conn_id,
            )
        else:
            log.info("Created the ledger table %s on %r.", self.table, self.ledger_conn_id)

    def _sqlite_table_exists(self, cursor: Any) -> bool:
        schema, _, name = self.table.rpartition(".")
        cursor.execute(
            f"SELECT 1 FROM {schema + '.' if schema else ''}sqlite_master WHERE type = 'table' AND lower(name) = ?",
            (name.lower(),),
        )
        return cursor.fetchone() is not None

    def _unreadable(self, error: Exception | None) -> HindsightLedgerError:
        return self._error(
            f"cannot read the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
            f"{self._message(error)}. Fix: give the connection's user SELECT, INSERT, UPDATE and DELETE on it, "
            "or set ledger_table to another name."
        )

    def _check_columns(self, columns: list[str]) -> None:
        expected = self.column_names()
        if sorted(columns) != sorted(expected):
            raise self._error(
                f"the table {self.table!r} on connection {self.ledger_conn_id!r} is not a {self.KIND}: "
                f"its columns are ({', '.join(columns)}), a ledger has exactly ({', '.join(expected)}). "
                "Fix: set ledger_table to another name, or drop or rename that table."
            )

    def _probe_rows(self) -> list[Row]:
        """Full rows with one key that no real row has: upserted in order (an insert, then an update), deleted."""
        raise NotImplementedError

    def _probe_write(self) -> None:
        """Upsert the probe rows (an insert, then an update), delete them and roll back: leaves no trace."""
        cursor = self._connection.cursor()
        try:
            rows = self._probe_rows()
            for row in rows:
                self._upsert(cursor, [row])
            self._delete(cursor, sorted({self._key_of(row) for row in rows}))
        except Exception as error:
            _rollback_quietly(self._connection)
            _raise_if_transient(error)
            raise self._error(
                f"cannot write to the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
                f"{self._message(error)}. Fix: the connection's user needs INSERT, UPDATE and DELETE on it, on a "
                "database that is not read-only (not a replica, not default_transaction_read_only, not a "
                f"file opened with mode=ro), and the table needs its primary key ({', '.join(self.KEY)}); "
                "or point ledger_conn_id at a writable database."
            ) from None
        finally:
            cursor.close()
        self._connection.rollback()

    def _use_write_ahead_log(self) -> None:
        try:
            before = str(self._connection.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if before in ("wal", "memory"):
                return
            mode = str(self._connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.Error as error:
            mode = f"unchanged: {error}"
        if mode == "wal":
            log.info(
                "Switched the SQLite database of ledger_conn_id %r to write-ahead logging (PRAGMA "
                "journal_mode=WAL), so that ledger writes do not wait for a query reading the same file. The "
                "file stays in WAL mode: SQLite keeps -wal and -shm files beside it.",
                self.ledger_conn_id,
            )
            return
        log.warning(
            "Could not switch the SQLite ledger database of %r to write-ahead logging (journal mode %s): "
            "recording can fail with 'database is locked' while a query on the same file is running.",
            self.ledger_conn_id,
            mode,
        )


class _ExistingTableNotices:
    """Whether ``CREATE TABLE IF NOT EXISTS`` found the table: PostgreSQL says so in a notice (42P07).

    SQLite is checked in ``sqlite_master`` under the write lock instead; on other databases the
    table was missing when read just before, so "created" is what the INFO line says.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.existing = False
        self._psycopg2_seen = 0

    def __enter__(self) -> _ExistingTableNotices:
        if hasattr(self.connection, "add_notice_handler"):  # psycopg 3
            self.connection.add_notice_handler(self._notice)
        elif isinstance(getattr(self.connection, "notices", None), list):  # psycopg2
            self._psycopg2_seen = len(self.connection.notices)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if hasattr(self.connection, "remove_notice_handler"):
            self.connection.remove_notice_handler(self._notice)
        elif isinstance(getattr(self.connection, "notices", None), list):
            new = self.connection.notices[self._psycopg2_seen :]
            self.existing = self.existing or any("already exists" in str(notice) for notice in new)

    def _notice(self, diagnostic: Any) -> None:
        if getattr(diagnostic, "sqlstate", None) == "42P07":
            self.existing = True


def _rollback_quietly(connection: Any) -> None:
    """Roll back; a connection that is gone cannot, and the error that broke it is the one to report."""
    try:
        connection.rollback()
    except Exception as error:
        log.debug("Rollback failed on the ledger connection: %s", error)


def _close_quietly(cursor: Any) -> None:
    try:
        cursor.close()
    except Exception as error:
        log.debug("Closing a cursor failed on the ledger connection: %s", error)
