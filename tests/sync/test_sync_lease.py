"""The lease of a sync_id: a run waits for another run in progress, and takes over the lease of a killed one."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest

from airflow_provider_hindsight.bulk import sync_lease
from airflow_provider_hindsight.ledgers.sync import OLD_LEASE_ID
from airflow_provider_hindsight.ledgers.sync_lease import SyncLeaseTable
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.sync.helpers import TABLE, LedgerDatabase, Source, assert_summary, point_hindsight, run, transfer

LEASES = f"{TABLE}_leases"


def hold_lease(ledger_db: LedgerDatabase, *, minutes_ago: float) -> datetime.datetime:
    """Another task instance's lease on the suite's sync_id, taken an hour ago, with a heartbeat ``minutes_ago``.

    Returns when it was taken.
    """
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    started, beat = now - datetime.timedelta(hours=1), now - datetime.timedelta(minutes=minutes_ago)
    values = (started, beat) if ledger_db.backend == "postgres" else (str(started), str(beat))
    mark = "?" if ledger_db.backend == "sqlite" else "%s"
    with closing(ledger_db.connect()) as connection:
        connection.cursor().execute(
            f"INSERT INTO {LEASES} VALUES ({mark}, {mark}, {mark}, {mark}, {mark})",
            (ledger_db.sync_id, "another-run", "f" * 16, *values),
        )
        connection.commit()
    return started


def lease_rows(ledger_db: LedgerDatabase) -> list[tuple[Any, ...]]:
    return ledger_db.query(f"SELECT sync_id, holder FROM {LEASES}")


def test_a_run_waits_for_another_run_of_its_sync_and_then_sends_only_what_is_owed(
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
    task_logs: Callable[[], str],
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator)
    source.fill(20)
    assert run(transfer(source, ledger_db)).error is None  # the ledger exists
    source.change([3, 4])
    started = hold_lease(ledger_db, minutes_ago=0)
    monkeypatch.setattr(sync_lease, "POLL_SECONDS", 0.05)
    found_held = threading.Event()
    take = SyncLeaseTable.take

    def observed(self: SyncLeaseTable, sync_id: str, **kwargs: Any) -> Any:
        held = take(self, sync_id, **kwargs)
        if held is not None:
            found_held.set()
        return held

    monkeypatch.setattr(SyncLeaseTable, "take", observed)

    def the_other_run_ends() -> None:
        found_held.wait(30)
        ledger_db.run(f"DELETE FROM {LEASES}")

    ender = threading.Thread(target=the_other_run_ends)
    ender.start()
    hindsight_emulator.reset_requests()
    waited = run(transfer(source, ledger_db))
    ender.join()

    assert waited.error is None
    assert_summary(waited.summary, succeeded=2, unchanged=18)
    logs = task_logs()
    assert (
        f"Another run of the sync 'warehouse_sync.push_changes' is in progress (since {started:%Y-%m-%d %H:%M:%S} UTC"
        in logs
    )
    assert "then reading the ledger, so that the rows it delivered are not sent again" in logs
    assert lease_rows(ledger_db) == [], "the lease was released"


def test_the_lease_of_a_killed_run_is_taken_over_once_stale(
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
    task_logs: Callable[[], str],
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator)
    source.fill(5)
    assert run(transfer(source, ledger_db)).error is None
    hold_lease(ledger_db, minutes_ago=sync_lease.STALE_AFTER_SECONDS / 60 + 1)

    outcome = run(transfer(source, ledger_db))

    assert outcome.error is None
    assert "Taking over the lease of the sync 'warehouse_sync.push_changes'" in task_logs()
    assert lease_rows(ledger_db) == []


def test_a_dry_run_takes_no_lease(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator)
    source.fill(5)
    assert run(transfer(source, ledger_db)).error is None
    hold_lease(ledger_db, minutes_ago=0)

    assert run(transfer(source, ledger_db, dry_run=True)).error is None  # does not wait: it writes nothing
    assert len(lease_rows(ledger_db)) == 1


def test_the_lease_row_of_an_earlier_version_is_deleted_on_first_use(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Earlier versions kept the lease in the ledger as the row interview_request_id = -1."""
    point_hindsight(monkeypatch, hindsight_emulator)
    source.fill(5)
    assert run(transfer(source, ledger_db)).error is None
    mark = "?" if ledger_db.backend == "sqlite" else "%s"
    with closing(ledger_db.connect()) as connection:
        connection.cursor().execute(
            f"INSERT INTO {TABLE} VALUES ({mark}, {mark}, {mark}, {mark})",
            (ledger_db.sync_id, OLD_LEASE_ID, "f" * 16 + ":2026-01-01T00:00:00:abcdef123456", "2026-01-01 00:00:00"),
        )
        connection.commit()
    source.change([2])
    hindsight_emulator.reset_requests()

    outcome = run(transfer(source, ledger_db))

    assert outcome.error is None
    assert_summary(outcome.summary, succeeded=1, unchanged=4)
    assert ledger_db.query(f"SELECT COUNT(*) FROM {TABLE} WHERE interview_request_id = {OLD_LEASE_ID}") == [(0,)]
    assert lease_rows(ledger_db) == []
