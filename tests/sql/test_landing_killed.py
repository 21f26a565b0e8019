"""A landing run killed with SIGKILL mid-run loses at most one batch, and its rerun lands the rest."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import connection_variables, forkserver_preloading, kill_child, start_until
from tests.sql.landing_killable import run_landing
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "landing_killed_warehouse"
INTERVIEWS = 400
KILL_AFTER = 150
"""Requests the emulator receives before the run is killed: several batches in."""
BATCH = 20
MAX_WORKERS = 4
IN_FLIGHT = 2 * MAX_WORKERS
"""The engine has at most this many ids submitted and not yet accounted for."""


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.ForkServerContext:
    return forkserver_preloading("tests.sql.landing_killable")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, CONN_ID, sync_id="-")


def test_a_killed_run_loses_at_most_one_batch_and_the_rerun_lands_the_rest(
    forkserver: multiprocessing.context.ForkServerContext,
    backend: Backend,
    hindsight_emulator_factory: Any,
    tmp_path: Path,
) -> None:
    emulator = hindsight_emulator_factory(latency=0.01, requests_per_minute=15_000)
    for interview_id in range(1, INTERVIEWS + 1):
        emulator.add_interview(interview_id, status="completed")
    backend.run("CREATE TABLE deals (interview_request_id BIGINT)")
    backend.run(
        "INSERT INTO deals VALUES " + ", ".join(f"({interview_id})" for interview_id in range(1, INTERVIEWS + 1))
    )
    arguments = {
        "task_id": "land",
        "sql_conn_id": CONN_ID,
        "ids_sql": "SELECT interview_request_id FROM deals ORDER BY interview_request_id",
        "batch_size": BATCH,
        "max_workers": MAX_WORKERS,
    }
    connections = connection_variables()
    log = tmp_path / "child.log"
    child = forkserver.Process(target=run_landing, args=(arguments, connections, str(log)))
    start_until(child, lambda: emulator.request_count >= KILL_AFTER, f"{KILL_AFTER} requests", log)
    assert kill_child(child) == -signal.SIGKILL
    answered = emulator.request_count

    (landed,) = backend.query("SELECT COUNT(*) FROM hindsight_transcripts")[0:1]
    assert KILL_AFTER - BATCH - IN_FLIGHT <= landed[0] < INTERVIEWS
    assert landed[0] >= answered - BATCH - IN_FLIGHT - MAX_WORKERS

    emulator.reset_requests()
    child = forkserver.Process(target=run_landing, args=(arguments, connections, str(log)))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0, log.read_text()[-3000:]
    assert emulator.request_count == INTERVIEWS - landed[0], "completed rows are not fetched again"
    assert backend.query("SELECT COUNT(*) FROM hindsight_transcripts")[0][0] == INTERVIEWS
