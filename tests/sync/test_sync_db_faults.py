"""The ledger's database failing mid-run: every row is accounted for, what was delivered is recorded where it
can be, and one line says how many rows were delivered and recorded (issue 19, item 7)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_hindsight.bulk.changes import CHECKPOINT_ROWS, ChangeOnlySync
from airflow_provider_hindsight.bulk.rows import RowResult
from airflow_provider_hindsight.resources.interviews import build_interview_update
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.sync.helpers import (
    TABLE,
    LedgerDatabase,
    Source,
    assert_summary,
    body_hash,
    payload,
    point_hindsight,
    run,
    sent,
    transfer,
)

ROWS = 1000
WORKERS = 4
BREAK_AT = CHECKPOINT_ROWS + 50
"""Requests received before the ledger is broken: after the first checkpoint."""
STOPPED_LINE = re.compile(
    r"Stopped by a database error after (\d+) rows: (\d+) delivered, (\d+) recorded in the ledger"
)


class FlakyLedger:
    """A ledger whose first ``failures`` writes raise, as a database that drops one commit would."""

    table = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: dict[int, str] = {}

    def lookup(self, ids: Any) -> dict[int, str]:
        return {}

    def record(self, delivered: list[tuple[int, str]]) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError("the write was lost")
        self.rows.update(delivered)
        return len(delivered)

    def forget(self, ids: Any) -> int:
        return 0

    def close(self) -> None:
        pass


def test_a_checkpoint_whose_write_failed_keeps_its_rows_for_the_next_one() -> None:
    ledger = FlakyLedger(failures=1)
    sync = ChangeOnlySync(ledger, base_url="http://h/api/v1", full_refresh=False, dry_run=False)  # type: ignore[arg-type]
    updates = [(n, build_interview_update(n, objective=f"objective {n}")) for n in range(1, 2 * CHECKPOINT_ROWS + 1)]
    for position, _ in sync.skip_unchanged(updates):
        sync.account(RowResult.sent(position, position))
        if position == CHECKPOINT_ROWS:
            assert ledger.rows == {} and sync.pending == CHECKPOINT_ROWS, "the failed batch is kept"
    assert len(ledger.rows) == 2 * CHECKPOINT_ROWS, "the next checkpoint wrote both batches"
    assert (sync.delivered, sync.recorded, sync.pending) == (2 * CHECKPOINT_ROWS, 2 * CHECKPOINT_ROWS, 0)


def when_requests_reach(emulator: HindsightEmulator, count: int, fault: Callable[[], None]) -> threading.Thread:
    """Run ``fault`` in a thread as soon as the emulator has received ``count`` requests."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while emulator.request_count < count and time.monotonic() < deadline:
            time.sleep(0.002)
        fault()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def break_ledger(ledger_db: LedgerDatabase) -> tuple[Callable[[], None], Callable[[], None]]:
    """How to break the ledger mid-run, and how to mend it: SQLite renames the table, PostgreSQL kills the session."""
    if ledger_db.backend == "sqlite":
        return (
            lambda: ledger_db.run(f"ALTER TABLE {TABLE} RENAME TO broken_ledger"),
            lambda: ledger_db.run(f"ALTER TABLE broken_ledger RENAME TO {TABLE}"),
        )
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return (lambda: ledger_db.query(terminate) and None), lambda: None


def test_a_ledger_that_breaks_mid_run_stops_the_run_with_an_account(
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    task_logs: Callable[[], str],
) -> None:
    emulator = hindsight_emulator_factory(latency=0.005)
    point_hindsight(monkeypatch, emulator, requests_per_minute=30_000)
    source.fill(ROWS)
    fault, mend = break_ledger(ledger_db)

    watcher = when_requests_reach(emulator, BREAK_AT, fault)
    broken = run(transfer(source, ledger_db, max_workers=WORKERS))
    watcher.join()
    time.sleep(0.1)  # the emulator records a request when it has answered it

    assert broken.error is not None
    logs = task_logs()
    found = STOPPED_LINE.search(logs)
    assert found, logs[-3000:]
    seen, delivered, recorded = map(int, found.groups())
    first = sent(emulator)
    assert delivered == len(first) == sum(1 for request in first.values() if request.status == 200)
    assert "Could not write a checkpoint to the ledger" in logs, "the first failed checkpoint is a WARNING"
    assert len(first) <= recorded + 2 * CHECKPOINT_ROWS + 2 * WORKERS, "the second failed checkpoint stopped it"
    assert len(first) < ROWS and seen >= delivered
    mend()
    hashes = ledger_db.hashes()
    assert len(hashes) == recorded
    for interview_id, digest in hashes.items():
        assert digest == body_hash(emulator.base_url, first[interview_id].body)

    emulator.reset_requests()
    retry = run(transfer(source, ledger_db, max_workers=WORKERS))

    assert retry.error is None
    owed = set(range(1, ROWS + 1)) - set(hashes)
    assert set(sent(emulator)) == owed, "the retry sends exactly what the ledger does not hold"
    assert_summary(retry.summary, succeeded=len(owed), unchanged=len(hashes))
    resent = len(owed & set(first))
    print(f"ledger broken at {BREAK_AT} requests: {delivered} delivered, {recorded} recorded, {resent} resent")
    bodies = source.bodies()
    assert ledger_db.hashes() == {key: body_hash(emulator.base_url, payload(body)) for key, body in bodies.items()}
