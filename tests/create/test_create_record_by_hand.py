"""A create the ledger could not record: the failure prints the SQL that records it, and that SQL works."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import pytest

from airflow_provider_hindsight.ledgers import dialect as ledger_dialect
from airflow_provider_hindsight.ledgers import sql as ledger_sql
from airflow_provider_hindsight.ledgers.interviews import InterviewLedger
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.support.ledger_db import LedgerDatabase
from tests.sync.helpers import run

from .helpers import TABLE, counts, creator, email, point_hindsight, posts, rows, states

KEY = "deal-1:O'Brien"


@contextmanager
def ledger_locked(ledger_db: LedgerDatabase) -> Iterator[None]:
    """Another session holds the ledger table's write lock: the ledger's writes give up."""
    with closing(ledger_db.connect()) as holder:
        if ledger_db.backend == "sqlite":
            holder.execute("BEGIN IMMEDIATE")
        else:
            holder.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            holder.rollback()


def test_a_create_the_ledger_could_not_record_prints_the_sql_that_records_it(
    hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, ledger_db: LedgerDatabase
) -> None:
    emulator: HindsightEmulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, max_retries=1)
    monkeypatch.setattr(ledger_dialect, "POSTGRES_LOCK_TIMEOUT_MS", 100)
    monkeypatch.setattr(ledger_dialect, "SQLITE_BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(ledger_sql, "BUSY_PAUSE_SECONDS", 0.01)
    record_created = InterviewLedger.record_created

    def record_while_locked(self: InterviewLedger, *args: Any, **kwargs: Any) -> None:
        with ledger_locked(ledger_db):
            record_created(self, *args, **kwargs)

    monkeypatch.setattr(InterviewLedger, "record_created", record_while_locked)

    interviews = [{**rows([1])[0], "request_key": KEY}]  # a quote in the key: the SQL's literal escapes it
    outcome = run(creator(interviews, ledger_db))

    (failure,) = outcome.summary["failures"]
    assert failure["code"] == "ledger_write_failed"
    assert "locked" in failure["message"] or "lock timeout" in failure["message"], "the ledger's error is quoted"
    assert email(1) not in failure["message"]
    assert states(ledger_db) == {KEY: "pending"}
    found = re.search(r"Record it by running (UPDATE .*?;)", failure["message"])
    assert found is not None, failure["message"]
    (interview,) = emulator.created_interviews()
    assert f"interview_request_id = {interview['interview_request_id']}" in found.group(1)

    monkeypatch.setattr(InterviewLedger, "record_created", record_created)
    ledger_db.run(found.group(1))  # what the user runs by hand

    assert states(ledger_db) == {KEY: "created"}
    emulator.reset_requests()
    again = run(creator(interviews, ledger_db))
    assert counts(again.summary) == (1, 0, 1, 0, 0)
    assert posts(emulator) == {}
    ((recorded_id, deal_id, created_at),) = ledger_db.query(
        f"SELECT interview_request_id, deal_id, created_at FROM {TABLE} WHERE state = 'created'"
    )
    assert (recorded_id, deal_id) == (interview["interview_request_id"], interview.get("deal_id"))
    assert created_at is not None
