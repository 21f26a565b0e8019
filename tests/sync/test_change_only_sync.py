"""Change-only sync through the real operators: what is sent, what is skipped, what the ledger holds."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.support.postgres import PostgresDatabase
from tests.sync.helpers import (
    DEFAULT_SYNC_ID,
    TABLE,
    LedgerDatabase,
    Outcome,
    Source,
    assert_only_the_key_check,
    assert_sent_exactly,
    assert_summary,
    body_hash,
    bulk,
    in_dag,
    payload,
    point_hindsight,
    postgres_ledger,
    run,
    sent,
    sqlite_ledger,
    transfer,
)

ROWS = 500
FAST = 600_000
"""Requests a minute for the connection where the test sends many rows: the emulator has no limit."""


def expected_hashes(base_url: str, bodies: dict[int, dict[str, Any]]) -> dict[int, str]:
    return {interview_id: body_hash(base_url, payload(body)) for interview_id, body in bodies.items()}


@pytest.mark.parametrize("operator", ["sql_transfer", "bulk_operator"])
def test_unchanged_rows_are_skipped_and_exactly_the_changed_ones_are_sent(
    operator: str,
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator, requests_per_minute=FAST)
    source.fill(ROWS)
    make = transfer if operator == "sql_transfer" else bulk
    base_url = hindsight_emulator.base_url

    first = run(make(source, ledger_db))
    assert first.error is None
    assert_summary(first.summary, succeeded=ROWS, unchanged=0)
    assert_sent_exactly(hindsight_emulator, source.bodies())
    assert ledger_db.hashes() == {
        interview_id: body_hash(base_url, request.body) for interview_id, request in sent(hindsight_emulator).items()
    }
    assert ledger_db.hashes() == expected_hashes(base_url, source.bodies())

    hindsight_emulator.reset_requests()
    second = run(make(source, ledger_db))
    assert second.error is None
    assert_summary(second.summary, succeeded=0, unchanged=ROWS)
    assert_only_the_key_check(hindsight_emulator)

    changed = sorted(random.Random(7).sample(range(1, ROWS + 1), ROWS // 100))
    source.change(changed)
    third = run(make(source, ledger_db))
    assert third.error is None
    assert_summary(third.summary, succeeded=len(changed), unchanged=ROWS - len(changed))
    assert_sent_exactly(hindsight_emulator, source.bodies(changed))
    assert all(body["contact_context"]["notes"].endswith(" (updated)") for body in source.bodies(changed).values())
    assert ledger_db.hashes() == expected_hashes(base_url, source.bodies())
    for interview_id, body in source.bodies(changed).items():
        assert hindsight_emulator.interview(interview_id)["contact_context"] == body["contact_context"]


def test_failed_rows_are_forgotten_and_sent_again(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 and a 500 past its retries: not recorded (the old entry goes), so the next run sends them."""
    point_hindsight(monkeypatch, hindsight_emulator, max_retries=1)
    source.fill(40)
    assert run(transfer(source, ledger_db)).error is None
    old_hashes = ledger_db.hashes()
    source.change([7, 9, 11])
    hindsight_emulator.reset_requests()
    hindsight_emulator.inject_status(404, interview_request_id=7)
    hindsight_emulator.inject_status(500, interview_request_id=9, times=2)  # the first try and its one retry

    failed = run(transfer(source, ledger_db, max_retry_wait=0.05))

    assert failed.error is not None and "2 of 40 rows failed" in str(failed.error)
    assert_summary(failed.summary, succeeded=1, unchanged=37, failed=2)
    assert {(f["interview_request_id"], f["status_code"]) for f in failed.summary["failures"]} == {(7, 404), (9, 500)}
    paths = sorted(request.path for request in hindsight_emulator.requests)
    assert paths == ["/api/v1/interviews/11", "/api/v1/interviews/7", "/api/v1/interviews/9", "/api/v1/interviews/9"]
    assert [request.status for request in hindsight_emulator.requests if request.path.endswith("/9")] == [500, 500]
    hashes = ledger_db.hashes()
    assert 7 not in hashes and 9 not in hashes, "a failed row is not recorded, and its old entry is deleted"
    assert hashes[11] == body_hash(hindsight_emulator.base_url, payload(source.bodies([11])[11])) != old_hashes[11]
    assert len(hashes) == 38, "the delivered rows were recorded although the task failed"

    hindsight_emulator.reset_requests()
    retried = run(transfer(source, ledger_db))
    assert retried.error is None
    assert_summary(retried.summary, succeeded=2, unchanged=38)
    assert_sent_exactly(hindsight_emulator, source.bodies([7, 9]))
    assert ledger_db.hashes() == expected_hashes(hindsight_emulator.base_url, source.bodies())


