"""Making a table usable before any request: reading its columns, creating or evolving it, probing a write.

:class:`TableSchema` runs on the table's connection for :meth:`~.sql.SqlTable.prepare`: the columns
read back and checked against the :class:`~.table.TableSpec`, ``CREATE TABLE IF NOT EXISTS`` (two
runs creating it at once both go on), and a write probe that leaves no trace.

Schema evolution, one mechanism for every table: a table made by an earlier version lacks the
nullable columns added since. A run that may write adds them (``ALTER TABLE ... ADD COLUMN``, all in
one transaction; a run adding them at the same moment is fine); where the connection may not alter
the table, it fails before any request with the statements to run. A dry run changes nothing: it
reads the missing columns as empty (``NULL``) and says so. Any other difference (a column this
version does not know, a missing key or required column) means the table is not one of the provider's.

Each step rolls back what failed; a transient driver error is carried out as :class:`~.faults.TransientFault` to the
retries of ``prepare()``; every other failure is a :class:`~.faults.HindsightLedgerError` naming
the connection, the table and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow_provider_hindsight.ledgers.dialect import SqlDialect
from airflow_provider_hindsight.ledgers.faults import (
    HindsightLedgerError,
    TableMessages,
    TransientFault,
    is_missing_table,
    raise_if_transient,
)
from airflow_provider_hindsight.ledgers.table import Column, Row, TableStatements
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error, fault_of_sqlstate

log = logging.getLogger(__name__)


class TableSchema:
    """The shape of one table on an open connection: read, created, checked and probed."""

    def __init__(
        self,
        connection: Any,
        dialect: SqlDialect,
        statements: TableStatements,
        messages: TableMessages,
        missing_means: str,
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.statements = statements
        self.spec = statements.spec
        self.table = statements.table
        self.messages = messages
        self.missing_means = missing_means

    def ensure(self, *, create: bool, probe_rows: Callable[[], list[Row]]) -> bool:
        """Whether the table exists, made usable: created (``create``), checked, and probed (``create``).

        Without ``create`` (a dry run) a missing table is logged at INFO and nothing is written.
        """
        columns, read_error = self.read_columns()
        if columns is None and create:
            self.create(read_error)
            columns, read_error = self.read_columns()
        if columns is None:
            if not create and read_error is not None and is_missing_table(read_error):
                log.info(
                    "The %s %s does not exist on %r yet: %s.",
                    self.messages.noun,
                    self.table,
                    self.messages.conn_id,
                    self.missing_means,
                )
                return False
            raise self.unreadable(read_error)
        missing = self.check(columns)
        if missing and create:
            self.add_columns(missing)
        elif missing:
            self.statements.absent = frozenset(column.name for column in missing)
            log.info(
                "The %s %s on %r is from an earlier version: it lacks the columns %s, which a run that writes adds "
                "(a dry run reads them as empty).",
                self.messages.noun,
                self.table,
                self.messages.conn_id,
                ", ".join(column.name for column in missing),
            )
        if create:
            self.probe_write(probe_rows())
        return True

    def read_columns(self) -> tuple[list[str] | None, Exception | None]:
        """The table's column names, lower-cased, or ``None`` and the error when it cannot be read."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM {self.table} WHERE 1 = 0")
            columns = [str(column[0]).lower() for column in cursor.description or ()]
            cursor.fetchall()
        except Exception as error:
            rollback_quietly(self.connection)
            raise_if_transient(error)
            return None, error
        finally:
            close_quietly(cursor)
        self.connection.commit()
        return columns, None

    def create(self, read_error: Exception | None) -> None:
        cursor = self.connection.cursor()
        notices = _ExistingTableNotices(self.connection)
        try:
            if self.dialect.is_sqlite:  # one writer at a time: nobody can create it between the check and the CREATE
                cursor.execute("BEGIN IMMEDIATE")
                notices.existing = self._sqlite_table_exists(cursor)
            with notices:
                cursor.execute(self.spec.create_sql(self.table))
            self.connection.commit()
        except Exception as error:
            rollback_quietly(self.connection)
            fault = classify_database_error(error)
            if fault in (DatabaseFault.BUSY, DatabaseFault.LOST):
                raise TransientFault(fault, error) from None
            if self.read_columns()[0] is not None:  # another run created it at the same time
                self._log_found()
                return
            if read_error is not None and not is_missing_table(read_error):
                raise self.unreadable(read_error) from None  # it exists, most likely: reading is the problem
            raise self._cannot_create(error) from None
        finally:
            close_quietly(cursor)
        if notices.existing:
            self._log_found()
        else:
            log.info("Created the %s %s on %r.", self.messages.noun, self.table, self.messages.conn_id)

    def _log_found(self) -> None:
        log.info(
            "Found the %s %s on %r: another run created it at the same moment.",
            self.messages.noun,
            self.table,
            self.messages.conn_id,
        )

    def _cannot_create(self, error: Exception) -> HindsightLedgerError:
        schema = self.table.partition(".")[0] if "." in self.table else None
        hint = f" The schema {schema!r} must exist: CREATE SCHEMA {schema}." if schema else ""
        return self.messages.error(
            f"cannot create {self.messages.where}: {self.messages.quote(error)}.{hint} Fix: let the connection's "
            f"user create tables there, create the table yourself (columns {', '.join(self.spec.names)}; primary "
            f"key ({', '.join(self.spec.key)})), or point {self.messages.conn_parameter} at a writable database."
        )

    def _sqlite_table_exists(self, cursor: Any) -> bool:
        schema, _, name = self.table.rpartition(".")
        cursor.execute(
            f"SELECT 1 FROM {schema + '.' if schema else ''}sqlite_master WHERE type = 'table' AND lower(name) = ?",
            (name.lower(),),
        )
        return cursor.fetchone() is not None

    def unreadable(self, error: Exception | None) -> HindsightLedgerError:
        return self.messages.error(
            f"cannot read {self.messages.where}: {self.messages.quote(error)}. Fix: give the connection's user "
            f"SELECT, INSERT, UPDATE and DELETE on it, or set {self.messages.table_parameter} to another name."
        )

    def check(self, columns: list[str]) -> list[Column]:
        """The columns an earlier version's table lacks (nullable, not in the key); raises when it is not this kind."""
        expected = self.spec.names
        missing = [column for column in self.spec.columns if column.name not in columns]
        addable = all(column.nullable and column.name not in self.spec.key for column in missing)
        if set(columns) - set(expected) - set(self.spec.others_columns) or not addable:
            raise self.messages.error(
                f"the table {self.table!r} on connection {self.messages.conn_id!r} is not a {self.spec.kind}: "
                f"its columns are ({', '.join(columns)}), a {self.spec.kind} has exactly ({', '.join(expected)}). "
                f"Fix: set {self.messages.table_parameter} to another name, or drop or rename that table."
            )
        return missing

    def add_columns(self, missing: list[Column]) -> None:
        """``ALTER TABLE ... ADD COLUMN`` each of ``missing``, in one transaction; see the module's docstring.

        A failed try reads the columns again: none missing means another run added them; fewer missing means
        another run is adding them at the same moment (where a driver commits each ``ALTER`` on its own, as
        SQLite's does), so what is left is tried again; as many missing as before means this connection may not.
        """
        added: list[str] = []
        while missing:
            statements = [self.spec.add_column_sql(self.table, column) for column in missing]
            error = self._execute_all(statements)
            if error is None:
                added.extend(column.name for column in missing)
                break
            columns = self.read_columns()[0]
            left = self.check(columns) if columns is not None else missing
            if len(left) >= len(missing):
                script = "".join(f"\n    {statement};" for statement in statements)
                raise self.messages.error(
                    f"{self.messages.where} is from an earlier version and lacks the columns "
                    f"{', '.join(column.name for column in missing)}, and this connection may not add them "
                    f"({self.messages.quote(error)}). Nothing was sent. Fix: run, as a user who may alter the table "
                    f"(its owner), then run the task again:{script}"
                ) from None
            missing = left
        if added:
            log.info(
                "Added the columns %s to the %s %s on %r (a table from an earlier version).",
                ", ".join(added),
                self.messages.noun,
                self.table,
                self.messages.conn_id,
            )

    def _execute_all(self, statements: list[str]) -> Exception | None:
        """Run ``statements`` and commit; on failure roll back and return the error (a transient one is raised)."""
        cursor = self.connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
            self.connection.commit()
        except Exception as error:
            rollback_quietly(self.connection)
            raise_if_transient(error)
            return error
        finally:
            close_quietly(cursor)
        return None

    def probe_write(self, rows: list[Row]) -> None:
        """Upsert ``rows`` (one key no real row has: an insert, then an update), delete them, roll back."""
        cursor = self.connection.cursor()
        try:
            for row in rows:
                self.statements.upsert(cursor, [row])
            self.statements.delete(cursor, sorted({self.spec.key_of(row) for row in rows}))
        except Exception as error:
            rollback_quietly(self.connection)
            raise_if_transient(error)
            raise self.messages.error(
                f"cannot write to {self.messages.where}: {self.messages.quote(error)}. Fix: the connection's user "
                "needs INSERT, UPDATE and DELETE on it, on a database that is not read-only (not a replica, not "
                "default_transaction_read_only, not a file opened with mode=ro), and the table needs its primary "
                f"key ({', '.join(self.spec.key)}); or point {self.messages.conn_parameter} at a writable database."
            ) from None
        finally:
            close_quietly(cursor)
        self.connection.rollback()


class _ExistingTableNotices:
    """Whether ``CREATE TABLE IF NOT EXISTS`` found the table: PostgreSQL says so in a notice (already exists).

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
        if fault_of_sqlstate(getattr(diagnostic, "sqlstate", None)) is DatabaseFault.ALREADY_EXISTS:
            self.existing = True


def rollback_quietly(connection: Any) -> None:
    """Roll back; a connection that is gone cannot, and the error that broke it is the one to report."""
    try:
        connection.rollback()
    except Exception as error:
        log.debug("Rollback failed on a table's connection: %s", error)


def close_quietly(cursor: Any) -> None:
    try:
        cursor.close()
    except Exception as error:
        log.debug("Closing a cursor failed on a table's connection: %s", error)
