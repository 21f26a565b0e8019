"""The sync ledger: which body each interview last received, so that change-only sync resends only changes.

One row per ``(sync_id, interview_request_id)`` (the primary key) in a table of exactly four columns:
``sync_id``, ``interview_request_id``, ``body_sha256`` (see :func:`body_sha256`) and ``synced_at``
(UTC, a timestamp without time zone). The table lives in any Airflow SQL connection, read and
written through that connection's own ``DbApiHook`` with the hook's placeholder:

- :meth:`SyncLedger.prepare` runs before any request: the connection exists, connects and is a SQL
  connection; the table exists with those columns (or is created with ``CREATE TABLE IF NOT EXISTS``);
  it can be read and written (a probe row upserted twice and deleted, then rolled back). Every failure is a
  :class:`HindsightLedgerError` naming the connection, the table and the fix.
- Look-ups, records and deletions go 500 ids at a time, one statement per batch for look-ups and
  deletions: memory stays flat however large the ledger is.
- Records are upserts where the hook's SQL dialect has one (Postgres ``INSERT ... ON CONFLICT DO
  UPDATE``, any other dialect's own replace statement; SQLite and MySQL ``REPLACE INTO``); elsewhere
  an ``UPDATE`` of the keys that exist and an ``INSERT`` of the others, retried when another run
  inserted the same key first. Each batch is sorted by id, so that two runs writing the same keys
  lock them in the same order and cannot deadlock; the last write wins.

SQLite has one writer at a time, and a reader in the default rollback-journal mode blocks every
writer's commit until its query finishes. The ledger may live in the very file whose rows a
transfer is streaming (one ``SELECT`` open for the whole run, on another connection), so
:meth:`SyncLedger.prepare` switches that database to write-ahead logging (``PRAGMA
journal_mode=WAL``): readers then never block the writer, nor the writer them. It must run before
the source query starts. WAL is a lasting property of the file (SQLite keeps ``-wal`` and ``-shm``
files beside it, and the file must be on a local disk); a dry run leaves the file as it is. The
ledger's connection also waits up to two minutes for another writer's lock instead of failing at once.

A :class:`SyncLedger` holds one connection from :meth:`~SyncLedger.prepare` to
:meth:`~SyncLedger.close`; use it from one thread at a time. Errors after ``prepare()`` are the
driver's own.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import islice
from typing import Any, TypeVar

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.hooks.sql import sql_hook

DEFAULT_LEDGER_TABLE = "hindsight_sync_ledger"
LEDGER_COLUMNS: tuple[str, ...] = ("sync_id", "interview_request_id", "body_sha256", "synced_at")
LEDGER_KEY: tuple[str, ...] = ("sync_id", "interview_request_id")
LEDGER_BATCH = 500
"""Ids per look-up, record or deletion statement batch."""
MAX_SYNC_ID_CHARS = 512
"""``sync_id`` column width; the default ``<dag_id>.<task_id>`` fits (Airflow ids are at most 250 each)."""
WRITE_ATTEMPTS = 5
"""Tries of one batch when a concurrent run conflicts with it (duplicate key, deadlock, serialization)."""
SQLITE_BUSY_TIMEOUT_MS = 120_000
"""How long the ledger's SQLite connection waits for another writer's lock."""
PROBE_ID = 0
"""The ``interview_request_id`` of the write probe: ids are positive, so it never meets a real row."""

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
_TABLE_NAME = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})?")
_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    sync_id VARCHAR(512) NOT NULL,
    interview_request_id BIGINT NOT NULL,
    body_sha256 VARCHAR(64) NOT NULL,
    synced_at TIMESTAMP NOT NULL,
    PRIMARY KEY (sync_id, interview_request_id)
)"""
_MISSING_TABLE_SQLSTATES = frozenset({"42P01", "42S02"})
_CONFLICT_SQLSTATES = frozenset({"23505", "40001", "40P01"})
_MISSING_TABLE_WORDS = ("no such table", "does not exist", "doesn't exist", "not found", "unknown table")
_REPLACE_INTO_DIALECTS = frozenset({"sqlite", "mysql", "mariadb"})
"""Dialects whose ``REPLACE INTO`` (the generic dialect's replace statement) is an upsert."""

log = logging.getLogger(__name__)
T = TypeVar("T")


class HindsightLedgerError(HindsightConfigurationError):
    """The sync ledger cannot be used: nothing was sent. The message names the connection, the table and the fix."""

    def __init__(self, message: str, *, ledger_conn_id: str, ledger_table: str) -> None:
        super().__init__(message, code="invalid_ledger")
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ledger_error, (type(self), self.message, self.ledger_conn_id, self.ledger_table))


def _rebuild_ledger_error(
    cls: type[HindsightLedgerError], message: str, ledger_conn_id: str, ledger_table: str
) -> HindsightLedgerError:
    return cls(message, ledger_conn_id=ledger_conn_id, ledger_table=ledger_table)


