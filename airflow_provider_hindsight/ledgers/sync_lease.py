"""The sync leases: which run of a ``sync_id`` holds it now, in a table of its own beside the sync ledger.

One row per ``sync_id`` (the primary key) in ``<ledger_table>_leases``: ``holder`` (the holding
run's random token), ``owner`` (the task instance, ``<dag_id>/<task_id>/<run_id>/<map_index>``: its
tries share it), ``started_at`` and ``heartbeat_at`` (UTC). Taking a free lease is an ``INSERT`` (of
two runs, exactly one gets it); taking over, refreshing and releasing are conditional on the holder,
so a run never moves or deletes another run's lease. When to wait and when to take over is
:mod:`airflow_provider_hindsight.bulk.sync_lease`'s.

Earlier versions kept the lease in the sync ledger itself, as the row ``interview_request_id = -1``;
:meth:`~.sync.SyncLedger.prepare` deletes such a row of its ``sync_id`` on first use.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.ledgers.sql import SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.table import Column, TableSpec
from airflow_provider_hindsight.ledgers.values import utc_timestamp

MAX_SYNC_ID_CHARS = 512
"""``sync_id`` column width; the default ``<dag_id>.<task_id>`` fits (Airflow ids are at most 250 each)."""
LEASES_SUFFIX = "_leases"
PROBE_SYNC_ID = "\x01hindsight-lease-probe"
"""The write probe's ``sync_id``; rolled back, and no real ``sync_id`` starts with a control character."""
SPEC = TableSpec(
    kind="Hindsight sync lease table",
    columns=(
        Column("sync_id", f"VARCHAR({MAX_SYNC_ID_CHARS})"),
        Column("holder", "VARCHAR(64)"),
        Column("owner", "VARCHAR(1000)"),  # Airflow's ids are at most 250 characters each
        Column("started_at", "TIMESTAMP"),
        Column("heartbeat_at", "TIMESTAMP"),
    ),
    key=("sync_id",),
)


def leases_table_of(ledger_table: str) -> str:
    """The lease table beside the sync ledger ``ledger_table`` (same schema): ``<ledger_table>_leases``."""
    return validate_table_name(ledger_table + LEASES_SUFFIX, parameter="ledger_table", example="hindsight_sync_ledger")


@dataclass(frozen=True)
class SyncLeaseRow:
    """Who holds a sync's lease: the run's token, its task instance, since when, and its last heartbeat (naive UTC)."""

    holder: str
    owner: str
    started_at: datetime.datetime | None
    heartbeat_at: datetime.datetime | None


class SyncLeaseTable:
    """The leases of the sync ledger ``ledger_table`` on the Airflow SQL connection ``ledger_conn_id``.

    Call :meth:`prepare` (with the sync ledger's) and :meth:`close` at the end.
    """

    def __init__(self, *, ledger_conn_id: str, ledger_table: str) -> None:
        self.sql = SqlTable(
            SPEC,
            conn_id=ledger_conn_id,
            table=leases_table_of(ledger_table),
            probe_rows=self._probe_rows,
            noun="lease table",
            missing_means="no run holds a lease",
        )

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        now = self.sql.now()
        return [(PROBE_SYNC_ID, holder, "probe", now, now) for holder in ("0", "1")]

    def prepare(self) -> None:
        """Create (on first use), check and probe the table: only runs that write take leases."""
        self.sql.prepare(create=True)

    def close(self) -> None:
        self.sql.close()

    def take(
        self, sync_id: str, *, holder: str, owner: str, take_over: Callable[[SyncLeaseRow], bool]
    ) -> SyncLeaseRow | None:
        """Take the lease of ``sync_id`` for ``holder``; ``None`` when taken, else who holds it.

        Inserted if absent (of two runs, exactly one gets it); when another run holds it, taken over
        with an update conditional on that holder, only if ``take_over(lease)`` says so.
        """
        now = self.sql.now()
        if self.sql.insert_if_absent((sync_id, holder, owner, now, now)):
            return None
        rows = list(self.sql.select_by_keys(("holder", "owner", "started_at", "heartbeat_at"), [(sync_id,)]))
        if not rows:  # released between the insert and the read: the caller tries again
            return SyncLeaseRow("", "", None, None)
        held, held_by, started, beat = rows[0]
        lease = SyncLeaseRow(str(held), str(held_by), utc_timestamp(started), utc_timestamp(beat))
        p = self.sql.dialect.placeholder
        if take_over(lease) and self.sql.execute(
            f"UPDATE {self.sql.table} SET holder = {p}, owner = {p}, started_at = {p}, heartbeat_at = {p} "
            f"WHERE sync_id = {p} AND holder = {p}",
            (holder, owner, now, now, sync_id, lease.holder),
        ):
            return None
        return lease

    def refresh(self, sync_id: str, holder: str) -> bool:
        """Move the lease's heartbeat to now; whether ``holder`` still holds it."""
        p = self.sql.dialect.placeholder
        statement = f"UPDATE {self.sql.table} SET heartbeat_at = {p} WHERE sync_id = {p} AND holder = {p}"
        return self.sql.execute(statement, (self.sql.now(), sync_id, holder)) == 1

    def release(self, sync_id: str, holder: str) -> None:
        """Delete the lease if ``holder`` holds it."""
        p = self.sql.dialect.placeholder
        self.sql.execute(f"DELETE FROM {self.sql.table} WHERE sync_id = {p} AND holder = {p}", (sync_id, holder))
