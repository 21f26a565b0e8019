"""The SQL machinery every ledger shares: a table the provider keeps in the user's own database.

A ledger is one table on any Airflow SQL connection (``ledger_conn_id``), read and written through
that connection's own common-sql ``DbApiHook`` with the hook's placeholder. :class:`SqlTable` owns
what does not depend on the table's columns; a ledger module (:mod:`.sync`, the interview ledger)
declares its table and adds the queries of its own. It holds one connection from
:meth:`SqlTable.prepare` to :meth:`SqlTable.close` (use it from one thread at a time): it resolves the
connection (:func:`~airflow_provider_hindsight.hooks.sql.sql_hook`), connects, bounds lock waits,
prepares the table and runs the public operations, each write committed and retried when a
concurrent run conflicted with it or held a lock too long. Also :func:`validate_table_name`.

Beside it: :mod:`.faults` (the ledger errors and what a driver's error means), :mod:`.statements`
(:class:`~.statements.Column` and the SQL text over a cursor, :func:`~.statements.upsert_statement`,
:func:`~.statements.batches`, :func:`~.statements.utc_now`) and :mod:`.schema` (reading, creating,
checking and probing the table, SQLite's write-ahead logging).

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

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, ClassVar, TypeVar

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightError, HindsightValidationError
from airflow_provider_hindsight.hooks.sql import sql_hook
from airflow_provider_hindsight.ledgers.faults import (
    DatabaseFault,
    _is_missing_table,
    _Transient,
    classify_database_error,
)
from airflow_provider_hindsight.ledgers.schema import LedgerSchema, _close_quietly, _rollback_quietly
from airflow_provider_hindsight.ledgers.statements import Row, batches, upsert_statement

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

log = logging.getLogger(__name__)
T = TypeVar("T")
_Self = TypeVar("_Self", bound="SqlTable")


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


class SqlTable(LedgerSchema):
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

    def _require_prepared(self) -> None:
        if self._connection is None:
            raise RuntimeError(f"{type(self).__name__}.prepare() must run before the ledger is used.")

    def _require_writable(self, operations: str | None = None) -> None:
        if not self.writable:
            what = operations or f"{type(self).__name__} writes"
            raise RuntimeError(f"{what} need prepare(create=True), not a dry run.")


def _is_postgres(connection: Any) -> bool:
    return type(connection).__module__.partition(".")[0] in ("psycopg", "psycopg2")