def body_sha256(base_url: str, payload: bytes) -> str:
    """Hex SHA-256 of the API base URL, a newline and the exact JSON body bytes.

    The base URL is part of it so that pointing the connection at another Hindsight (a test
    emulator, another region) resends everything. A trailing ``/`` does not count.
    """
    digest = hashlib.sha256(base_url.rstrip("/").encode())
    digest.update(b"\n")
    digest.update(payload)
    return digest.hexdigest()


def validate_ledger_table(table: object) -> str:
    """Return ``table`` when it is a plain or schema-qualified SQL identifier, else raise naming ``ledger_table``.

    The name goes into SQL text, so only ``name`` or ``schema.name`` made of letters, digits and
    underscores (not starting with a digit) is accepted: no quotes, spaces or other punctuation.
    """
    if isinstance(table, str) and _TABLE_NAME.fullmatch(table):
        return table
    raise HindsightValidationError(
        f"ledger_table must be a table name such as 'hindsight_sync_ledger' or 'analytics.hindsight_sync_ledger' "
        f"(letters, digits and underscores, optionally one schema prefix), got {table!r}.",
        field="ledger_table",
    )


def validate_sync_id(sync_id: object) -> str:
    """Return ``sync_id`` when it is a non-empty string that fits the ledger's column, else raise naming it."""
    if isinstance(sync_id, str) and sync_id.strip() and len(sync_id) <= MAX_SYNC_ID_CHARS:
        return sync_id
    raise HindsightValidationError(
        f"sync_id must be a non-empty string of at most {MAX_SYNC_ID_CHARS} characters, got {sync_id!r:.80}. "
        "Leave it unset for '<dag_id>.<task_id>'.",
        field="sync_id",
    )


