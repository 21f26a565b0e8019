"""Every run leaves its history in the warehouse: the runs' table and the rows that did not succeed.

Operators run against the emulator; the history lands in SQLite and in a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
import sqlite3
import threading
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.exceptions import HindsightConfigurationError
from airflow_provider_hindsight.history import HistoryRecorder, run_end
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.ledgers.history import PURGE_BATCH, FailedRow
from airflow_provider_hindsight.operators.create import (
    HindsightCreateInterviewOperator,
    HindsightCreateInterviewsOperator,
)
from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from airflow_provider_hindsight.transfers.sql_to_hindsight import (
    SqlToHindsightCreateInterviewsOperator,
    SqlToHindsightOperator,
)
from tests.helpers import ROOT, free_port
from tests.support.ledger_db import LedgerDatabase, postgres_ledger

from .helpers import HISTORY_CONN_ID, Tried, failed_rows, point_history, runs, wait_until

SECRET_NOTES = "renewal risk: call the CFO"


def updates(ids: range) -> list[dict[str, Any]]:
    return [{"interview_request_id": n, "contact_context": SECRET_NOTES, "objective": f"Renewal {n}"} for n in ids]


def bulk(**kwargs: Any) -> HindsightBulkUpdateInterviewsOperator:
    return HindsightBulkUpdateInterviewsOperator(task_id="update", **{"max_workers": 4, **kwargs})


def test_a_bulk_run_writes_its_row_and_the_rows_that_failed(
    store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=list(range(1, 9)))
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)

    executed = Tried(bulk(updates=updates(range(1, 11)), max_failures=2))

    assert executed.error is None
    (run,) = runs(store)
    assert run["operation"] == "update"
    assert run["state"] == "succeeded"
    assert (run["dag_id"], run["task_id"], run["run_id"], run["map_index"], run["try_number"]) == (
        executed_dag_id(),
        "update",
        "manual__1",
        -1,
        1,
    )
    assert (run["total"], run["succeeded"], run["failed"]) == (10, 8, 2)
    assert run["created"] is None and run["unchanged"] is None, "counts a run has not are empty"
    assert run["requests"] == emulator.request_count == 10
    assert run["answered_429"] == 0
    assert run["error_code"] is None and run["finished_at"] is not None
    assert run["provider_version"] == __version__
    recorded = failed_rows(store)
    assert [(position, key, code, status) for position, key, code, status, _ in recorded] == [
        (9, "9", "not_found", 404),
        (10, "10", "not_found", 404),
    ]
    assert recorded[0][4] == executed.summary["failures"][0]["message"], "the message as the log has it"
    everything = repr(store.query("SELECT * FROM hindsight_runs")) + repr(
        store.query("SELECT * FROM hindsight_runs_rows")
    )
    assert SECRET_NOTES not in everything and "test-key" not in everything


def executed_dag_id() -> str:
    return bulk(updates=[]).dag_id


def test_a_failed_run_says_why_and_a_sync_is_a_sync(
    store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=[1, 2])
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    emulator.inject_status(429, retry_after=0)

    executed = Tried(bulk(updates=updates(range(1, 4)), ledger_conn_id=HISTORY_CONN_ID))

    assert executed.error is not None
    (run,) = runs(store)
    assert (run["operation"], run["state"], run["error_code"]) == ("sync", "failed", "too_many_failures")
    assert run["error_message"] == " ".join(str(executed.error).split())
    assert (run["total"], run["succeeded"], run["failed"], run["unchanged"]) == (3, 2, 1, 0)
    assert run["answered_429"] == 1
    assert run["requests"] == emulator.request_count == 4
    assert [row[1:3] for row in failed_rows(store)] == [("3", "not_found")]


def test_a_run_the_circuit_breaker_stops_is_stopped(
    store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=list(range(1, 50)))
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    emulator.inject_status(401, times=100)

    executed = Tried(bulk(updates=updates(range(1, 50)), max_workers=1))

    assert executed.error is not None
    (run,) = runs(store)
    assert run["state"] == "stopped"
    assert run["error_code"] == executed.summary["stopped"]["code"]
    assert run["total"] == 49


def test_on_kill_ends_the_run_stopped(
    sqlite_store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """execute() runs on the test's own thread, as the task runner calls it (Airflow 2.11 refuses an execute()
    called directly from another thread); on_kill() comes from a second thread while requests are in flight."""
    emulator = hindsight_emulator_factory(interview_ids=list(range(1, 101)), latency=3.0)
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    operator = bulk(updates=updates(range(1, 101)), max_workers=4)
    execute_returned = threading.Event()
    end_written_mid_run: list[bool] = []

    def kill_mid_run() -> None:
        wait_until(lambda: sqlite_store.table_exists("hindsight_runs") and runs(sqlite_store) != [], "the running row")
        wait_until(lambda: emulator.request_count >= 4, "the first answers, more requests in flight")
        operator.on_kill()
        wait_until(lambda: runs(sqlite_store)[0]["state"] != "running", "the run's end")
        end_written_mid_run.append(not execute_returned.is_set() and runs(sqlite_store)[0]["state"] == "stopped")

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    tried = Tried(operator)
    execute_returned.set()
    killer.join()

    assert end_written_mid_run == [True], "on_kill wrote it while the requests in flight (3 s each) were still running"
    (run,) = runs(sqlite_store)
    assert (run["state"], run["error_code"]) == ("stopped", tried.summary["stopped"]["code"])
    assert run["total"] == 100 and run["requests"] == emulator.request_count < 100


def test_create_runs_are_recorded_one_or_many(
    store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory()
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    rows = [{"request_key": f"deal-{n}", "contact_email": f"c{n}@example.com", "sequence_id": "seq"} for n in (1, 2)]
    rows.append({"request_key": "deal-3", "contact_email": "not an e-mail", "sequence_id": "seq"})

    many = Tried(
        HindsightCreateInterviewsOperator(
            task_id="create", interviews=rows, ledger_conn_id=HISTORY_CONN_ID, max_failures=1
        )
    )
    one = Tried(
        HindsightCreateInterviewOperator(
            task_id="create_one",
            request_key="deal-1",
            contact_email="c1@example.com",
            sequence_id="seq",
            ledger_conn_id=HISTORY_CONN_ID,
        )
    )

    assert many.error is None and one.error is None
    first, second = runs(store)
    assert (first["operation"], first["state"], first["created"], first["failed"]) == ("create", "succeeded", 2, 1)
    assert (second["task_id"], second["existing"], second["created"]) == ("create_one", 1, None)
    (failed,) = failed_rows(store)
    assert failed[1] == "deal-3"
    assert "not an e-mail" not in repr(failed), "no personal data"


def test_a_landing_is_recorded(
    store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory()
    for interview_id in (1, 2):
        emulator.add_interview(interview_id, status="completed")
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    store.run("CREATE TABLE deals (interview_request_id BIGINT)", "INSERT INTO deals VALUES (1), (2), (3)")

    executed = Tried(
        HindsightInterviewsToSqlOperator(
            task_id="land",
            sql_conn_id=HISTORY_CONN_ID,
            ids_sql="SELECT interview_request_id FROM deals",
            max_failures=1,
        )
    )

    assert executed.error is None
    (run,) = runs(store)
    assert (run["operation"], run["state"], run["total"], run["failed"]) == ("land", "succeeded", 3, 1)
    assert store.query("SELECT newly_completed FROM hindsight_runs") == [(2,)]


def test_the_store_down_costs_one_warning_and_the_run_is_the_same(
    hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=list(range(1, 6)))
    without = Tried(bulk(updates=updates(range(1, 8)), max_failures=2, max_workers=1))
    emulator.reset_requests()
    unreachable = {"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "login": "u", "schema": "d"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{HISTORY_CONN_ID.upper()}", json.dumps(unreachable))
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)

    with caplog.at_level(logging.WARNING):
        down = Tried(bulk(updates=updates(range(1, 8)), max_failures=2, max_workers=1))

    assert down.error is None and down.result == without.result
    assert emulator.request_count == 7
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    history = [message for message in warnings if "history" in message]
    assert len(history) == 1, warnings
    assert HISTORY_CONN_ID in history[0] and "Fix:" in history[0]


def test_a_dry_run_leaves_no_history(
    sqlite_store: LedgerDatabase, hindsight_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_history(hindsight_emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)

    Tried(bulk(updates=updates(range(1, 3)), dry_run=True))
    Tried(bulk(updates=updates(range(1, 3))))

    assert [run["total"] for run in runs(sqlite_store)] == [2], "only the run that sent"


def test_a_history_table_that_is_not_a_table_name_is_refused_before_any_request(
    sqlite_store: LedgerDatabase, hindsight_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_history(hindsight_emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID, history_table="runs; DROP")

    executed = Tried(bulk(updates=updates(range(1, 3))))

    assert isinstance(executed.error, HindsightConfigurationError)
    assert "history_table" in str(executed.error) and "hindsight_default" in str(executed.error)
    assert hindsight_emulator.request_count == 0


def test_runs_delete_history_past_the_retention_a_batch_at_a_time(
    store: LedgerDatabase, hindsight_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_history(hindsight_emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID, history_retention_days=30)
    Tried(bulk(updates=[]), run_id="first")  # creates the tables
    old = PURGE_BATCH + 5
    placeholder = "?" if store.backend == "sqlite" else "%s"
    for days, count in ((40, old), (20, 1)):
        started = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(days=days)
        stamp = started.isoformat(sep=" ") if store.backend == "sqlite" else started
        with closing(store.connect()) as connection:
            cursor = connection.cursor()
            for _ in range(count):
                run_uid = uuid.uuid4().hex
                cursor.execute(
                    "INSERT INTO hindsight_runs (run_uid, operation, started_at, state) "
                    f"VALUES ({placeholder}, 'update', {placeholder}, 'succeeded')",
                    (run_uid, stamp),
                )
                cursor.execute(
                    f"INSERT INTO hindsight_runs_rows (run_uid, row_position, code) VALUES ({placeholder}, 1, 'x')",
                    (run_uid,),
                )
            connection.commit()

    Tried(bulk(updates=[]), run_id="second")

    assert store.query("SELECT COUNT(*) FROM hindsight_runs")[0][0] == 2 + 1 + 5, "one batch of the old runs went"
    assert store.query("SELECT COUNT(*) FROM hindsight_runs_rows")[0][0] == 1 + 5, "and their rows with them"
    recent = store.query(
        "SELECT COUNT(*) FROM hindsight_runs WHERE run_id IS NULL AND started_at > " + placeholder,
        (stamp_of(store, days=30),),
    )
    assert recent[0][0] == 1, "the run within the retention stays"


def stamp_of(store: LedgerDatabase, *, days: int) -> Any:
    moment = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(days=days)
    return moment.isoformat(sep=" ") if store.backend == "sqlite" else moment


def test_a_history_table_of_an_earlier_version_gains_its_columns(
    store: LedgerDatabase, hindsight_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_history(hindsight_emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    Tried(bulk(updates=[]), run_id="first")
    store.run(
        "ALTER TABLE hindsight_runs DROP COLUMN provider_version", "ALTER TABLE hindsight_runs DROP COLUMN not_sent"
    )

    Tried(bulk(updates=[]), run_id="second")

    assert [run["provider_version"] for run in runs(store)] == [None, __version__]


def test_the_recorder_never_blocks_an_event_loop(
    sqlite_store: LedgerDatabase, hindsight_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The answers trigger's use: a run recorded from the event loop while the store is locked by another session."""
    point_history(hindsight_emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    recorder = HistoryRecorder.of(HindsightHook().settings)
    assert recorder is not None
    recorder.wait()
    holder = sqlite3.connect(tmp_path / "history.db")
    holder.execute("BEGIN EXCLUSIVE")  # every write of the recorder waits for this session

    async def an_event() -> bool:
        ticks = 0
        written = recorder.record_event(
            "watch",
            run_end({"total": 2, "newly_completed": 1, "failed": 1, "failures": []}),
            [FailedRow(1, 7, "server_error", 500, "Hindsight answered HTTP 500")],
        )
        while ticks < 20:  # the loop goes on while the write waits
            await asyncio.sleep(0)
            ticks += 1
        pending = not written.done()
        holder.rollback()
        await asyncio.wrap_future(written)
        return pending

    assert asyncio.run(an_event()) is True
    recorder.close()
    (run,) = runs(sqlite_store)
    assert (run["operation"], run["state"], run["total"], run["dag_id"]) == ("watch", "succeeded", 2, None)
    assert failed_rows(sqlite_store) == [(1, "7", "server_error", 500, "Hindsight answered HTTP 500")]


def test_the_queries_of_the_docs_answer_on_postgresql(
    postgres_database: Any, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SQL block of docs/history.md runs on PostgreSQL and answers what it says."""
    store = postgres_ledger(postgres_database, monkeypatch, HISTORY_CONN_ID, sync_id="-")
    emulator = hindsight_emulator_factory(interview_ids=[1, 2])
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    for run_id, max_failures in (("first", 1), ("second", 1), ("third", 0)):  # the third fails
        Tried(bulk(updates=updates(range(1, 4)), max_failures=max_failures), run_id=run_id)
    queries = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "history.md").read_text(), flags=re.S)

    answers = [store.query(query) for query in queries]

    assert len(queries) == 6 and all(answers)
    assert answers[2] == [("failed", "too_many_failures", 1, answers[2][0][3])]
    assert answers[-1][0][3:5] == ("3", "not_found"), "the row that failed in two runs in a row"
    assert answers[4][0][:2] == (bulk(updates=[]).dag_id, "update"), "the last successful run"


def test_a_connection_that_may_not_add_the_new_columns_prints_the_statements(
    postgres_database: Any,
    hindsight_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = postgres_ledger(postgres_database, monkeypatch, "history_owner", sync_id="-")
    point_history(hindsight_emulator, monkeypatch, history_conn_id="history_owner")
    Tried(bulk(updates=[]), run_id="first")  # the owner creates the tables
    store.run("ALTER TABLE hindsight_runs DROP COLUMN provider_version")  # as an earlier version made it
    ((database,),) = store.query("SELECT current_database()")
    role = f"recorder_{database}"  # roles belong to the server: one per test database
    store.run(
        f"CREATE ROLE {role} LOGIN",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON hindsight_runs, hindsight_runs_rows TO {role}",
    )
    store.set_connection(HISTORY_CONN_ID, login=role)
    point_history(hindsight_emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)

    with caplog.at_level(logging.WARNING):
        tried = Tried(bulk(updates=updates(range(1, 3))), run_id="second")

    assert tried.error is None, "the run goes on"
    (warning,) = [record.getMessage() for record in caplog.records if "history_conn_id" in record.getMessage()]
    statement = "ALTER TABLE hindsight_runs ADD COLUMN provider_version VARCHAR(32);"
    assert statement in warning
    store.run(statement)  # the owner runs what it printed
    Tried(bulk(updates=updates(range(1, 3))), run_id="third")
    assert [run["run_id"] for run in runs(store)] == ["first", "third"]


def test_the_sql_transfers_are_recorded_too(
    sqlite_store: LedgerDatabase, hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=[1, 2])
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    sqlite_store.run(
        "CREATE TABLE deals (interview_request_id INTEGER, objective TEXT, request_key TEXT, contact_email TEXT)",
        "INSERT INTO deals VALUES (1, 'a', 'k1', 'a@example.com'), (2, 'b', 'k2', 'b@example.com')",
    )

    sync = Tried(
        SqlToHindsightOperator(
            task_id="sync",
            sql="SELECT interview_request_id, objective FROM deals",
            sql_conn_id=HISTORY_CONN_ID,
            ledger_conn_id=HISTORY_CONN_ID,
        )
    )
    create = Tried(
        SqlToHindsightCreateInterviewsOperator(
            task_id="create",
            sql="SELECT request_key, contact_email FROM deals",
            sql_conn_id=HISTORY_CONN_ID,
            ledger_conn_id=HISTORY_CONN_ID,
            sequence_id="seq",
        )
    )

    assert sync.error is None and create.error is None
    assert [
        (run["task_id"], run["operation"], run["state"], run["succeeded"], run["created"]) for run in runs(sqlite_store)
    ] == [("sync", "sync", "succeeded", 2, None), ("create", "create", "succeeded", None, 2)]
