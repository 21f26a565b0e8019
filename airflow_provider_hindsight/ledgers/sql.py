"""The SQL machinery every ledger shares: a table the provider keeps in the user's own database.

A ledger is one table on any Airflow SQL connection (``ledger_conn_id``), read and written through
that connection's own common-sql ``DbApiHook`` with the hook's placeholder. This module owns what
does not depend on the table's columns; a ledger module (:mod:`.sync`, the interview ledger)
declares its table and adds the queries of its own.

Owned here:

- :func:`validate_table_name`: a table name goes into SQL text, so only ``name`` or ``schema.name``.
- The errors: :class:`HindsightLedgerError`, the ledger cannot be used (permanent: a missing
  connection, a permission or schema problem; the message names the connection, the table and the
  fix); :class:`HindsightLedgerBusyError` (a lock held by another session past the bound, a deadlock,
  a serialization failure) and :class:`HindsightLedgerConnectionLostError` (the connection was lost or
  terminated), both :class:`HindsightLedgerUnavailableError`, transient: Airflow's retries apply.
- :func:`classify_database_error`: the one rule, by SQLSTATE (psycopg 3 ``sqlstate``, psycopg2
  ``pgcode``; SQLite by its words), of what a driver's error means.
- :class:`SqlTable`, the base class of a ledger. It holds one connection from :meth:`SqlTable.prepare`
  to :meth:`SqlTable.close` (use it from one thread at a time) and does, for the subclass's
  :class:`Column` spec and key: resolving the connection (:func:`~airflow_provider_hindsight.hooks.sql.sql_hook`),
  connecting, reading and checking the columns, ``CREATE TABLE IF NOT EXISTS`` (two runs creating it
  at once both go on), a write probe that leaves no trace, SQLite's busy timeout and switch to
  write-ahead logging, and the statements: batched look-ups by key (:meth:`SqlTable.select_by_keys`),
  upserts (the dialect's own, else a portable UPDATE then INSERT; :meth:`SqlTable.upsert_rows`), an
  insert that loses quietly to an existing key (:meth:`SqlTable.insert_if_absent`), updates and
  deletions by key, each write committed and retried when a concurrent run conflicted with it or
  held a lock too long. Driver messages it quotes never contain the connection's password.
- :func:`upsert_statement`, :func:`utc_now`, :func:`batches`.

Waiting for locks is bounded and said: a PostgreSQL ledger session sets its own ``lock_timeout``
(:data:`POSTGRES_LOCK_TIMEOUT_MS` per statement, unless the role's is shorter), SQLite waits
:data:`SQLITE_BUSY_TIMEOUT_MS`; a statement that gives up is tried again after a pause (at most
:data:`BUSY_ATTEMPTS` tries within :data:`LOCK_WAIT_LIMIT_SECONDS`), with a WARNING naming the table
and how long it waited so far, and :attr:`SqlTable.lock_wait_seconds` adds up what writes lost that way.

A ledger declares its table with class attributes and a probe row::

    class InterviewLedger(SqlTable):
        KIND = "Hindsight interview ledger"
        COLUMNS = (Column("request_key", "VARCHAR(256)"), Column("state", "VARCHAR(16)"),
                   Column("interview_request_id", "BIGINT", nullable=True), ...)
        KEY = ("request_key",)

        def _probe_rows(self) -> list[tuple[Any, ...]]:
            ...  # two full rows with one key that no real row has: inserted, updated, deleted, rolled back

SQLite has one writer at a time, and a reader in the default rollback-journal mode blocks every
writer's commit until its query finishes. A ledger may live in the very file whose rows a transfer
is streaming (one ``SELECT`` open for the whole run, on another connection), so ``prepare()``
switches that database to write-ahead logging (``PRAGMA journal_mode=WAL``; logged at INFO when it
does): readers then never block the writer, nor the writer them. It must run before the source
query starts. WAL is a lasting property of the file (SQLite keeps ``-wal`` and ``-shm`` files
beside it, and the file must be on a local disk); a dry run leaves the file as it is. The ledger's
SQLite connection also waits up to two minutes for another writer's lock instead of failing at once.
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, ClassVar, TypeVar

from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightError,
    HindsightTransientError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.sql import sql_hook

LEDGER_BATCH = 500
"""Keys per look-up, write or deletion statement batch."""
WRITE_ATTEMPTS = 5
"""Tries of one batch when a concurrent run conflicts with it (duplicate key, deadlock, serialization)."""
SQLITE_BUSY_TIMEOUT_MS = 120_000
"""How long a ledger's SQLite connection waits for another writer's lock."""
POSTGRES_LOCK_TIMEOUT_MS = 10_000
"""``lock_timeout`` of a ledger's PostgreSQL session: how long one statement waits for a lock (a role's
shorter ``lock_timeout`` is kept)."""
BUSY_ATTEMPTS = 3
"""Tries of one operation whose statement timed out waiting for a lock (55P03, SQLite 'database is locked')."""
LOCK_WAIT_LIMIT_SECONDS = 30.0
"""No further try once one operation has waited this long on locks (SQLite's own two-minute wait is past it)."""
BUSY_PAUSE_SECONDS = 1.0
"""Pause before the second try after a lock timeout; doubled before each further one."""

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
_TABLE_NAME = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})?")
_MISSING_TABLE_WORDS = ("no such table", "does not exist", "doesn't exist", "not found", "unknown table")
_DUPLICATE_WORDS = ("unique", "duplicate", "primary key")
_REPLACE_INTO_DIALECTS = frozenset({"sqlite", "mysql", "mariadb"})
"""Dialects whose ``REPLACE INTO`` (the generic dialect's replace statement) is an upsert."""