def test_a_changed_row_that_timed_out_is_sent_again_even_after_the_warehouse_reverts_it(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a timeout nobody knows whether Hindsight applied the new body: the old entry must not look current."""
    source.fill(10)
    assert run(transfer(source, ledger_db)).error is None
    original = source.bodies([5])[5]
    source.set_notes({5: "Moved to the enterprise plan."})
    hindsight_emulator.reset_requests()
    point_hindsight(monkeypatch, hindsight_emulator, max_retries=0, timeout=0.5)  # only row 5 is sent
    hindsight_emulator.inject_delay(2.0, interview_request_id=5)

    timed_out = run(transfer(source, ledger_db, max_failures=1))

    assert timed_out.error is None
    assert_summary(timed_out.summary, succeeded=0, unchanged=9, failed=1)
    assert [(f["interview_request_id"], f["code"]) for f in timed_out.summary["failures"]] == [(5, "timeout")]
    deadline = time.monotonic() + 10
    while [request.status for request in hindsight_emulator.requests] != [200] and time.monotonic() < deadline:
        time.sleep(0.02)
    stored = hindsight_emulator.interview(5)["contact_context"]
    assert stored["notes"] == "Moved to the enterprise plan.", "the API applied it after the client gave up"
    assert 5 not in ledger_db.hashes()

    source.set_notes({5: original["contact_context"]["notes"]})  # the warehouse reverts the change
    hindsight_emulator.reset_requests()
    point_hindsight(monkeypatch, hindsight_emulator)
    reverted = run(transfer(source, ledger_db))

    assert reverted.error is None
    assert_summary(reverted.summary, succeeded=1, unchanged=9)
    assert_sent_exactly(hindsight_emulator, {5: original})
    assert hindsight_emulator.interview(5)["contact_context"] == original["contact_context"]
    assert ledger_db.hashes() == expected_hashes(hindsight_emulator.base_url, source.bodies())


FLAGS = [(True, True), ("True", True), ("yes", True), ("1", True), (False, False), ("false", False), ("", False)]


def test_full_refresh_resends_every_row_and_takes_what_templates_render(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    source.fill(20)
    assert run(transfer(source, ledger_db)).error is None
    for value, resends in FLAGS:
        hindsight_emulator.reset_requests()
        synced_before = ledger_db.synced_at()
        outcome = run(transfer(source, ledger_db, full_refresh=value))
        assert outcome.error is None, value
        if resends:
            assert_summary(outcome.summary, succeeded=20, unchanged=0)
            assert_sent_exactly(hindsight_emulator, source.bodies())
            synced_after = ledger_db.synced_at()
            assert all(synced_after[key] > synced_before[key] for key in range(1, 21)), "the ledger is rewritten"
        else:
            assert_summary(outcome.summary, succeeded=0, unchanged=20)
            assert_only_the_key_check(hindsight_emulator)
            assert ledger_db.synced_at() == synced_before
    assert ledger_db.hashes() == expected_hashes(hindsight_emulator.base_url, source.bodies())

    hindsight_emulator.reset_requests()
    refused = run(transfer(source, ledger_db, full_refresh="maybe"))
    assert isinstance(refused.error, HindsightValidationError)
    assert refused.error.field == "full_refresh"
    assert "full_refresh must be true or false" in str(refused.error) and "'maybe'" in str(refused.error)
    assert hindsight_emulator.request_count == 0


def test_another_base_url_gets_every_row_again(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator_factory: Any
) -> None:
    source.fill(20)
    first = hindsight_emulator_factory()
    assert run(transfer(source, ledger_db)).error is None
    second = hindsight_emulator_factory()  # hindsight_default now points at another Hindsight

    moved = run(transfer(source, ledger_db))

    assert moved.error is None
    assert_summary(moved.summary, succeeded=20, unchanged=0)
    assert_sent_exactly(second, source.bodies())
    assert first.request_count == 20
    assert ledger_db.hashes() == expected_hashes(second.base_url, source.bodies())
    second.reset_requests()
    assert_summary(run(transfer(source, ledger_db)).summary, succeeded=0, unchanged=20)
    assert_only_the_key_check(second)


def test_sync_id_defaults_to_dag_and_task_and_each_one_keeps_its_own_rows(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    source.fill(20)
    assert_summary(run(transfer(source, ledger_db)).summary, succeeded=20, unchanged=0)
    assert ledger_db.sync_ids() == {DEFAULT_SYNC_ID: 20}
    for other in ({"sync_id": "crm_contacts"}, {"dag_id": "another_dag"}, {"task_id": "another_task"}):
        hindsight_emulator.reset_requests()
        assert_summary(run(transfer(source, ledger_db, **other)).summary, succeeded=20, unchanged=0)
        assert_sent_exactly(hindsight_emulator, source.bodies())
    assert ledger_db.sync_ids() == {
        DEFAULT_SYNC_ID: 20,
        "crm_contacts": 20,
        "another_dag.push_changes": 20,
        "warehouse_sync.another_task": 20,
    }
    crm_hashes = ledger_db.hashes("crm_contacts")
    source.change([3])
    hindsight_emulator.reset_requests()
    assert_summary(run(transfer(source, ledger_db)).summary, succeeded=1, unchanged=19)
    assert_sent_exactly(hindsight_emulator, source.bodies([3]))
    assert ledger_db.hashes("crm_contacts") == crm_hashes
    hindsight_emulator.reset_requests()
    assert_summary(run(transfer(source, ledger_db, sync_id="crm_contacts")).summary, succeeded=1, unchanged=19)


def test_dry_run_counts_what_would_be_sent_and_writes_nothing(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    source.fill(30)
    dry = run(transfer(source, ledger_db, dry_run=True))
    assert dry.error is None
    assert dry.summary == {"total": 30, "succeeded": 30, "failed": 0, "unchanged": 0, "failures": [], "dry_run": True}
    assert hindsight_emulator.request_count == 0
    assert not ledger_db.table_exists(), "a dry run does not create the ledger table"

    assert run(transfer(source, ledger_db)).error is None
    source.change([4, 5])
    every_row = f"SELECT * FROM {TABLE} ORDER BY interview_request_id"
    ledger_before = ledger_db.query(every_row)
    hindsight_emulator.reset_requests()
    for options, would_send in (({}, 2), ({"full_refresh": True}, 30)):
        dry = run(transfer(source, ledger_db, dry_run=True, **options))
        assert dry.error is None
        assert_summary(dry.summary, succeeded=would_send, unchanged=30 - would_send)
        assert dry.summary["dry_run"] is True
    assert hindsight_emulator.request_count == 0
    assert ledger_db.query(every_row) == ledger_before


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_source_and_ledger_in_one_database(
    database: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    hindsight_emulator: HindsightEmulator,
) -> None:
    """The example's set-up: one connection for the rows and the ledger; reading and recording interleave."""
    if database == "sqlite":
        path = tmp_path / "warehouse.db"
        ledger = sqlite_ledger(path, monkeypatch, conn_id="warehouse")
        source = Source("warehouse", lambda: sqlite3.connect(path))
    else:
        import psycopg

        postgres: PostgresDatabase = request.getfixturevalue("postgres_database")
        ledger = postgres_ledger(postgres, monkeypatch, conn_id="warehouse")
        source = Source("warehouse", lambda: psycopg.connect(**postgres.params), placeholder="%s")
    point_hindsight(monkeypatch, hindsight_emulator, requests_per_minute=FAST)
    source.fill(700)

    first = run(transfer(source, ledger, batch_size=50))

    assert first.error is None
    assert_summary(first.summary, succeeded=700, unchanged=0)
    assert_sent_exactly(hindsight_emulator, source.bodies())
    assert ledger.hashes() == expected_hashes(hindsight_emulator.base_url, source.bodies())
    if database == "sqlite":
        assert ledger.query("PRAGMA journal_mode") == [("wal",)]
    changed = list(range(5, 700, 97))
    source.change(changed)
    hindsight_emulator.reset_requests()
    second = run(transfer(source, ledger, batch_size=50))
    assert second.error is None
    assert_summary(second.summary, succeeded=len(changed), unchanged=700 - len(changed))
    assert_sent_exactly(hindsight_emulator, source.bodies(changed))


def test_a_repeated_id_does_not_unrecord_the_row_that_was_sent(
    ledger_db: LedgerDatabase, hindsight_emulator_factory: Any
) -> None:
    """The repeat is refused at once while the first row is still in flight; the first row is still recorded."""
    emulator = hindsight_emulator_factory(latency=0.2)
    rows = [
        {"interview_request_id": 5, "objective": "Pricing"},
        {"interview_request_id": 5, "objective": "Onboarding"},
        {"interview_request_id": 6, "objective": "Pricing"},
    ]

    def push() -> Outcome:
        return run(
            in_dag(
                HindsightBulkUpdateInterviewsOperator, updates=rows, ledger_conn_id=ledger_db.conn_id, max_failures=1
            )
        )

    first = push()
    assert first.error is None
    assert_summary(first.summary, succeeded=2, unchanged=0, failed=1)
    assert [(f["row"], f["code"]) for f in first.summary["failures"]] == [(2, "duplicate_id")]
    assert_sent_exactly(emulator, {5: {"objective": "Pricing"}, 6: {"objective": "Pricing"}})
    assert ledger_db.hashes() == expected_hashes(
        emulator.base_url, {5: {"objective": "Pricing"}, 6: {"objective": "Pricing"}}
    )
    emulator.reset_requests()
    second = push()
    assert_summary(second.summary, succeeded=0, unchanged=2, failed=1)
    assert_only_the_key_check(emulator)
