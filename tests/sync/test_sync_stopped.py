"""A run that stops early (a wrong key, the API down) keeps the ledger: the next run sends only what is owed."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import HindsightAuthError
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.sync.helpers import (
    LedgerDatabase,
    Source,
    assert_only_the_key_check,
    assert_summary,
    point_hindsight,
    request_id,
    run,
    sent,
    transfer,
)

ROWS = 300
WORKERS = 4


def up_to_date(source: Source, ledger_db: LedgerDatabase) -> dict[int, Any]:
    """Fill the source, sync it once; return the ledger's rows (id -> hash and synced_at)."""
    source.fill(ROWS)
    assert run(transfer(source, ledger_db, max_workers=WORKERS)).error is None
    return ledger_rows(ledger_db)


def ledger_rows(ledger_db: LedgerDatabase) -> dict[int, Any]:
    rows = ledger_db.query(
        f"SELECT interview_request_id, body_sha256, synced_at FROM hindsight_sync_ledger WHERE sync_id = "
        f"'{ledger_db.sync_id}' AND interview_request_id > 0"
    )
    return {int(interview_id): (digest, str(synced_at)) for interview_id, digest, synced_at in rows}


def test_a_full_refresh_with_a_wrong_key_stops_at_once_and_deletes_nothing(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator)
    before = up_to_date(source, ledger_db)
    assert len(before) == ROWS
    hindsight_emulator.reset_requests()
    connection = json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps({**connection, "password": "a-wrong-key"}))

    refused = run(transfer(source, ledger_db, full_refresh=True, max_workers=WORKERS))

    assert refused.error is not None and getattr(refused.error, "code", None) == "stopped_auth"
    assert 1 <= hindsight_emulator.request_count <= WORKERS + 1
    assert hindsight_emulator.status_counts == {401: hindsight_emulator.request_count}
    assert ledger_rows(ledger_db) == before, "a stopped run deletes nor rewrites any entry"

    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))
    hindsight_emulator.reset_requests()
    ordinary = run(transfer(source, ledger_db, max_workers=WORKERS))
    assert ordinary.error is None
    assert_summary(ordinary.summary, succeeded=0, unchanged=ROWS)
    assert_only_the_key_check(hindsight_emulator)


@pytest.mark.parametrize("full_refresh", [True, False], ids=["full_refresh", "change_only"])
def test_the_api_down_mid_run_keeps_every_entry_the_run_did_not_change(
    full_refresh: bool,
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows 1-100 go through; from row 101 the API answers 503 to everything, and the breaker stops the run."""
    point_hindsight(monkeypatch, hindsight_emulator, max_retries=1)
    before = up_to_date(source, ledger_db)
    changed = [] if full_refresh else list(range(1, ROWS + 1, 3))  # a change-only run owes every third row
    source.change(changed)
    hindsight_emulator.reset_requests()
    for interview_id in range(101, ROWS + 1):
        hindsight_emulator.inject_status(503, times=5, interview_request_id=interview_id)

    down = run(transfer(source, ledger_db, full_refresh=full_refresh, max_workers=WORKERS, max_retry_wait=0.01))

    assert down.error is not None and getattr(down.error, "code", None) == "stopped_outage"
    received = {request_id(request) for request in hindsight_emulator.requests}
    failed = {interview_id for interview_id in received if interview_id > 100}
    assert 1 <= len(failed) <= 10 + 2 * WORKERS
    after = ledger_rows(ledger_db)
    untouched = set(range(101, ROWS + 1)) - (failed & set(changed))
    assert {key: after[key] for key in untouched} == {key: before[key] for key in untouched}, (
        "rows not sent, and failed resends of the body the ledger holds, keep their entries"
    )
    assert not set(after) & failed & set(changed), "a changed row that was sent and failed is forgotten"

    hindsight_emulator.clear_faults()
    hindsight_emulator.reset_requests()
    ordinary = run(transfer(source, ledger_db, max_workers=WORKERS))
    assert ordinary.error is None
    owed = {key for key in changed if key > 100}
    assert_summary(ordinary.summary, succeeded=len(owed), unchanged=ROWS - len(owed))
    assert set(sent(hindsight_emulator)) == owed


def test_a_run_that_owes_nothing_checks_the_key_once_and_fails_on_a_wrong_one(
    source: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator)
    before = up_to_date(source, ledger_db)
    connection = json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps({**connection, "password": "a-wrong-key"}))
    hindsight_emulator.reset_requests()

    refused = run(transfer(source, ledger_db))

    assert_only_the_key_check(hindsight_emulator)
    assert hindsight_emulator.status_counts == {401: 1}
    assert isinstance(refused.error, HindsightAuthError) and isinstance(refused.error, AirflowFailException)
    message = str(refused.error)
    assert "Nothing needed sending, but Hindsight refused the API key of the connection 'hindsight_default'" in message
    assert "API key field" in message
    assert ledger_rows(ledger_db) == before

    dry = run(transfer(source, ledger_db, dry_run=True))  # a dry run sends nothing at all, not even the check
    assert dry.error is None
    assert hindsight_emulator.request_count == 1
