"""A redirected GET while landing (SQLite and PostgreSQL, the emulator's redirect fault): the run stops at
the first one, lands nothing and sends no follow-up GET; once the host is fixed, everything lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_hindsight.exceptions import HindsightPermanentError
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from tests.helpers import Executed
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "landing_warehouse"
IDS = list(range(1, 21))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, CONN_ID, sync_id="-")


def land(backend: Backend) -> Executed:
    return Executed(
        HindsightInterviewsToSqlOperator(
            task_id="land",
            sql_conn_id=CONN_ID,
            ids_sql="SELECT interview_request_id FROM deals ORDER BY interview_request_id",
            max_workers=1,
        )
    )


def test_a_redirected_get_lands_nothing_and_is_not_followed(
    backend: Backend, hindsight_emulator: HindsightEmulator
) -> None:
    backend.run("CREATE TABLE deals (interview_request_id BIGINT)")
    for interview_id in IDS:
        hindsight_emulator.add_interview(interview_id, contact_name="Ana", objective="Lost to Acme")
        backend.run(f"INSERT INTO deals VALUES ({interview_id})")
    hindsight_emulator.inject_redirect(302, method="GET", times=1000)

    redirected = land(backend)

    assert isinstance(redirected.error, HindsightPermanentError)
    assert redirected.error.code == "stopped_redirect"
    assert redirected.summary["failed"] == len(IDS)
    assert [(request.method, request.status) for request in hindsight_emulator.requests] == [("GET", 302)]
    table = "hindsight_transcripts"
    assert not backend.table_exists(table) or backend.query(f"SELECT COUNT(*) FROM {table}") == [(0,)]

    hindsight_emulator.clear_faults()
    fixed = land(backend)

    assert fixed.error is None
    assert fixed.summary["pending"] == len(IDS)
    assert backend.query("SELECT COUNT(*) FROM hindsight_transcripts") == [(len(IDS),)]
