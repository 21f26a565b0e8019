"""The sync ledger: which body each interview last received, so that change-only sync resends only changes.

One row per ``(sync_id, interview_request_id)`` (the primary key) in a table of exactly four columns:
``sync_id``, ``interview_request_id``, ``body_sha256`` (see :func:`body_sha256`) and ``synced_at``
(UTC, a timestamp without time zone). The connection, the table's creation and checks, SQLite's
write-ahead logging and the batched statements are :class:`~.sql.SqlTable`'s:

- :meth:`SyncLedger.prepare` runs before any request: the connection exists, connects and is a SQL
  connection; the table exists with those columns (or is created with ``CREATE TABLE IF NOT EXISTS``);
  it can be read and written (a probe row upserted twice and deleted, then rolled back). Every failure is a
  :class:`HindsightLedgerError` naming the connection, the table and the fix.
- Look-ups, records and deletions go 500 ids at a time, one statement per batch for look-ups and
  deletions: memory stays flat however large the ledger is.
- Records are upserts where the hook's SQL dialect has one, else an ``UPDATE`` of the keys that exist
  and an ``INSERT`` of the others, retried when another run inserted the same key first. Each batch
  is sorted by id, so that two runs writing the same keys lock them in the same order and cannot
  deadlock; the last write wins.

A lock held on the table by another session past the bound, or a lost connection, raises a
transient :class:`~.sql.HindsightLedgerUnavailableError` (Airflow retries the task; what was
recorded is kept); a permission or schema problem stays a permanent :class:`HindsightLedgerError`.
:attr:`~.sql.SqlTable.lock_wait_seconds` is how long this ledger's writes waited on locks.

A reserved row per ``sync_id`` with ``interview_request_id = -1`` is the sync's lease (one run at a
time, see :mod:`airflow_provider_hindsight.bulk.lease`): :meth:`SyncLedger.take_lease`,
:meth:`SyncLedger.refresh_lease`, :meth:`SyncLedger.release_lease`. Look-ups by id never meet it.

A :class:`SyncLedger` holds one connection from :meth:`~SyncLedger.prepare` to
:meth:`~SyncLedger.close`; use it from one thread at a time.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.ledgers import sql
from airflow_provider_hindsight.ledgers.sql import (
    LEDGER_BATCH,
    SQLITE_BUSY_TIMEOUT_MS,
    WRITE_ATTEMPTS,
    Column,
    HindsightLedgerError,
    SqlTable,
    validate_table_name,
)

__all__ = [
    "DEFAULT_LEDGER_TABLE",
    "LEASE_ID",
    "LEDGER_BATCH",
    "LEDGER_COLUMNS",
    "LEDGER_KEY",
    "MAX_SYNC_ID_CHARS",
    "PROBE_ID",
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITE_ATTEMPTS",
    "HindsightLedgerError",
    "LeaseHolder",
    "SyncLedger",
    "body_sha256",
    "upsert_statement",
    "validate_ledger_table",
    "validate_sync_id",
]

DEFAULT_LEDGER_TABLE = "hindsight_sync_ledger"
MAX_SYNC_ID_CHARS = 512
"""``sync_id`` column width; the default ``<dag_id>.<task_id>`` fits (Airflow ids are at most 250 each)."""
PROBE_ID = 0
"""The ``interview_request_id`` of the write probe: ids are positive, so it never meets a real row."""
LEASE_ID = -1
"""The ``interview_request_id`` of a sync's lease row (``body_sha256`` the holder's token, ``synced_at`` its
heartbeat): ids are positive, so it never meets a real row."""
_COLUMNS = (
    Column("sync_id", f"VARCHAR({MAX_SYNC_ID_CHARS})"),
    Column("interview_request_id", "BIGINT"),
    Column("body_sha256", "VARCHAR(64)"),
    Column("synced_at", "TIMESTAMP"),
)
LEDGER_COLUMNS: tuple[str, ...] = tuple(column.name for column in _COLUMNS)
LEDGER_KEY: tuple[str, ...] = ("sync_id", "interview_request_id")


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
    """Return ``table`` when it is a plain or schema-qualified SQL identifier, else raise naming ``ledger_table``."""
    return validate_table_name(table, parameter="ledger_table", example=DEFAULT_LEDGER_TABLE)


def validate_sync_id(sync_id: object) -> str:
    """Return ``sync_id`` when it is a non-empty string that fits the ledger's column, else raise naming it."""
    if isinstance(sync_id, str) and sync_id.strip() and len(sync_id) <= MAX_SYNC_ID_CHARS:
        return sync_id
    raise HindsightValidationError(
        f"sync_id must be a non-empty string of at most {MAX_SYNC_ID_CHARS} characters, got {sync_id!r:.80}. "
        "Leave it unset for '<dag_id>.<task_id>'.",
        field="sync_id",
    )


