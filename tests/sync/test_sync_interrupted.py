"""Change-only sync when runs are killed, run at once, or run as DAG runs."""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.bulk.changes import CHECKPOINT_ROWS
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import connection_variables, forkserver_preloading, start_until, task_states, xcom_value
from tests.sync.helpers import (
    DEFAULT_SYNC_ID,
    SQL,
    TABLE,
    LedgerDatabase,
    Source,
    assert_sent_exactly,
    assert_summary,
    body_hash,
    payload,
    point_hindsight,
    request_id,
    run,
    sent,
    sqlite_ledger,
    transfer,
)
from tests.sync.killable import run_transfer

KILL_ROWS = 400
"""Rows of a run that is killed: fewer than one ledger look-up batch (500), so the look-up is over before sending."""
KILL_AFTER = 280
"""Requests the emulator receives before the run is killed: past the first checkpoint (``CHECKPOINT_ROWS``)."""
MAX_WORKERS = 4
IN_FLIGHT = 2 * MAX_WORKERS
"""The engine has at most this many rows submitted and not yet accounted for."""
REQUESTS_AT_THE_SIGNAL = 0
"""What the emulator had answered when :func:`run_and_stop` sent its signal."""


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.ForkServerContext:
    return forkserver_preloading("tests.sync.killable")


@pytest.fixture
def emulator(hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, source: Source) -> HindsightEmulator:
    """What a run that is killed talks to: 250 requests a second over 4 workers, ``KILL_ROWS`` source rows."""
    emulator = hindsight_emulator_factory(latency=0.02)
    point_hindsight(monkeypatch, emulator, requests_per_minute=15_000)
    source.fill(KILL_ROWS)
    return emulator


def operator_arguments(source: Source, ledger: LedgerDatabase) -> dict[str, Any]:
    return {
        "task_id": "push_changes",
        "sql_conn_id": source.conn_id,
        "sql": SQL,
        "context_columns": ["title", "notes"],
        "ledger_conn_id": ledger.conn_id,
        "sync_id": DEFAULT_SYNC_ID,
        "max_workers": MAX_WORKERS,
    }


def run_and_stop(
    forkserver: multiprocessing.context.ForkServerContext,
    arguments: dict[str, Any],
    emulator: HindsightEmulator,
    stop_signal: int,
    log: Path,
    **options: Any,
) -> int:
    """Run the transfer in a child process, send it ``stop_signal`` at ``KILL_AFTER`` requests; its exit code.

    ``options`` go to :func:`~tests.sync.killable.run_transfer` (``dag_run_start``, ``on_kill_returns``).
    """
    child = forkserver.Process(target=run_transfer, args=(arguments, connection_variables(), str(log)), kwargs=options)
    start_until(child, lambda: emulator.request_count >= KILL_AFTER, f"{KILL_AFTER} requests", log)
    assert child.pid is not None
    os.kill(child.pid, stop_signal)
    global REQUESTS_AT_THE_SIGNAL
    REQUESTS_AT_THE_SIGNAL = emulator.request_count
    child.join(timeout=30)
    deadline = time.monotonic() + 10
    while emulator.open_connections and time.monotonic() < deadline:  # requests it was answering when the child died
        time.sleep(0.005)
    assert child.exitcode is not None
    return child.exitcode


@pytest.mark.parametrize(
    ("ledger_db", "stop_signal", "bound"),
    [
        ("sqlite", signal.SIGKILL, CHECKPOINT_ROWS + IN_FLIGHT),
        ("postgres", signal.SIGKILL, CHECKPOINT_ROWS + IN_FLIGHT),
        ("sqlite", signal.SIGTERM, IN_FLIGHT),  # on_kill records what was delivered
    ],
    indirect=["ledger_db"],
    ids=["sqlite-SIGKILL", "postgres-SIGKILL", "sqlite-SIGTERM"],
)
def test_a_killed_run_and_its_retry_resend_at_most_a_checkpoint_window_and_what_was_in_flight(
    stop_signal: int,
    bound: int,
    forkserver: multiprocessing.context.ForkServerContext,
    source: Source,
    ledger_db: LedgerDatabase,
    emulator: HindsightEmulator,
    tmp_path: Path,
) -> None:
    arguments = operator_arguments(source, ledger_db)

    exit_code = run_and_stop(forkserver, arguments, emulator, stop_signal, tmp_path / "child.log")

    assert exit_code == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 143)
    first = {request_id(request): request for request in emulator.requests}
    assert KILL_AFTER <= len(first) < KILL_ROWS
    recorded = ledger_db.hashes()
    assert set(recorded) <= set(first), "only delivered rows are recorded"
    for interview_id, digest in recorded.items():
        assert digest == body_hash(emulator.base_url, first[interview_id].body)
    assert len(recorded) >= len(first) - bound

    emulator.reset_requests()
    retry = run(transfer(source, ledger_db, sync_id=DEFAULT_SYNC_ID, max_workers=MAX_WORKERS))

    assert retry.error is None
    second = set(sent(emulator))
    owed = set(range(1, KILL_ROWS + 1)) - set(recorded)
    assert second == owed, "the retry sends exactly what the ledger does not hold"
    assert_summary(retry.summary, succeeded=len(owed), unchanged=len(recorded))
    resent = second & set(first)
    assert len(resent) <= bound, f"{len(resent)} rows sent twice"
    bodies = source.bodies()
    assert {key: emulator.interview(key)["contact_context"] for key in bodies} == {
        key: body["contact_context"] for key, body in bodies.items()
    }
    assert ledger_db.hashes() == {key: body_hash(emulator.base_url, payload(body)) for key, body in bodies.items()}


