"""The sync ledger: which body each interview last received, so that change-only sync resends only changes.

One row per ``(sync_id, interview_request_id)`` (the primary key) in a table of exactly four columns:
``sync_id``, ``interview_request_id``, ``body_sha256`` (see :func:`body_sha256`) and ``synced_at``
(UTC, a timestamp without time zone). The connection, the table's creation and checks, SQLite's
write-ahead logging and the batched statements are its :class:`~.sql.SqlTable`'s:

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
transient :class:`~.faults.HindsightLedgerUnavailableError` (Airflow retries the task; what was
recorded is kept); a permission or schema problem stays a permanent :class:`HindsightLedgerError`.
:attr:`SyncLedger.lock_wait_seconds` is how long this ledger's writes waited on locks.

The sync's lease (one run at a time, see :mod:`airflow_provider_hindsight.bulk.sync_lease`) lives in a
table of its own beside the ledger, :attr:`SyncLedger.leases` (:mod:`.sync_lease`).

A :class:`SyncLedger` holds one connection (and one for its leases) from :meth:`~SyncLedger.prepare`
to :meth:`~SyncLedger.close`; use it from one thread at a time.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.ledgers.faults import HindsightLedgerError
from airflow_provider_hindsight.ledgers.sql import LEDGER_BATCH, SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.sync_lease import MAX_SYNC_ID_CHARS, SyncLeaseTable
from airflow_provider_hindsight.ledgers.table import Column, TableSpec
from airflow_provider_hindsight.ledgers.values import utc_timestamp

__all__ = [
    "DEFAULT_LEDGER_TABLE",
    "LEDGER_BATCH",
    "MAX_SYNC_ID_CHARS",
    "OLD_LEASE_ID",
    "PROBE_ID",
    "SPEC",
    "HindsightLedgerError",
    "SyncLedger",
    "body_sha256",
    "validate_ledger_table",
    "validate_sync_id",
]

DEFAULT_LEDGER_TABLE = "hindsight_sync_ledger"
PROBE_ID = 0
"""The ``interview_request_id`` of the write probe: ids are positive, so it never meets a real row."""
OLD_LEASE_ID = -1
"""The ``interview_request_id`` under which earlier versions kept a sync's lease; deleted on first use."""
SPEC = TableSpec(
    kind="Hindsight sync ledger",
    columns=(
        Column("sync_id", f"VARCHAR({MAX_SYNC_ID_CHARS})"),
        Column("interview_request_id", "BIGINT"),
        Column("body_sha256", "VARCHAR(64)"),
        Column("synced_at", "TIMESTAMP"),
    ),
    key=("sync_id", "interview_request_id"),
)

log = logging.getLogger(__name__)


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


class SyncLedger:
    """The ledger rows of one ``sync_id`` in ``table`` on the Airflow SQL connection ``ledger_conn_id``.

    Call :meth:`prepare` first, then :meth:`lookup`, :meth:`record` and :meth:`forget` as the run
    goes, and :meth:`close` at the end (or use it as a context manager).
    """

    def __init__(self, *, ledger_conn_id: str, table: str = DEFAULT_LEDGER_TABLE, sync_id: str) -> None:
        self.ledger_conn_id = ledger_conn_id
        self.table = validate_ledger_table(table)
        self.sync_id = validate_sync_id(sync_id)
        self.sql = SqlTable(
            SPEC,
            conn_id=ledger_conn_id,
            table=self.table,
            probe_rows=self._probe_rows,
            missing_means="every row is new",
        )
        self.leases = SyncLeaseTable(ledger_conn_id=ledger_conn_id, ledger_table=self.table)
        """The sync leases, prepared with the ledger when it may write."""

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        now = self.sql.now()
        return [(self.sync_id, PROBE_ID, digit * 64, now) for digit in ("0", "1")]

    @property
    def lock_wait_seconds(self) -> float:
        """Seconds the ledger's and the lease's writes lost to locks (see :attr:`~.sql.SqlTable.lock_wait_seconds`)."""
        return self.sql.lock_wait_seconds + self.leases.sql.lock_wait_seconds

    def prepare(self, *, create: bool = True) -> None:
        """Check (and with ``create``, make) the ledger and its lease table usable; see :meth:`~.sql.SqlTable.prepare`.

        With ``create``, a lease row an earlier version kept in the ledger for this ``sync_id`` is deleted.
        """
        self.sql.prepare(create=create)
        if not create:
            return
        try:
            self.leases.prepare()
            keys = [(self.sync_id, OLD_LEASE_ID)]
            if list(self.sql.select_by_keys(("interview_request_id",), keys)):
                self.sql.delete_keys(keys)
                log.info(
                    "Deleted the lease row an earlier version kept in %s for the sync %r.",
                    self.table,
                    self.sync_id,
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close both connections; safe to call twice."""
        try:
            self.leases.close()
        finally:
            self.sql.close()

    def __enter__(self) -> SyncLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def lookup(self, interview_request_ids: Iterable[int]) -> dict[int, str]:
        """``{id: body_sha256}`` of the given ids that this ``sync_id`` recorded; one query per 500 ids."""
        return {key: digest for key, (digest, _) in self.lookup_with_times(interview_request_ids).items()}

    def lookup_with_times(self, interview_request_ids: Iterable[int]) -> dict[int, tuple[str, datetime.datetime]]:
        """``{id: (body_sha256, synced_at)}`` of the given ids; ``synced_at`` naive UTC. One query per 500 ids.

        For the retry of a full refresh (``bulk/changes.py``): rows recorded since the DAG run began,
        with the same hash, were delivered by an earlier try and are not sent again.
        """
        self.sql.require_prepared()
        if not self.sql.exists:
            return {}
        keys = ((self.sync_id, request_id) for request_id in interview_request_ids)
        rows = self.sql.select_by_keys(("interview_request_id", "body_sha256", "synced_at"), keys)
        found: dict[int, tuple[str, datetime.datetime]] = {}
        for request_id, digest, synced_at in rows:
            at = utc_timestamp(synced_at)
            if at is None:
                raise self.sql.messages.error(
                    f"{self.sql.messages.where} holds a synced_at that is not a timestamp ({synced_at!r:.40}). "
                    "Fix: delete that row (its interview is sent again) or the table."
                )
            found[int(request_id)] = (str(digest), at)
        return found

    def record(self, delivered: Iterable[tuple[int, str]]) -> int:
        """Upsert ``(id, body_sha256)`` pairs with ``synced_at`` now, committed per 500; returns how many.

        Safe while another run records the same keys: the last write wins.
        """
        self.sql.require_writable("SyncLedger.record() and forget()")
        now = self.sql.now()
        return self.sql.upsert_rows((self.sync_id, request_id, digest, now) for request_id, digest in delivered)

    def forget(self, interview_request_ids: Iterable[int]) -> int:
        """Delete the entries of these ids (sent and failed: the next run sends them again); returns how many ids."""
        self.sql.require_writable("SyncLedger.record() and forget()")
        return self.sql.delete_keys((self.sync_id, request_id) for request_id in interview_request_ids)