def _as_datetime(value: Any) -> datetime.datetime:
    """A ``synced_at`` as a naive UTC datetime: SQLite stores ISO text, other databases a timestamp."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    return datetime.datetime.fromisoformat(str(value))


def upsert_statement(hook: Any, table: str) -> str | None:
    """The hook's dialect's upsert of one ledger row, or ``None`` when it has none (UPDATE, then INSERT)."""
    return sql.upsert_statement(hook, table, LEDGER_COLUMNS, LEDGER_KEY)


class SyncLedger(SqlTable):
    """The ledger rows of one ``sync_id`` in ``table`` on the Airflow SQL connection ``ledger_conn_id``.

    Call :meth:`prepare` first, then :meth:`lookup`, :meth:`record` and :meth:`forget` as the run
    goes, and :meth:`close` at the end (or use it as a context manager).
    """

    KIND = "Hindsight sync ledger"
    COLUMNS = _COLUMNS
    KEY = LEDGER_KEY
    MISSING_TABLE_MEANS = "every row is new"

    def __init__(self, *, ledger_conn_id: str, table: str = DEFAULT_LEDGER_TABLE, sync_id: str) -> None:
        super().__init__(ledger_conn_id=ledger_conn_id, table=validate_ledger_table(table))
        self.sync_id = validate_sync_id(sync_id)

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        now = self._now()
        return [(self.sync_id, PROBE_ID, digit * 64, now) for digit in ("0", "1")]

    def lookup(self, interview_request_ids: Iterable[int]) -> dict[int, str]:
        """``{id: body_sha256}`` of the given ids that this ``sync_id`` recorded; one query per 500 ids."""
        self._require_prepared()
        if not self.exists:
            return {}
        keys = ((self.sync_id, request_id) for request_id in interview_request_ids)
        rows = self.select_by_keys(("interview_request_id", "body_sha256"), keys)
        return {int(request_id): str(digest) for request_id, digest in rows}

    def lookup_with_times(self, interview_request_ids: Iterable[int]) -> dict[int, tuple[str, datetime.datetime]]:
        """``{id: (body_sha256, synced_at)}`` of the given ids; ``synced_at`` naive UTC. One query per 500 ids.

        Added for the retry of a full refresh (``bulk/changes.py``): rows recorded since the DAG run began,
        with the same hash, were delivered by an earlier try and are not sent again.
        """
        self._require_prepared()
        if not self.exists:
            return {}
        keys = ((self.sync_id, request_id) for request_id in interview_request_ids)
        rows = self.select_by_keys(("interview_request_id", "body_sha256", "synced_at"), keys)
        return {int(request_id): (str(digest), _as_datetime(at)) for request_id, digest, at in rows}

    def record(self, delivered: Iterable[tuple[int, str]]) -> int:
        """Upsert ``(id, body_sha256)`` pairs with ``synced_at`` now, committed per 500; returns how many.

        Safe while another run records the same keys: the last write wins.
        """
        self._require_writable("SyncLedger.record() and forget()")
        now = self._now()
        return self.upsert_rows((self.sync_id, request_id, digest, now) for request_id, digest in delivered)

    def forget(self, interview_request_ids: Iterable[int]) -> int:
        """Delete the entries of these ids (sent and failed: the next run sends them again); returns how many ids."""
        self._require_writable("SyncLedger.record() and forget()")
        return self.delete_keys((self.sync_id, request_id) for request_id in interview_request_ids)

    # -- the lease: one run of a sync_id at a time (added for bulk/lease.py) ------------------------------

    def take_lease(self, token: str, *, take_over: Callable[[str, datetime.datetime], bool]) -> LeaseHolder | None:
        """Take the lease of this ``sync_id`` (the reserved row ``interview_request_id = -1``); ``None`` when taken.

        Inserted if absent (of two runs, exactly one gets it); when another token holds it, taken over
        with a conditional update only if ``take_over(holder_token, heartbeat)`` says so (a stale
        heartbeat, an earlier try of the same task). Otherwise returns the holder.
        """
        self._require_writable("SyncLedger leases")
        if self.insert_if_absent((self.sync_id, LEASE_ID, token, self._now())):
            return None
        rows = list(self.select_by_keys(("body_sha256", "synced_at"), [(self.sync_id, LEASE_ID)]))
        if not rows:  # released between the insert and the read: the caller tries again
            return LeaseHolder("", None)
        holder, at = str(rows[0][0]), _as_datetime(rows[0][1])
        if take_over(holder, at) and self._update_lease(token, holder=holder):
            return None
        return LeaseHolder(holder, at)

    def refresh_lease(self, token: str) -> bool:
        """Move the lease's heartbeat to now; whether ``token`` still holds it."""
        return self._update_lease(token, holder=token)

    def release_lease(self, token: str) -> None:
        """Delete the lease if ``token`` holds it."""
        p = self._placeholder

        def delete(cursor: Any) -> None:
            cursor.execute(
                f"DELETE FROM {self.table} WHERE sync_id = {p} AND interview_request_id = {p} AND body_sha256 = {p}",
                (self.sync_id, LEASE_ID, token),
            )

        self._write(delete)

    def _update_lease(self, token: str, *, holder: str) -> bool:
        p = self._placeholder

        def update(cursor: Any) -> bool:
            cursor.execute(
                f"UPDATE {self.table} SET body_sha256 = {p}, synced_at = {p} "
                f"WHERE sync_id = {p} AND interview_request_id = {p} AND body_sha256 = {p}",
                (token, self._now(), self.sync_id, LEASE_ID, holder),
            )
            return bool(cursor.rowcount == 1)

        return self._write(update)


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a sync's lease: its token and its last heartbeat (naive UTC)."""

    token: str
    heartbeat: datetime.datetime | None