def test_after_on_kill_only_the_requests_in_flight_go_and_the_retry_resends_at_most_those(
    forkserver: multiprocessing.context.ForkServerContext,
    source: Source,
    ledger_db: LedgerDatabase,
    emulator: HindsightEmulator,
    tmp_path: Path,
) -> None:
    """Airflow 3 calls on_kill on SIGTERM and lets execute go on until its SIGKILL: no new request starts."""
    log = tmp_path / "child.log"

    exit_code = run_and_stop(
        forkserver, operator_arguments(source, ledger_db), emulator, signal.SIGTERM, log, on_kill_returns=True
    )

    assert exit_code == 1, "the run ended by itself, failed: it stopped early"
    assert "the task was killed (on_kill)" in log.read_text()
    first = {request_id(request): request for request in emulator.requests}
    after_the_signal = len(first) - REQUESTS_AT_THE_SIGNAL
    assert 0 <= after_the_signal <= MAX_WORKERS, f"{after_the_signal} requests after on_kill"
    recorded = ledger_db.hashes()
    assert set(recorded) == set(first), "every delivered row was recorded before the run ended"

    emulator.reset_requests()
    retry = run(transfer(source, ledger_db, sync_id=DEFAULT_SYNC_ID, max_workers=MAX_WORKERS))

    assert retry.error is None
    resent = set(sent(emulator)) & set(first)
    assert len(resent) <= MAX_WORKERS
    assert set(sent(emulator)) == set(range(1, KILL_ROWS + 1)) - set(recorded)
    print(f"on_kill: {after_the_signal} requests after SIGTERM, {len(resent)} resent by the retry")


@pytest.mark.parametrize("ledger_db", ["sqlite", "postgres"], indirect=True)
def test_the_retry_of_a_killed_full_refresh_resends_only_what_this_dag_run_has_not_delivered(
    forkserver: multiprocessing.context.ForkServerContext,
    source: Source,
    ledger_db: LedgerDatabase,
    emulator: HindsightEmulator,
    tmp_path: Path,
) -> None:
    assert run(transfer(source, ledger_db, sync_id=DEFAULT_SYNC_ID, max_workers=MAX_WORKERS)).error is None
    before = ledger_db.synced_at()
    emulator.reset_requests()
    dag_run_start = datetime.datetime.now(datetime.timezone.utc)
    arguments = {**operator_arguments(source, ledger_db), "full_refresh": True}

    exit_code = run_and_stop(
        forkserver, arguments, emulator, signal.SIGKILL, tmp_path / "child.log", dag_run_start=dag_run_start.isoformat()
    )

    assert exit_code == -signal.SIGKILL
    first = set(sent(emulator))
    rewritten = {key for key, at in ledger_db.synced_at().items() if at != before[key]}
    assert rewritten <= first and len(rewritten) >= len(first) - (CHECKPOINT_ROWS + IN_FLIGHT)
    emulator.reset_requests()

    retry = run(
        transfer(source, ledger_db, sync_id=DEFAULT_SYNC_ID, max_workers=MAX_WORKERS, full_refresh=True),
        dag_run_start=dag_run_start,
    )

    assert retry.error is None
    second = set(sent(emulator))
    assert second == set(range(1, KILL_ROWS + 1)) - rewritten, "the retry resends what this DAG run has not delivered"
    assert_summary(retry.summary, succeeded=len(second), unchanged=len(rewritten))
    resent = first & second
    assert len(resent) <= CHECKPOINT_ROWS + IN_FLIGHT
    total = len(first) + len(second)
    print(f"full refresh killed at {len(first)} requests: the retry sent {len(second)} ({len(resent)} resent)")
    assert total <= KILL_ROWS + CHECKPOINT_ROWS + IN_FLIGHT

    emulator.reset_requests()
    fresh = run(
        transfer(source, ledger_db, sync_id=DEFAULT_SYNC_ID, max_workers=MAX_WORKERS, full_refresh=True),
        dag_run_start=datetime.datetime.now(datetime.timezone.utc),
    )
    assert fresh.error is None
    assert set(sent(emulator)) == set(range(1, KILL_ROWS + 1)), "a fresh DAG run's full refresh resends everything"


