"""A table from an earlier version gains this version's columns on first use, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
import logging
import threading
from pathlib import Path

import pytest

from airflow_provider_hindsight.ledgers.faults import HindsightLedgerError
from airflow_provider_hindsight.ledgers.interviews import InterviewLedger
from airflow_provider_hindsight.ledgers.transcripts import TranscriptTable
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "evolving_warehouse"
TABLE = "hindsight_transcripts"
EARLIER_TRANSCRIPTS = (
    "CREATE TABLE hindsight_transcripts (interview_request_id BIGINT NOT NULL, status VARCHAR(16) NOT NULL, "
    "contact_id VARCHAR(255), deal_id VARCHAR(255), survey_url VARCHAR(2048), objective TEXT, "
    "email_sent_at TIMESTAMP, interview_created_at TIMESTAMP, transcript_document_id VARCHAR(255), "
    "transcript_created_at TIMESTAMP, transcript TEXT, fetched_at TIMESTAMP NOT NULL, "
    "PRIMARY KEY (interview_request_id))"
)
"""The landing table as the previous release created it."""
EARLIER_ROW = (
    "INSERT INTO hindsight_transcripts (interview_request_id, status, email_sent_at, fetched_at) "
    "VALUES (7, 'sent', '2026-11-30 09:00:00', '2026-12-01 10:00:00')"
)
NEW_COLUMNS = ("polls", "next_poll_at", "polling_stopped_at")
LOGGER = "airflow_provider_hindsight.ledgers"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, CONN_ID, sync_id="-")


def columns(backend: Backend, table: str = TABLE) -> list[str]:
    if backend.backend == "sqlite":
        return [str(row[1]) for row in backend.query(f"PRAGMA table_info({table})")]
    return [
        str(name)
        for (name,) in backend.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        )
    ]


def test_an_earlier_landing_table_gains_the_polling_columns_and_keeps_its_rows(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.run(EARLIER_TRANSCRIPTS, EARLIER_ROW)
    caplog.set_level(logging.INFO, logger=LOGGER)

    with TranscriptTable(sql_conn_id=CONN_ID) as table:
        table.prepare(create=True)
        old = table.landed([7, 8])
        stopped = datetime.datetime(2026, 12, 31, 0, 0, 0)
        answer = {"interview_request_id": 8, "status": "sent", "email_sent_at": "2026-12-01T08:00:00Z"}
        fetched = table.now()
        table.land([table.row(answer, fetched, polls=3, next_poll_at=stopped, polling_stopped_at=stopped)])
        new = table.landed([8])

    assert columns(backend)[-3:] == list(NEW_COLUMNS)
    said = [record.getMessage() for record in caplog.records]
    assert (
        f"Added the columns polls, next_poll_at, polling_stopped_at to the transcripts table {TABLE} on "
        f"'{CONN_ID}' (a table from an earlier version)." in said
    )
    assert list(old) == [7], "the earlier row is kept"
    assert (old[7].status, old[7].polls, old[7].next_poll_at, old[7].polling_stopped_at) == ("sent", None, None, None)
    assert old[7].started_at == datetime.datetime(2026, 11, 30, 9, 0, 0)
    assert (new[8].polls, new[8].next_poll_at, new[8].polling_stopped_at) == (3, stopped, stopped)
    assert new[8].started_at == datetime.datetime(2026, 12, 1, 8, 0, 0), "the API's Z time, stored as naive UTC"

    caplog.clear()
    with TranscriptTable(sql_conn_id=CONN_ID) as again:
        again.prepare(create=True)
    assert not [record for record in caplog.records if "Added the columns" in record.getMessage()]


def test_a_dry_run_leaves_an_earlier_table_as_it_is_and_reads_the_new_columns_as_empty(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.run(EARLIER_TRANSCRIPTS, EARLIER_ROW)
    caplog.set_level(logging.INFO, logger=LOGGER)
    before = columns(backend)

    with TranscriptTable(sql_conn_id=CONN_ID) as table:
        table.prepare(create=False)
        landed = table.landed([7])

    assert columns(backend) == before
    assert landed[7].polls is None and landed[7].status == "sent"
    said = [record.getMessage() for record in caplog.records]
    assert any("lacks the columns polls, next_poll_at, polling_stopped_at" in line for line in said)


def test_two_runs_adding_the_columns_at_once_both_go_on(backend: Backend) -> None:
    backend.run(EARLIER_TRANSCRIPTS)
    start, errors = threading.Barrier(2), []

    def prepare() -> None:
        try:
            with TranscriptTable(sql_conn_id=CONN_ID) as table:
                start.wait(timeout=30)
                table.prepare(create=True)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert columns(backend)[-3:] == list(NEW_COLUMNS)


def test_a_table_with_a_column_this_version_does_not_know_is_refused(backend: Backend) -> None:
    backend.run(EARLIER_TRANSCRIPTS, f"ALTER TABLE {TABLE} ADD COLUMN notes TEXT")
    with TranscriptTable(sql_conn_id=CONN_ID) as table, pytest.raises(HindsightLedgerError) as caught:
        table.prepare(create=True)
    assert f"the table '{TABLE}' on connection '{CONN_ID}' is not a Hindsight transcripts table" in str(caught.value)
    assert "polls" not in columns(backend)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_connection_that_may_not_alter_the_table_fails_first_printing_the_statements(backend: Backend) -> None:
    backend.run(EARLIER_TRANSCRIPTS)
    ((database,),) = backend.query("SELECT current_database()")
    role = f"lander_{database}"  # roles belong to the server: one per test database
    backend.run(f"CREATE ROLE {role} LOGIN", f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {role}")
    conn_id = backend.set_connection("lander", login=role)

    with TranscriptTable(sql_conn_id=conn_id) as table, pytest.raises(HindsightLedgerError) as caught:
        table.prepare(create=True)

    message = str(caught.value)
    assert f"the transcripts table '{TABLE}' on connection 'lander' is from an earlier version" in message
    assert "lacks the columns polls, next_poll_at, polling_stopped_at" in message
    statements = [
        f"ALTER TABLE {TABLE} ADD COLUMN polls INTEGER;",
        f"ALTER TABLE {TABLE} ADD COLUMN next_poll_at TIMESTAMP;",
        f"ALTER TABLE {TABLE} ADD COLUMN polling_stopped_at TIMESTAMP;",
    ]
    assert all(f"\n    {statement}" in message for statement in statements)
    assert "polls" not in columns(backend), "nothing was changed"

    backend.run(*(statement.rstrip(";") for statement in statements))  # the owner runs what it printed
    with TranscriptTable(sql_conn_id=conn_id) as table:
        table.prepare(create=True)
        assert table.landed([1]) == {}


def test_an_earlier_interview_ledger_gains_claimed_by(backend: Backend) -> None:
    backend.run(
        "CREATE TABLE hindsight_interviews (request_key VARCHAR(256) NOT NULL, state VARCHAR(16) NOT NULL, "
        "interview_request_id BIGINT, contact_email VARCHAR(254), deal_id VARCHAR(256), contact_id VARCHAR(256), "
        "survey_url VARCHAR(2048), survey_token VARCHAR(512), api_status VARCHAR(32), error_code VARCHAR(64), "
        "error_message VARCHAR(1000), attempted_at TIMESTAMP, created_at TIMESTAMP, PRIMARY KEY (request_key))",
        "INSERT INTO hindsight_interviews (request_key, state, interview_request_id) VALUES ('D-1:C-1', 'created', 5)",
    )
    with InterviewLedger(ledger_conn_id=CONN_ID) as ledger:
        ledger.prepare(create=True)
        entry = ledger.lookup(["D-1:C-1"])["D-1:C-1"]
    assert "claimed_by" in columns(backend, "hindsight_interviews")
    assert (entry.state, entry.interview_request_id, entry.claimed_by) == ("created", 5, None)