log = logging.getLogger(__name__)
T = TypeVar("T")
Row = tuple[Any, ...]
_Self = TypeVar("_Self", bound="SqlTable")


class HindsightLedgerError(HindsightConfigurationError):
    """A ledger cannot be used: nothing was sent. The message names the connection, the table and the fix."""

    def __init__(self, message: str, *, ledger_conn_id: str, ledger_table: str) -> None:
        super().__init__(message, code="invalid_ledger")
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ledger_error, (type(self), self.message, self.ledger_conn_id, self.ledger_table))


def _rebuild_ledger_error(cls: type[Any], message: str, ledger_conn_id: str, ledger_table: str) -> Any:
    return cls(message, ledger_conn_id=ledger_conn_id, ledger_table=ledger_table)


class HindsightLedgerUnavailableError(HindsightTransientError):
    """The ledger's database failed for now (a lock, a lost connection): a later try may succeed.

    Transient (``transient = True``): Airflow's task retries apply. Rows recorded before it are kept.
    """

    code_name: ClassVar[str] = "ledger_unavailable"

    def __init__(self, message: str, *, ledger_conn_id: str, ledger_table: str) -> None:
        super().__init__(message, code=self.code_name)
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ledger_error, (type(self), self.message, self.ledger_conn_id, self.ledger_table))


class HindsightLedgerBusyError(HindsightLedgerUnavailableError):
    """Another session held a lock on the ledger table past the bound (or a deadlock or serialization failure)."""

    code_name = "ledger_busy"


class HindsightLedgerConnectionLostError(HindsightLedgerUnavailableError):
    """The ledger's connection was lost or terminated (SQLSTATE class 08, 57P01 admin shutdown, ...)."""

    code_name = "ledger_connection_lost"


def validate_table_name(table: object, *, parameter: str, example: str) -> str:
    """Return ``table`` when it is a plain or schema-qualified SQL identifier, else raise naming ``parameter``.

    The name goes into SQL text, so only ``name`` or ``schema.name`` made of letters, digits and
    underscores (not starting with a digit) is accepted: no quotes, spaces or other punctuation.
    ``example`` is the default table name, shown in the message.
    """
    if isinstance(table, str) and _TABLE_NAME.fullmatch(table):
        return table
    raise HindsightValidationError(
        f"{parameter} must be a table name such as '{example}' or 'analytics.{example}' "
        f"(letters, digits and underscores, optionally one schema prefix), got {table!r}.",
        field=parameter,
    )