def test_two_runs_of_one_sync_id_at_once_both_finish_and_lose_nothing(
    forkserver: multiprocessing.context.ForkServerContext,
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Two task processes of one sync_id over 400 rows each, 200 of them in both, started together."""
    emulator = hindsight_emulator_factory(latency=0.02)
    point_hindsight(monkeypatch, emulator, requests_per_minute=60_000)
    source.fill(600)
    connections = connection_variables()
    children = {}
    for name, (low, high) in {"first": (1, 400), "second": (201, 600)}.items():
        sql = (
            "SELECT interview_request_id, contact_name, title, notes FROM enrichment "
            f"WHERE interview_request_id BETWEEN {low} AND {high} ORDER BY interview_request_id"
        )
        arguments = {**operator_arguments(source, ledger_db), "task_id": f"push_{name}", "sql": sql}
        files = (str(tmp_path / f"{name}.log"), str(tmp_path / f"{name}.json"))
        children[name] = forkserver.Process(target=run_transfer, args=(arguments, connections, *files))
    for child in children.values():
        child.start()
    for child in children.values():
        child.join(timeout=120)

    for name, child in children.items():
        assert child.exitcode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert (summary["total"], summary["failed"]) == (400, 0)
        assert summary["succeeded"] + summary["unchanged"] == 400
    received = [request_id(request) for request in emulator.requests]
    assert set(received) == set(range(1, 601))
    assert len(received) == 600, "the lease: the run that waited sent only the rows the other had not delivered"
    bodies = source.bodies()
    assert ledger_db.query(f"SELECT COUNT(*) FROM {TABLE}") == [(600,)]
    assert ledger_db.hashes() == {key: body_hash(emulator.base_url, payload(body)) for key, body in bodies.items()}
    emulator.reset_requests()
    assert_summary(run(transfer(source, ledger_db)).summary, succeeded=0, unchanged=600)


@pytest.mark.parametrize("ledger_db", ["sqlite", "postgres"], indirect=True)
def test_two_runs_of_one_sync_id_on_the_same_rows_send_each_row_once(
    forkserver: multiprocessing.context.ForkServerContext,
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Two task processes (two DAGs, or a manual run beside a scheduled one) of one sync_id over 2,000 rows."""
    rows = 2000
    emulator = hindsight_emulator_factory(latency=0.002)
    point_hindsight(monkeypatch, emulator, requests_per_minute=120_000)
    source.fill(rows)
    connections = connection_variables()
    children = {}
    for name in ("first", "second"):
        arguments = {**operator_arguments(source, ledger_db), "task_id": f"push_{name}"}
        files = (str(tmp_path / f"{name}.log"), str(tmp_path / f"{name}.json"))
        children[name] = forkserver.Process(target=run_transfer, args=(arguments, connections, *files))
    for child in children.values():
        child.start()
    for child in children.values():
        child.join(timeout=180)

    summaries = {}
    for name, child in children.items():
        assert child.exitcode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        summaries[name] = json.loads((tmp_path / f"{name}.json").read_text())
    updates = sent(emulator)  # each interview once
    assert len(updates) == rows, f"{len(updates)} updates for {rows} rows"
    assert sorted((summary["succeeded"], summary["unchanged"]) for summary in summaries.values()) == [
        (0, rows),
        (rows, 0),
    ]
    waited = [name for name in children if "Another run of the sync" in (tmp_path / f"{name}.log").read_text()]
    assert len(waited) == 1, "the run that waited said so"
    text = (tmp_path / f"{waited[0]}.log").read_text()
    assert f"Another run of the sync {DEFAULT_SYNC_ID!r} is in progress (since " in text
    key_checks = emulator.request_count - len(updates)
    assert key_checks == 1, "the run that waited owed nothing and checked the key once"
    print(f"two runs at once on {rows} rows: {len(updates)} updates and {key_checks} key check")
    assert ledger_db.query(f"SELECT COUNT(*) FROM {TABLE}") == [(rows,)], "both leases released"


def test_a_dag_run_twice_sends_nothing_the_second_time_and_full_refresh_resends(
    run_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hindsight_emulator: HindsightEmulator
) -> None:
    path = tmp_path / "warehouse.db"
    ledger = sqlite_ledger(path, monkeypatch, conn_id="sync_warehouse")  # the DAG's one connection
    source = Source("sync_warehouse", lambda: sqlite3.connect(path))
    source.fill(12)
    sync_id = "sync_warehouse_refresh.push_changes"

    for conf, sends in (({}, 12), ({}, 0), ({"full_refresh": True}, 12)):
        hindsight_emulator.reset_requests()
        dag_run = run_dag("sync_warehouse_refresh", **conf)

        assert task_states(dag_run) == {"push_changes": "success"}
        summary = xcom_value(dag_run, "push_changes", key="summary")
        assert_summary(summary, succeeded=sends, unchanged=12 - sends)
        assert_sent_exactly(hindsight_emulator, source.bodies() if sends else {})
        assert ledger.hashes(sync_id) == {
            key: body_hash(hindsight_emulator.base_url, payload(body)) for key, body in source.bodies().items()
        }
    assert ledger.sync_ids() == {sync_id: 12}