class SyncLedger:
    """The ledger rows of one ``sync_id`` in ``table`` on the Airflow SQL connection ``ledger_conn_id``.

    Call :meth:`prepare` first, then :meth:`lookup`, :meth:`record` and :meth:`forget` as the run
    goes, and :meth:`close` at the end (or use it as a context manager).
    """

    def __init__(self, *, ledger_conn_id: str, table: str = DEFAULT_LEDGER_TABLE, sync_id: str) -> None:
        self.ledger_conn_id = ledger_conn_id
        self.table = validate_ledger_table(table)
        self.sync_id = validate_sync_id(sync_id)
        self.exists = False
        """Whether the table exists; after a dry-run ``prepare`` it may not, and every row is new."""
        self.writable = False
        """Whether :meth:`record` and :meth:`forget` may run: ``prepare(create=True)`` succeeded."""
        self._connection: Any = None
        self._hook: Any = None
        self._upsert_sql: str | None = None
        self._is_sqlite = False
        self._secret = ""

    # -- preparing -------------------------------------------------------------------------------

    def prepare(self, *, create: bool = True) -> None:
        """Check (and with ``create``, make) the ledger usable before any request is sent.

        ``create=False`` is for dry runs: nothing is created or written, and a missing table
        means every row is new.
        """
        self.close()
        self.exists = False
        try:
            self._prepare(create)
        except BaseException:
            self.close()
            raise

    def _prepare(self, create: bool) -> None:
        self._hook = self._sql_hook()
        self._connection = self._connect()
        columns, read_error = self._read_columns()
        if columns is None and create:
            self._create_table(read_error)
            columns, read_error = self._read_columns()
        if columns is None:
            if not create and read_error is not None and _is_missing_table(read_error):
                log.info("Ledger table %s does not exist on %r yet: every row is new.", self.table, self.ledger_conn_id)
                return
            raise self._unreadable(read_error)
        self._check_columns(columns)
        self.exists = True
        if not create:
            return
        self._upsert_sql = upsert_statement(self._hook, self.table)
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
        if self._is_sqlite:
            connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        return connection

    def _read_columns(self) -> tuple[list[str] | None, Exception | None]:
        """The table's column names, lower-cased, or ``None`` and the error when it cannot be read."""
        cursor = self._connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM {self.table} WHERE 1 = 0")
            columns = [str(column[0]).lower() for column in cursor.description or ()]
            cursor.fetchall()
        except Exception as error:
            self._connection.rollback()
            return None, error
        finally:
            cursor.close()
        self._connection.commit()
        return columns, None

    def _create_table(self, read_error: Exception | None) -> None:
        cursor = self._connection.cursor()
        try:
            cursor.execute(_CREATE_TABLE.format(table=self.table))
            self._connection.commit()
        except Exception as error:
            self._connection.rollback()
            if self._read_columns()[0] is not None:  # another run created it at the same time
                return
            if read_error is not None and not _is_missing_table(read_error):
                raise self._unreadable(read_error) from None  # it exists, most likely: reading is the problem
            schema = self.table.partition(".")[0] if "." in self.table else None
            hint = f" The schema {schema!r} must exist: CREATE SCHEMA {schema}." if schema else ""
            raise self._error(
                f"cannot create the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
                f"{self._message(error)}.{hint} Fix: let the connection's user create tables "
                "there, create the table yourself (columns sync_id, interview_request_id, body_sha256, synced_at; "
                "primary key (sync_id, interview_request_id)), or point ledger_conn_id at a writable database."
            ) from None
        finally:
            cursor.close()
        log.info("Created the ledger table %s on %r (if it did not exist).", self.table, self.ledger_conn_id)

    def _unreadable(self, error: Exception | None) -> HindsightLedgerError:
        return self._error(
            f"cannot read the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
            f"{self._message(error)}. Fix: give the connection's user SELECT, INSERT, UPDATE and DELETE on it, "
            "or set ledger_table to another name."
        )

    def _check_columns(self, columns: list[str]) -> None:
        if sorted(columns) != sorted(LEDGER_COLUMNS):
            raise self._error(
                f"the table {self.table!r} on connection {self.ledger_conn_id!r} is not a Hindsight sync ledger: "
                f"its columns are ({', '.join(columns)}), a ledger has exactly ({', '.join(LEDGER_COLUMNS)}). "
                "Fix: set ledger_table to another name, or drop or rename that table."
            )

    def _probe_write(self) -> None:
        """Upsert a probe row twice (an insert, then an update), delete it and roll back: leaves no trace."""
        cursor = self._connection.cursor()
        try:
            for digest in ("0" * 64, "1" * 64):
                self._upsert(cursor, rows=[(PROBE_ID, digest)], synced_at=_utc_now(self._is_sqlite))
            self._delete(cursor, ids=[PROBE_ID])
        except Exception as error:
            self._connection.rollback()
            raise self._error(
                f"cannot write to the ledger table {self.table!r} on connection {self.ledger_conn_id!r}: "
                f"{self._message(error)}. Fix: the connection's user needs INSERT, UPDATE and DELETE on it, on a "
                "database that is not read-only (not a replica, not default_transaction_read_only, not a "
                "file opened with mode=ro), and the table needs its primary key (sync_id, interview_request_id); "
                "or point ledger_conn_id at a writable database."
            ) from None
        finally:
            cursor.close()
        self._connection.rollback()

    def _use_write_ahead_log(self) -> None:
        try:
            mode = str(self._connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.Error as error:
            mode = f"unchanged: {error}"
        if mode not in ("wal", "memory"):
            log.warning(
                "Could not switch the SQLite ledger database of %r to write-ahead logging (journal mode %s): "
                "recording can fail with 'database is locked' while a query on the same file is running.",
                self.ledger_conn_id,
                mode,
            )

    # -- using -----------------------------------------------------------------------------------

    def lookup(self, interview_request_ids: Iterable[int]) -> dict[int, str]:
        """``{id: body_sha256}`` of the given ids that this ``sync_id`` recorded; one query per 500 ids."""
        self._require_prepared()
        found: dict[int, str] = {}
        if not self.exists:
            return found
        for batch in _batches(dict.fromkeys(interview_request_ids), LEDGER_BATCH):
            cursor = self._connection.cursor()
            try:
                cursor.execute(
                    f"SELECT interview_request_id, body_sha256 FROM {self.table} "
                    f"WHERE sync_id = {self._placeholder} AND interview_request_id IN ({self._placeholders(batch)})",
                    (self.sync_id, *batch),
                )
                for request_id, digest in cursor.fetchall():
                    found[int(request_id)] = str(digest)
            finally:
                cursor.close()
            self._connection.commit()  # ends the read transaction: no snapshot is held between batches
        return found

    def record(self, delivered: Iterable[tuple[int, str]]) -> int:
        """Upsert ``(id, body_sha256)`` pairs with ``synced_at`` now, committed per 500; returns how many.

        Safe while another run records the same keys: the last write wins.
        """
        self._require_writable()
        count = 0
        for batch in _batches(delivered, LEDGER_BATCH):
            rows = sorted(dict(batch).items())  # one row per id (the last), in key order
            self._write(partial(self._upsert, rows=rows, synced_at=_utc_now(self._is_sqlite)))
            count += len(rows)
        return count

    def forget(self, interview_request_ids: Iterable[int]) -> int:
        """Delete the entries of these ids (sent and failed: the next run sends them again); returns how many ids."""
        self._require_writable()
        count = 0
        for batch in _batches(interview_request_ids, LEDGER_BATCH):
            ids = sorted(set(batch))
            self._write(partial(self._delete, ids=ids))
            count += len(ids)
        return count

    def close(self) -> None:
        """Close the ledger's connection; safe to call twice."""
        connection, self._connection = self._connection, None
        self.writable = False
        if connection is not None:
            connection.close()

    def __enter__(self) -> SyncLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- SQL ---------------------------------------------------------------------------------------

    @property
    def _placeholder(self) -> str:
        return str(self._hook.placeholder)

    def _placeholders(self, values: Sequence[Any]) -> str:
        return ", ".join([self._placeholder] * len(values))

    def _upsert(self, cursor: Any, rows: list[tuple[int, str]], synced_at: Any) -> None:
        values = [(self.sync_id, request_id, digest, synced_at) for request_id, digest in rows]
        if self._upsert_sql is not None:
            cursor.executemany(self._upsert_sql, values)
            return
        ids = [request_id for request_id, _ in rows]
        cursor.execute(
            f"SELECT interview_request_id FROM {self.table} "
            f"WHERE sync_id = {self._placeholder} AND interview_request_id IN ({self._placeholders(ids)})",
            (self.sync_id, *ids),
        )
        existing = {int(request_id) for (request_id,) in cursor.fetchall()}
        updates = [(digest, at, key, request_id) for key, request_id, digest, at in values if request_id in existing]
        inserts = [row for row in values if row[1] not in existing]
        if updates:
            p = self._placeholder
            cursor.executemany(
                f"UPDATE {self.table} SET body_sha256 = {p}, synced_at = {p} "
                f"WHERE sync_id = {p} AND interview_request_id = {p}",
                updates,
            )
        if inserts:
            cursor.executemany(
                f"INSERT INTO {self.table} ({', '.join(LEDGER_COLUMNS)}) VALUES ({self._placeholders(inserts[0])})",
                inserts,
            )

    def _delete(self, cursor: Any, ids: list[int]) -> None:
        cursor.execute(
            f"DELETE FROM {self.table} "
            f"WHERE sync_id = {self._placeholder} AND interview_request_id IN ({self._placeholders(ids)})",
            (self.sync_id, *ids),
        )

    def _write(self, statements: Callable[[Any], None]) -> None:
        """Run ``statements`` and commit; retry the batch when a concurrent run conflicted with it."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            cursor = self._connection.cursor()
            try:
                statements(cursor)
                self._connection.commit()
                return
            except Exception as error:
                self._connection.rollback()
                if attempt == WRITE_ATTEMPTS or not _is_write_conflict(error):
                    raise
                log.info("Ledger write conflicted with another run (%s); trying again.", error)
                time.sleep(0.05 * attempt)
            finally:
                cursor.close()

    # -- helpers -----------------------------------------------------------------------------------

    def _require_prepared(self) -> None:
        if self._connection is None:
            raise RuntimeError("SyncLedger.prepare() must run before the ledger is used.")

    def _require_writable(self) -> None:
        if not self.writable:
            raise RuntimeError("SyncLedger.record() and forget() need prepare(create=True), not a dry run.")

    def _message(self, error: BaseException | None) -> str:
        """The driver's message, on one line, without the connection's password."""
        return self._redact(" ".join(str(error).split())[:500])

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, message: str) -> HindsightLedgerError:
        return HindsightLedgerError(message, ledger_conn_id=self.ledger_conn_id, ledger_table=self.table)


def upsert_statement(hook: Any, table: str) -> str | None:
    """The hook's dialect's upsert of one ledger row, or ``None`` when it has none (UPDATE, then INSERT)."""
    try:
        from airflow.providers.common.sql.dialects.dialect import Dialect

        dialect = hook.dialect
        specific = type(dialect).generate_replace_sql is not Dialect.generate_replace_sql
        if not specific and hook.dialect_name not in _REPLACE_INTO_DIALECTS:
            return None
        return str(
            dialect.generate_replace_sql(
                table, (None,) * len(LEDGER_COLUMNS), list(LEDGER_COLUMNS), replace_index=list(LEDGER_KEY)
            )
        )
    except Exception as error:  # common-sql without dialects, a dialect's provider missing, or no upsert
        log.debug("No upsert from the SQL dialect (%s): updating, then inserting.", error)
        return None


def _utc_now(for_sqlite: bool) -> Any:
    """Now in UTC without time zone; as ISO text for SQLite, which has no timestamp type."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.isoformat(sep=" ") if for_sqlite else now


def _sqlstate(error: BaseException) -> str | None:
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def _is_missing_table(error: BaseException) -> bool:
    if _sqlstate(error) in _MISSING_TABLE_SQLSTATES:
        return True
    text = str(error).lower()
    return any(words in text for words in _MISSING_TABLE_WORDS)


def _is_write_conflict(error: BaseException) -> bool:
    """A duplicate key from a concurrent insert, a deadlock or a serialization failure: trying again helps."""
    if _sqlstate(error) in _CONFLICT_SQLSTATES:
        return True
    return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
