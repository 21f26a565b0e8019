"""One table the provider keeps in the user's own database, through any Airflow SQL connection.

:class:`SqlTable` is the one place that connects, prepares a table and runs its statements, for the
sync ledger, its lease, the interview ledger, the landing table and the run history alike. It is
composed of small parts: the connection's :class:`~.dialect.SqlDialect` (placeholder, upsert, timestamps, lock
bounds), the table's :class:`~.table.TableSpec` and :class:`~.table.TableStatements` (its shape and
SQL text), :class:`~.schema.TableSchema` (creating, checking and probing it before any request) and
:class:`~.faults.TableMessages` (its errors, in its operator's parameter names). A table module
(:mod:`.sync`, :mod:`.sync_lease`, :mod:`.interviews`, :mod:`.transcripts`, :mod:`.history`) holds a
:class:`SqlTable` (the history two) and adds the queries of its own.

A :class:`SqlTable` holds one connection from :meth:`SqlTable.prepare` to :meth:`SqlTable.close`
(use it from one thread at a time): it resolves the connection
(:func:`~airflow_provider_hindsight.sql_connection.sql_hook`), connects, bounds lock waits, prepares
the table and runs the public operations, each write committed and retried when a concurrent run
conflicted with it or held a lock too long: at most :data:`BUSY_ATTEMPTS` tries within
:data:`LOCK_WAIT_LIMIT_SECONDS`, with a WARNING naming the table and how long it waited so far;
:attr:`SqlTable.lock_wait_seconds` adds up what writes lost that way. Also :func:`validate_sql_conn_id`,
:func:`validate_table_name` and :func:`batches`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import islice
from typing import Any, TypeVar

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightError, HindsightValidationError
from airflow_provider_hindsight.ledgers.dialect import SqlDialect
from airflow_provider_hindsight.ledgers.faults import TableMessages, TransientFault
from airflow_provider_hindsight.ledgers.schema import TableSchema, close_quietly, rollback_quietly
from airflow_provider_hindsight.ledgers.table import Row, TableSpec, TableStatements
from airflow_provider_hindsight.sql_connection import sql_hook, valid_table_name
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error

LEDGER_BATCH = 500
"""Keys per look-up, write or deletion statement batch."""
WRITE_ATTEMPTS = 5
"""Tries of one batch when a concurrent run conflicts with it (duplicate key, deadlock, serialization)."""
BUSY_ATTEMPTS = 3
"""Tries of one operation whose statement timed out waiting for a lock (``DatabaseFault.BUSY``)."""
LOCK_WAIT_LIMIT_SECONDS = 30.0
"""No further try once one operation has waited this long on locks (SQLite's own two-minute wait is past it)."""
BUSY_PAUSE_SECONDS = 1.0
"""Pause before the second try after a lock timeout; doubled before each further one."""

log = logging.getLogger(__name__)
T = TypeVar("T")


def validate_sql_conn_id(conn_id: object) -> str:
    """Return ``conn_id`` when it is a non-empty string (an Airflow SQL connection's id), else raise naming
    ``sql_conn_id``; whether the connection exists is checked when it is used."""
    if isinstance(conn_id, str) and conn_id:
        return conn_id
    raise HindsightValidationError(
        f"sql_conn_id must name an Airflow SQL connection, got {conn_id!r}.", field="sql_conn_id"
    )


def validate_table_name(table: object, *, parameter: str, example: str) -> str:
    """Return ``table`` when it is a plain or schema-qualified SQL identifier, else raise naming ``parameter``.

    The rule is :func:`~airflow_provider_hindsight.sql_connection.valid_table_name`'s; ``example`` is the
    default table name, shown in the message.
    """
    if valid_table_name(table):
        return table
    raise HindsightValidationError(
        f"{parameter} must be a table name such as '{example}' or 'analytics.{example}' "
        f"(letters, digits and underscores, optionally one schema prefix), got {table!r}.",
        field=parameter,
    )


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, without reading ahead more than one list."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class SqlTable:
    """The table ``table``, shaped as ``spec``, on the Airflow SQL connection ``conn_id``, through one connection.

    :param probe_rows: full rows with one key that no real row has, for the write probe of
        :meth:`prepare` (upserted in order: an insert, then an update; deleted; rolled back).
    :param noun: what the table is in messages ("ledger table"); ``conn_parameter`` and
        ``table_parameter`` are its operator's parameter names, named in every fix.
    :param missing_means: what a missing table means for a dry run, in its INFO line.

    Call :meth:`prepare` first and :meth:`close` at the end (or use it as a context manager).
    """

    def __init__(
        self,
        spec: TableSpec,
        *,
        conn_id: str,
        table: str,
        probe_rows: Callable[[], list[Row]],
        noun: str = "ledger table",
        conn_parameter: str = "ledger_conn_id",
        table_parameter: str = "ledger_table",
        missing_means: str = "nothing was recorded yet",
    ) -> None:
        self.spec = spec
        self.conn_id = conn_id
        self.table = table
        self.messages = TableMessages(
            conn_id=conn_id, table=table, noun=noun, conn_parameter=conn_parameter, table_parameter=table_parameter
        )
        self.exists = False
        """Whether the table exists; after a dry-run ``prepare`` it may not."""
        self.writable = False
        """Whether writes may run: ``prepare(create=True)`` succeeded."""
        self.lock_wait_seconds = 0.0
        """Seconds this table's writes lost to locks held by other sessions, deadlocks and conflicts:
        the statements that gave up waiting and the pauses before trying again (for the run's summary)."""
        self._probe_rows = probe_rows
        self._missing_means = missing_means
        self._connection: Any = None
        self._dialect: SqlDialect | None = None
        self._statements: TableStatements | None = None

    @property
    def dialect(self) -> SqlDialect:
        if self._dialect is None:
            raise RuntimeError(f"prepare() must run before the {self.messages.noun} {self.table} is used.")
        return self._dialect

    @property
    def statements(self) -> TableStatements:
        if self._statements is None:
            raise RuntimeError(f"prepare() must run before the {self.messages.noun} {self.table} is used.")
        return self._statements

    # -- preparing -------------------------------------------------------------------------------

    def prepare(self, *, create: bool = True) -> None:
        """Check (and with ``create``, make) the table usable before any request is sent.

        The connection exists, connects and is a SQL connection; the table exists with exactly its
        columns (or is created); it can be read and written (the probe rows written and deleted, then
        rolled back). Every failure is a :class:`~.faults.HindsightLedgerError` naming the connection,
        the table and the fix. ``create=False`` is for dry runs: nothing is created or written.

        A lock held on the table by another session, a deadlock or a lost connection is not the
        user's to fix: ``prepare`` tries again within the lock-wait bound, then raises a transient
        :class:`~.faults.HindsightLedgerUnavailableError`.
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
        hook = self._sql_hook()
        self._connection = self._connect(hook)
        self._statements = TableStatements(self.spec, self.table, self.dialect)
        schema = TableSchema(self._connection, self.dialect, self.statements, self.messages, self._missing_means)
        self.exists = schema.ensure(create=create, probe_rows=self._probe_rows)
        if self.exists and create:
            self.dialect.use_write_ahead_log(
                self._connection, conn_parameter=self.messages.conn_parameter, conn_id=self.conn_id
            )
            self.writable = True

    def _sql_hook(self) -> Any:
        parameter = self.messages.conn_parameter
        try:
            hook, connection = sql_hook(self.conn_id, parameter=parameter, purpose=" with write access")
        except HindsightConfigurationError as error:
            raise self.messages.error(error.message) from None
        self.messages.secret = connection.password or ""
        return hook

    def _connect(self, hook: Any) -> Any:
        try:
            connection = hook.get_conn()
        except Exception as error:
            raise self.messages.error(
                f"cannot connect to {self.messages.conn_parameter} {self.conn_id!r}: {self.messages.quote(error)}. "
                "Fix: check the connection's host, port, database and credentials, and that the database is up."
            ) from None
        self._dialect = SqlDialect(hook, connection)
        try:
            self._dialect.set_up_session(connection)
        except Exception as error:
            rollback_quietly(connection)
            connection.close()
            fault = classify_database_error(error)
            if fault is not None and fault.transient:
                raise TransientFault(fault, error) from None
            raise self.messages.error(
                f"cannot set lock_timeout on {self.messages.conn_parameter} {self.conn_id!r}: "
                f"{self.messages.quote(error)}."
            ) from None
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Close the table's connection; safe to call twice."""
        connection, self._connection = self._connection, None
        self.writable = False
        if connection is not None:
            connection.close()

    def __enter__(self) -> SqlTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading and writing, in batches -------------------------------------------------------------

    def now(self) -> Any:
        """Now in UTC, as this table's database stores it."""
        return self.dialect.now()

    def describe(self, error: BaseException) -> str:
        """A driver's error on one line, without the connection's password (for a row's failure message)."""
        return self.messages.quote(error)

    def select_by_keys(self, columns: Sequence[str], keys: Iterable[Row]) -> Iterator[Row]:
        """``columns`` of the rows with these keys, :data:`LEDGER_BATCH` keys per query, each read committed."""
        self.require_prepared()
        return self._select_batches(columns, keys)

    def _select_batches(self, columns: Sequence[str], keys: Iterable[Row]) -> Iterator[Row]:
        for batch in batches(dict.fromkeys(keys), LEDGER_BATCH):
            # committed: ends the read transaction, so that no snapshot is held between batches
            yield from self.read(partial(self.statements.select, columns=columns, keys=batch))

    def upsert_rows(self, rows: Iterable[Row]) -> int:
        """Insert or replace full rows, committed per :data:`LEDGER_BATCH`; returns how many keys.

        In one batch the last row of a key wins; each batch is written in key order, so that two runs
        writing the same keys lock them in the same order and cannot deadlock; the last write wins.
        """
        self.require_writable()
        count = 0
        for batch in batches(rows, LEDGER_BATCH):
            unique = sorted({self.spec.key_of(row): row for row in batch}.items())
            ordered = [row for _, row in unique]
            self.write(partial(self.statements.upsert, rows=ordered))
            count += len(ordered)
        return count

    def insert_if_absent(self, row: Row) -> bool:
        """Insert one full row and commit; ``False`` (rolled back, nothing changed) when its key exists.

        An ``INSERT``, never an upsert: of two runs inserting one key, exactly one gets ``True``.
        """
        self.require_writable()

        def insert(cursor: Any) -> bool:
            try:
                self.statements.insert(cursor, [row])
            except Exception as error:
                if classify_database_error(error) is not DatabaseFault.DUPLICATE:
                    raise
                self._connection.rollback()
                return False
            return True

        return self.write(insert)

    def update_by_key(self, columns: Sequence[str], rows: Iterable[Row]) -> int:
        """``UPDATE`` ``columns`` of the rows with a key; each row is the new values, then the key.

        Returns how many rows changed.
        """
        self.require_writable()
        changed = 0
        for batch in batches(rows, LEDGER_BATCH):
            ordered = sorted(batch, key=lambda row: tuple(row[len(columns) :]))
            changed += self.write(partial(self.statements.update, columns=columns, rows=ordered))
        return changed

    def delete_keys(self, keys: Iterable[Row]) -> int:
        """Delete the rows of these keys, one statement per :data:`LEDGER_BATCH`; returns how many keys."""
        self.require_writable()
        count = 0
        for batch in batches(keys, LEDGER_BATCH):
            unique = sorted(set(batch))
            self.write(partial(self.statements.delete, keys=unique))
            count += len(unique)
        return count

    def execute(self, statement: str, parameters: Sequence[Any]) -> int:
        """One statement of a table module's own (a conditional update, a delete), committed; rows changed."""
        self.require_writable()

        def run(cursor: Any) -> int:
            cursor.execute(statement, tuple(parameters))
            return max(int(cursor.rowcount), 0)

        return self.write(run)

    def read(self, statements: Callable[[Any], T]) -> T:
        """Run ``statements(cursor)`` and commit, retried on lock waits."""
        return self._transaction(statements, action="read", writing=False)

    def write(self, statements: Callable[[Any], T]) -> T:
        """Run ``statements(cursor)`` and commit, retried on conflicts and lock waits; the wait counts in
        :attr:`lock_wait_seconds`."""
        return self._transaction(statements, action="write", writing=True)

    def _transaction(self, statements: Callable[[Any], T], *, action: str, writing: bool) -> T:
        """Run ``statements(cursor)`` and commit (roll back on failure), through :meth:`_retrying`."""

        def attempt() -> T:
            cursor = self._connection.cursor()
            try:
                result = statements(cursor)
                self._connection.commit()
                return result
            except BaseException:
                rollback_quietly(self._connection)
                raise
            finally:
                close_quietly(cursor)

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
                    error = caught.error if isinstance(caught, TransientFault) else caught
                    fault = caught.fault if isinstance(caught, TransientFault) else classify_database_error(caught)
                    if fault is None or fault in (DatabaseFault.MISSING_TABLE, DatabaseFault.ALREADY_EXISTS):
                        raise
                    if fault is DatabaseFault.DUPLICATE and not writing:
                        raise
                    spent = time.monotonic() - started
                if fault is DatabaseFault.LOST:
                    raise self.messages.lost(error) from None
                if fault is DatabaseFault.PERMISSION:
                    raise self.messages.refused(error, action) from None
                waited += spent
                if fault in (DatabaseFault.DUPLICATE, DatabaseFault.CONFLICT) and conflicts + 1 < WRITE_ATTEMPTS:
                    conflicts += 1
                    pause = 0.05 * conflicts
                    log.info(
                        "A write to %s conflicted with another run (%s); trying again.",
                        self.table,
                        self.messages.quote(error),
                    )
                elif fault is DatabaseFault.DUPLICATE:
                    raise error
                elif fault is DatabaseFault.BUSY and busy + 1 < BUSY_ATTEMPTS and waited < LOCK_WAIT_LIMIT_SECONDS:
                    busy += 1
                    pause = BUSY_PAUSE_SECONDS * 2 ** (busy - 1)
                    log.warning(
                        "The %s %s on %r is locked by another session (%s): waited %.1f s so far; "
                        "trying again in %.1f s (try %d of %d).",
                        self.messages.noun,
                        self.table,
                        self.conn_id,
                        self.messages.quote(error),
                        waited,
                        pause,
                        busy + 1,
                        BUSY_ATTEMPTS,
                    )
                else:
                    raise self.messages.busy(error, waited) from None
                time.sleep(pause)
                waited += pause
        finally:
            if writing:
                self.lock_wait_seconds += waited

    def require_prepared(self) -> None:
        if self._connection is None:
            raise RuntimeError(f"prepare() must run before the {self.messages.noun} {self.table} is used.")

    def require_writable(self, operations: str | None = None) -> None:
        if not self.writable:
            what = operations or f"writes to the {self.messages.noun} {self.table}"
            raise RuntimeError(f"{what} need prepare(create=True), not a dry run.")