# -- what a driver's error means -------------------------------------------------------------------


class DatabaseFault(enum.Enum):
    """What a database error means for the ledger (see :func:`classify_database_error`)."""

    DUPLICATE = "duplicate key"
    """Another transaction holds a row with that key (23505, or an integrity error naming a unique key)."""
    CONFLICT = "conflict"
    """A concurrent transaction conflicted: serialization failure (40001) or deadlock (40P01)."""
    MISSING_TABLE = "missing table"
    """The table does not exist (42P01, 42S02, or the driver's words for it)."""
    BUSY = "busy"
    """A statement gave up waiting for a lock: 55P03 lock_not_available (``lock_timeout``), SQLite busy."""
    LOST = "lost connection"
    """The connection is gone: class 08, 57P01/57P02/57P03 (shutdown), a driver error without SQLSTATE."""
    PERMISSION = "permission"
    """The user may not do it, or the database is read-only: 42501, 25006, SQLite's readonly database."""

    @property
    def transient(self) -> bool:
        """Whether a later try may succeed without anyone fixing anything."""
        return self in (DatabaseFault.CONFLICT, DatabaseFault.BUSY, DatabaseFault.LOST)


_SQLSTATE_FAULTS: dict[str, DatabaseFault] = {
    "23505": DatabaseFault.DUPLICATE,
    "40001": DatabaseFault.CONFLICT,
    "40P01": DatabaseFault.CONFLICT,
    "42P01": DatabaseFault.MISSING_TABLE,
    "42S02": DatabaseFault.MISSING_TABLE,
    "55P03": DatabaseFault.BUSY,
    "57P01": DatabaseFault.LOST,
    "57P02": DatabaseFault.LOST,
    "57P03": DatabaseFault.LOST,
    "42501": DatabaseFault.PERMISSION,
    "25006": DatabaseFault.PERMISSION,
}
_SQLITE_BUSY_WORDS = ("database is locked", "database table is locked", "database schema is locked")


def sqlstate(error: BaseException) -> str | None:
    """The error's SQLSTATE: psycopg 3's ``sqlstate``, psycopg2's ``pgcode``, or ``None``."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def classify_database_error(error: BaseException) -> DatabaseFault | None:
    """What ``error`` from a ledger statement means, by SQLSTATE where the driver gives one; ``None``: other."""
    code = sqlstate(error)
    if code is not None:
        fault = _SQLSTATE_FAULTS.get(code)
        if fault is not None:
            return fault
        if code.startswith("08"):
            return DatabaseFault.LOST
    text = str(error).lower()
    if code is None and _is_integrity_error(error) and any(words in text for words in _DUPLICATE_WORDS):
        return DatabaseFault.DUPLICATE
    if isinstance(error, sqlite3.OperationalError):
        if any(words in text for words in _SQLITE_BUSY_WORDS):
            return DatabaseFault.BUSY
        if "readonly database" in text:
            return DatabaseFault.PERMISSION
    if code is None and _is_postgres_connection_error(error):
        return DatabaseFault.LOST
    if any(words in text for words in _MISSING_TABLE_WORDS):
        return DatabaseFault.MISSING_TABLE
    return None


def _is_integrity_error(error: BaseException) -> bool:
    return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)


def _is_postgres_connection_error(error: BaseException) -> bool:
    """psycopg's or psycopg2's OperationalError or InterfaceError without SQLSTATE: the connection broke."""
    return any(
        cls.__module__.partition(".")[0] in ("psycopg", "psycopg2")
        and cls.__name__ in ("OperationalError", "InterfaceError")
        for cls in type(error).__mro__
    )


class _Transient(Exception):
    """A transient driver error met inside ``prepare()``, carried out to its retry loop."""

    def __init__(self, fault: DatabaseFault, error: BaseException) -> None:
        super().__init__(str(error))
        self.fault = fault
        self.error = error


# -- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a ledger table: its name and SQL type; key columns are always ``NOT NULL``."""

    name: str
    sql_type: str
    nullable: bool = False


class SqlTable:
    """One ledger table on the Airflow SQL connection ``ledger_conn_id``, through one connection.

    A subclass sets :attr:`KIND`, :attr:`COLUMNS` and :attr:`KEY` (and :attr:`MISSING_TABLE_MEANS`)
    and implements :meth:`_probe_rows`. Rows are tuples of every column in :attr:`COLUMNS` order;
    keys are tuples of the :attr:`KEY` columns in that order. Call :meth:`prepare` first and
    :meth:`close` at the end (or use it as a context manager).

    Public: :meth:`prepare`, :meth:`close`, :meth:`select_by_keys`, :meth:`upsert_rows`,
    :meth:`insert_if_absent`, :meth:`update_by_key`, :meth:`delete_keys`, :attr:`exists`,
    :attr:`writable`, :attr:`lock_wait_seconds`. For a subclass's own statements: ``_write(statements)``
    (``statements(cursor)`` in one committed transaction, retried like the others), ``_placeholder``,
    ``_placeholders(n)``, ``_now()`` (UTC), ``_message(error)`` (redacted), ``_error(message)``.
    """

    KIND: ClassVar[str] = "Hindsight ledger"
    """What the table is, in messages: "the table 'x' ... is not a <KIND>"."""
    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    KEY: ClassVar[tuple[str, ...]] = ()
    """The primary key's columns."""
    MISSING_TABLE_MEANS: ClassVar[str] = "nothing was recorded yet"
    """What a missing table means for a dry run, in its INFO line."""

    def __init__(self, *, ledger_conn_id: str, table: str) -> None:
        self.ledger_conn_id = ledger_conn_id
        self.table = table
        self.exists = False
        """Whether the table exists; after a dry-run ``prepare`` it may not."""
        self.writable = False
        """Whether writes may run: ``prepare(create=True)`` succeeded."""
        self.lock_wait_seconds = 0.0
        """Seconds this ledger's writes lost to locks held by other sessions, deadlocks and conflicts:
        the statements that gave up waiting and the pauses before trying again (for the run's summary)."""
        self._connection: Any = None
        self._hook: Any = None
        self._upsert_sql: str | None = None
        self._is_sqlite = False
        self._secret = ""

    @classmethod
    def column_names(cls) -> tuple[str, ...]:
        return tuple(column.name for column in cls.COLUMNS)

    @classmethod
    def create_table_sql(cls, table: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` of this ledger's columns and primary key."""
        lines = []
        for column in cls.COLUMNS:
            null = "" if column.nullable and column.name not in cls.KEY else " NOT NULL"
            lines.append(f"    {column.name} {column.sql_type}{null},")
        lines.append(f"    PRIMARY KEY ({', '.join(cls.KEY)})")
        return f"CREATE TABLE IF NOT EXISTS {table} (\n" + "\n".join(lines) + "\n)"

    # -- preparing -------------------------------------------------------------------------------

    def prepare(self, *, create: bool = True) -> None:
        """Check (and with ``create``, make) the table usable before any request is sent.

        The connection exists, connects and is a SQL connection; the table exists with exactly the
        ledger's columns (or is created); it can be read and written (the probe rows written and
        deleted, then rolled back). Every failure is a :class:`HindsightLedgerError` naming the
        connection, the table and the fix. ``create=False`` is for dry runs: nothing is created or
        written, and a missing table means :attr:`MISSING_TABLE_MEANS`.

        A lock held on the table by another session, a deadlock or a lost connection is not the
        user's to fix: ``prepare`` tries again within the lock-wait bound, then raises a transient
        :class:`HindsightLedgerUnavailableError`.
        """

        def attempt() -> None:
            self.close()
            self.exists = False
            try:
                self._prepare(create)
            except BaseException:
                self.close()
                raise

        self._retrying(attempt, action="read", writing=False)

    def _prepare(self, create: bool) -> None:
        self._hook = self._sql_hook()
        self._connection = self._connect()
        columns, read_error = self._read_columns()
        if columns is None and create:
            self._create_table(read_error)
            columns, read_error = self._read_columns()
        if columns is None:
            if not create and read_error is not None and _is_missing_table(read_error):
                log.info(
                    "Ledger table %s does not exist on %r yet: %s.",
                    self.table,
                    self.ledger_conn_id,
                    self.MISSING_TABLE_MEANS,
                )
                return
            raise self._unreadable(read_error)
        self._check_columns(columns)
        self.exists = True
        if not create:
            return
        self._upsert_sql = upsert_statement(self._hook, self.table, self.column_names(), self.KEY)
        self._probe_write()
        if self._is_sqlite:
            self._use_write_ahead_log()
        self.writable = True

    def _sql_hook(self) -> Any:
        try:
            hook, connection = sql_hook(self.ledger_conn_id, parameter="ledger_conn_id", purpose=" with write access")
        except HindsightConfigurationError as error:
            raise self._error(error.message) from None
        self._secret = connection.password or ""
        return hook

    def _connect(self) -> Any:
        try:
            connection = self._hook.get_conn()
        except Exception as error:
            raise self._error(
                f"cannot connect to ledger_conn_id {self.ledger_conn_id!r}: {self._message(error)}. Fix: check "
                "the connection's host, port, database and credentials, and that the database is up."
            ) from None
        self._is_sqlite = isinstance(connection, sqlite3.Connection)
        try:
            if self._is_sqlite:
                connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
            elif _is_postgres(connection):
                self._set_lock_timeout(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _set_lock_timeout(self, connection: Any) -> None:
        """Bound each statement's wait for a lock: ``SET lock_timeout`` unless the role's own is shorter."""
        cursor = connection.cursor()
        try:
            cursor.execute("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'")
            (current,) = cursor.fetchone()
            if int(current) == 0 or int(current) > POSTGRES_LOCK_TIMEOUT_MS:
                cursor.execute(f"SET lock_timeout = {int(POSTGRES_LOCK_TIMEOUT_MS)}")
            connection.commit()  # a SET rolled back would be undone
        except Exception as error:
            _rollback_quietly(connection)
            fault = classify_database_error(error)
            if fault is not None and fault.transient:
                raise _Transient(fault, error) from None
            raise self._error(
                f"cannot set lock_timeout on ledger_conn_id {self.ledger_conn_id!r}: {self._message(error)}."
            ) from None
        finally:
            _close_quietly(cursor)

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

    def close(self) -> None:
        """Close the ledger's connection; safe to call twice."""
        connection, self._connection = self._connection, None
        self.writable = False
        if connection is not None:
            connection.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading and writing, in batches -------------------------------------------------------------

    def select_by_keys(self, columns: Sequence[str], keys: Iterable[Row]) -> Iterator[Row]:
        """``columns`` of the rows with these keys, :data:`LEDGER_BATCH` keys per query, each read committed."""
        self._require_prepared()
        return self._select_batches(columns, keys)

    def _select_batches(self, columns: Sequence[str], keys: Iterable[Row]) -> Iterator[Row]:
        for batch in batches(dict.fromkeys(keys), LEDGER_BATCH):
            # committed: ends the read transaction, so that no snapshot is held between batches
            yield from self._transaction(partial(self._select, columns=columns, keys=batch), action="read")

    def upsert_rows(self, rows: Iterable[Row]) -> int:
        """Insert or replace full rows, committed per :data:`LEDGER_BATCH`; returns how many keys.

        In one batch the last row of a key wins; each batch is written in key order, so that two runs
        writing the same keys lock them in the same order and cannot deadlock; the last write wins.
        """
        self._require_writable()
        count = 0
        for batch in batches(rows, LEDGER_BATCH):
            unique = sorted({self._key_of(row): row for row in batch}.items())
            ordered = [row for _, row in unique]
            self._write(partial(self._upsert, rows=ordered))
            count += len(ordered)
        return count

    def insert_if_absent(self, row: Row) -> bool:
        """Insert one full row and commit; ``False`` (rolled back, nothing changed) when its key exists.

        An ``INSERT``, never an upsert: of two runs inserting one key, exactly one gets ``True``.
        """
        self._require_writable()

        def insert(cursor: Any) -> bool:
            try:
                self._insert(cursor, [row])
            except Exception as error:
                if classify_database_error(error) is not DatabaseFault.DUPLICATE:
                    raise
                self._connection.rollback()
                return False
            return True

        return self._write(insert)

    def update_by_key(self, columns: Sequence[str], rows: Iterable[Row]) -> int:
        """``UPDATE`` ``columns`` of the rows with a key; each row is the new values, then the key.

        Returns how many rows changed.
        """
        self._require_writable()
        changed = 0
        for batch in batches(rows, LEDGER_BATCH):
            ordered = sorted(batch, key=lambda row: tuple(row[len(columns) :]))

            def update(cursor: Any, ordered: list[Row] = ordered) -> int:
                return self._update(cursor, columns, ordered)

            changed += self._write(update)
        return changed

    def delete_keys(self, keys: Iterable[Row]) -> int:
        """Delete the rows of these keys, one statement per :data:`LEDGER_BATCH`; returns how many keys."""
        self._require_writable()
        count = 0
        for batch in batches(keys, LEDGER_BATCH):
            unique = sorted(set(batch))
            self._write(partial(self._delete, keys=unique))
            count += len(unique)
        return count

    # -- SQL -------------------------------------------------------------------------------------------

    @property
    def _placeholder(self) -> str:
        return str(self._hook.placeholder)

    def _placeholders(self, count: int) -> str:
        return ", ".join([self._placeholder] * count)

    def _key_of(self, row: Row) -> Row:
        names = self.column_names()
        return tuple(row[names.index(name)] for name in self.KEY)

    def _key_groups(self, keys: Sequence[Row]) -> Iterator[tuple[Row, list[Any]]]:
        """Keys grouped by all but their last column: one ``a = ? AND b IN (...)`` condition per group."""
        groups: dict[Row, list[Any]] = {}
        for key in keys:
            groups.setdefault(tuple(key[:-1]), []).append(key[-1])
        yield from groups.items()

    def _where_keys(self, prefix: Row, lasts: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        p = self._placeholder
        conditions = [f"{name} = {p}" for name in self.KEY[:-1]]
        conditions.append(f"{self.KEY[-1]} IN ({self._placeholders(len(lasts))})")
        return " AND ".join(conditions), (*prefix, *lasts)

    def _select(self, cursor: Any, columns: Sequence[str], keys: Sequence[Row]) -> list[Row]:
        """``columns`` of the rows with these keys: one statement per key prefix (see :meth:`_key_groups`)."""
        found: list[Row] = []
        for prefix, lasts in self._key_groups(keys):
            where, parameters = self._where_keys(prefix, lasts)
            cursor.execute(f"SELECT {', '.join(columns)} FROM {self.table} WHERE {where}", parameters)
            found.extend(tuple(row) for row in cursor.fetchall())
        return found

    def _insert(self, cursor: Any, rows: Sequence[Row]) -> None:
        names = self.column_names()
        cursor.executemany(
            f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({self._placeholders(len(names))})", list(rows)
        )

    def _update(self, cursor: Any, columns: Sequence[str], rows: Sequence[Row]) -> int:
        p = self._placeholder
        assignments = ", ".join(f"{name} = {p}" for name in columns)
        where = " AND ".join(f"{name} = {p}" for name in self.KEY)
        changed = 0
        for row in rows:  # one execute per row: executemany's rowcount is not portable
            cursor.execute(f"UPDATE {self.table} SET {assignments} WHERE {where}", tuple(row))
            changed += max(cursor.rowcount, 0)
        return changed

    def _upsert(self, cursor: Any, rows: Sequence[Row]) -> None:
        """The dialect's upsert, else an UPDATE of the keys that exist and an INSERT of the others."""
        if self._upsert_sql is not None:
            cursor.executemany(self._upsert_sql, list(rows))
            return
        keys = [self._key_of(row) for row in rows]
        existing = {_like(keys[0], found) for found in self._select(cursor, self.KEY, keys)}
        names = self.column_names()
        others = [name for name in names if name not in self.KEY]
        pairs = list(zip(rows, keys, strict=True))
        updates = [(*(row[names.index(name)] for name in others), *key) for row, key in pairs if key in existing]
        inserts = [row for row, key in pairs if key not in existing]
        if updates:
            p = self._placeholder
            assignments = ", ".join(f"{name} = {p}" for name in others)
            where = " AND ".join(f"{name} = {p}" for name in self.KEY)
            cursor.executemany(f"UPDATE {self.table} SET {assignments} WHERE {where}", updates)
        if inserts:
            self._insert(cursor, inserts)

    def _delete(self, cursor: Any, keys: Sequence[Row]) -> None:
        for prefix, lasts in self._key_groups(keys):
            where, parameters = self._where_keys(prefix, lasts)
            cursor.execute(f"DELETE FROM {self.table} WHERE {where}", parameters)

    def _write(self, statements: Callable[[Any], T]) -> T:
        """Run ``statements(cursor)`` and commit, retried on conflicts and lock waits; the wait counts in
        :attr:`lock_wait_seconds`."""
        return self._transaction(statements, action="write", writing=True)

    def _transaction(self, statements: Callable[[Any], T], *, action: str, writing: bool = False) -> T:
        """Run ``statements(cursor)`` and commit (roll back on failure), through :meth:`_retrying`."""

        def attempt() -> T:
            cursor = self._connection.cursor()
            try:
                result = statements(cursor)
                self._connection.commit()
                return result
            except BaseException:
                _rollback_quietly(self._connection)
                raise
            finally:
                _close_quietly(cursor)

        return self._retrying(attempt, action=action, writing=writing)

    def _retrying(self, attempt: Callable[[], T], *, action: str, writing: bool) -> T:
        """``attempt()``, tried again when a concurrent session conflicted with it or held a lock too long.

        Conflicts (a duplicate key from a concurrent insert, a deadlock, a serialization failure) are
        tried again at once, up to :data:`WRITE_ATTEMPTS` times; a lock timeout after a pause, up to
        :data:`BUSY_ATTEMPTS` times within :data:`LOCK_WAIT_LIMIT_SECONDS`, with a WARNING each time.
        Then, and for a lost connection at once, a transient :class:`HindsightLedgerUnavailableError`;
        a refusal (permission, read-only) is a permanent :class:`HindsightLedgerError`; anything else
        is the driver's own error.
        """
        waited = 0.0  # seconds this operation lost to conflicts and lock waits
        conflicts = busy = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    return attempt()
                except HindsightError:
                    raise
                except Exception as caught:
                    error = caught.error if isinstance(caught, _Transient) else caught
                    fault = caught.fault if isinstance(caught, _Transient) else classify_database_error(caught)
                    if fault is None or fault is DatabaseFault.MISSING_TABLE:
                        raise
                    if fault is DatabaseFault.DUPLICATE and not writing:
                        raise
                    spent = time.monotonic() - started
                if fault is DatabaseFault.LOST:
                    raise self._lost(error) from None
                if fault is DatabaseFault.PERMISSION:
                    raise self._refused(error, action) from None
                waited += spent
                if fault in (DatabaseFault.DUPLICATE, DatabaseFault.CONFLICT) and conflicts + 1 < WRITE_ATTEMPTS:
                    conflicts += 1
                    pause = 0.05 * conflicts
                    log.info("Ledger write conflicted with another run (%s); trying again.", self._message(error))
                elif fault is DatabaseFault.DUPLICATE:
                    raise error
                elif fault is DatabaseFault.BUSY and busy + 1 < BUSY_ATTEMPTS and waited < LOCK_WAIT_LIMIT_SECONDS:
                    busy += 1
                    pause = BUSY_PAUSE_SECONDS * 2 ** (busy - 1)
                    log.warning(
                        "The ledger table %s on %r is locked by another session (%s): waited %.1f s so far; "
                        "trying again in %.1f s (try %d of %d).",
                        self.table,
                        self.ledger_conn_id,
                        self._message(error),
                        waited,
                        pause,
                        busy + 1,
                        BUSY_ATTEMPTS,
                    )
                else:
                    raise self._busy(error, waited) from None
                time.sleep(pause)
                waited += pause
        finally:
            if writing:
                self.lock_wait_seconds += waited

    # -- helpers -----------------------------------------------------------------------------------------

    def _now(self) -> Any:
        return utc_now(self._is_sqlite)

    def _require_prepared(self) -> None:
        if self._connection is None:
            raise RuntimeError(f"{type(self).__name__}.prepare() must run before the ledger is used.")

    def _require_writable(self, operations: str | None = None) -> None:
        if not self.writable:
            what = operations or f"{type(self).__name__} writes"
            raise RuntimeError(f"{what} need prepare(create=True), not a dry run.")

    def _message(self, error: BaseException | None) -> str:
        """The driver's message, on one line, without the connection's password."""
        return self._redact(" ".join(str(error).split())[:500])

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, message: str) -> HindsightLedgerError:
        return HindsightLedgerError(message, ledger_conn_id=self.ledger_conn_id, ledger_table=self.table)

    def _busy(self, error: BaseException, waited: float) -> HindsightLedgerBusyError:
        return HindsightLedgerBusyError(
            f"the ledger table {self.table!r} on {self.ledger_conn_id!r} is locked by another session "
            f"({self._message(error)}); gave up after waiting {waited:.1f} s. This is not a permission problem "
            "and nothing needs fixing if it passes: Airflow's retries try again, and rows recorded before are "
            "kept. If it keeps happening, find the session holding the lock (on PostgreSQL: pg_locks and "
            "pg_stat_activity).",
            ledger_conn_id=self.ledger_conn_id,
            ledger_table=self.table,
        )

    def _lost(self, error: BaseException) -> HindsightLedgerConnectionLostError:
        return HindsightLedgerConnectionLostError(
            f"lost the connection to the ledger table {self.table!r} on {self.ledger_conn_id!r} "
            f"({self._message(error)}): the database closed or terminated it. Airflow's retries try again, and "
            "rows recorded before are kept.",
            ledger_conn_id=self.ledger_conn_id,
            ledger_table=self.table,
        )

    def _refused(self, error: BaseException, action: str) -> HindsightLedgerError:
        return self._error(
            f"cannot {action} the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
            f"{self._message(error)}. Fix: give the connection's user SELECT, INSERT, UPDATE and DELETE on it, "
            "on a database that is not read-only (not a replica, not default_transaction_read_only)."
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


def utc_now(for_sqlite: bool) -> Any:
    """Now in UTC without time zone; as ISO text for SQLite, which has no timestamp type."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.isoformat(sep=" ") if for_sqlite else now


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, without reading ahead more than one list."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _is_postgres(connection: Any) -> bool:
    return type(connection).__module__.partition(".")[0] in ("psycopg", "psycopg2")


def _raise_if_transient(error: BaseException) -> None:
    fault = classify_database_error(error)
    if fault is not None and fault.transient:
        raise _Transient(fault, error) from None


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


def _is_missing_table(error: BaseException) -> bool:
    return classify_database_error(error) is DatabaseFault.MISSING_TABLE


def _like(template: Row, found: Row) -> Row:
    """``found`` (a key read back) with the types of ``template`` (the key asked for): ``Decimal(3)`` is ``3``."""
    try:
        return tuple(type(want)(got) for want, got in zip(template, found, strict=True))
    except (TypeError, ValueError):
        return tuple(found)
