"""``HindsightInterviewsToSqlOperator`` on SQLite and a real PostgreSQL server, against the emulator."""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightPermanentError,
    HindsightValidationError,
)
from airflow_provider_hindsight.ledgers.transcripts import TRANSCRIPT_COLUMNS
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from tests.helpers import Executed, task_states, xcom_value
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "landing_warehouse"
TRANSCRIPT = "**Paige:** What made you choose another vendor?\n\n**Ana:** Acme was cheaper. SECRET-WORDS"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, CONN_ID, sync_id="-")


@pytest.fixture
def emulator(hindsight_emulator: HindsightEmulator) -> HindsightEmulator:
    """Interviews 1 and 2 completed, 3 sent, 4 created."""
    for interview_id, status in ((1, "sent"), (2, "sent"), (3, "sent"), (4, "created")):
        hindsight_emulator.add_interview(
            interview_id,
            status=status,
            contact_name="Ana",
            objective="Lost to Acme",
            contact_email=f"a{interview_id}@x.io",
        )
    hindsight_emulator.complete(1, TRANSCRIPT)
    hindsight_emulator.complete(2)
    return hindsight_emulator


def ids_table(backend: Backend, ids: list[int]) -> str:
    backend.run("CREATE TABLE deals (deal TEXT, interview_request_id BIGINT)")
    for interview_id in ids:
        backend.run(f"INSERT INTO deals VALUES ('D-{interview_id}', {interview_id})")
    return "SELECT interview_request_id FROM deals ORDER BY deal"


def land(**kwargs: Any) -> Executed:
    kwargs.setdefault("task_id", "land")
    return Executed(HindsightInterviewsToSqlOperator(sql_conn_id=CONN_ID, **kwargs))


def rows(backend: Backend) -> dict[int, dict[str, Any]]:
    found = backend.query(f"SELECT {', '.join(TRANSCRIPT_COLUMNS)} FROM hindsight_transcripts")
    return {int(row[0]): dict(zip(TRANSCRIPT_COLUMNS, row, strict=True)) for row in found}


def gets(emulator: HindsightEmulator) -> list[int]:
    return sorted(int(r.path.rsplit("/", 1)[1]) for r in emulator.requests if r.method == "GET")


def test_the_first_run_creates_the_table_and_lands_every_interview(
    backend: Backend, emulator: HindsightEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_hindsight.ledgers")
    run = land(ids_sql=ids_table(backend, [1, 2, 3, 4]))

    assert run.error is None
    said = [record.getMessage() for record in caplog.records if record.name.startswith("airflow_provider_hindsight")]
    assert f"Created the transcripts table hindsight_transcripts on '{CONN_ID}'." in said
    assert not [line for line in said if "ledger" in line], "the landing table is not a ledger"
    assert (
        run.result
        == run.summary
        == {
            "total": 4,
            "already_completed": 0,
            "newly_completed": 2,
            "pending": 2,
            "not_due": 0,
            "stopped": 0,
            "failed": 0,
            "failures": [],
        }
    )
    landed = rows(backend)
    assert {key: row["status"] for key, row in landed.items()} == {
        1: "completed",
        2: "completed",
        3: "sent",
        4: "created",
    }
    first = landed[1]
    assert first["transcript"] == TRANSCRIPT
    assert first["transcript_document_id"].startswith("doc_")
    assert first["survey_url"].startswith("https://") and first["objective"] == "Lost to Acme"
    assert landed[3]["transcript"] is None and landed[3]["transcript_created_at"] is None
    created = first["interview_created_at"]
    if backend.backend == "postgres":
        assert isinstance(created, datetime.datetime) and created.tzinfo is None
    else:
        assert datetime.datetime.fromisoformat(created)


def test_completed_interviews_are_never_fetched_again(backend: Backend, emulator: HindsightEmulator) -> None:
    sql = ids_table(backend, [1, 2, 3, 4])
    assert land(ids_sql=sql).error is None
    emulator.reset_requests()

    again = land(ids_sql=sql, poll_all=True)  # even when every interview not completed is fetched
    assert again.summary["already_completed"] == 2 and again.summary["pending"] == 2
    assert gets(emulator) == [3, 4]

    emulator.complete(3)
    emulator.reset_requests()
    third = land(ids_sql=sql, poll_all="True")  # what "{{ params.catch_up }}" renders
    assert (third.summary["already_completed"], third.summary["newly_completed"], third.summary["pending"]) == (2, 1, 1)
    assert gets(emulator) == [3, 4]
    assert rows(backend)[3]["status"] == "completed"


def backdate(
    backend: Backend,
    interview_id: int,
    *,
    started: datetime.timedelta | None = None,
    fetched: datetime.timedelta | None = None,
) -> None:
    """Move an interview's row back in time: e-mailed (and created) ``started`` ago, last fetched ``fetched`` ago."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    mark = "?" if backend.backend == "sqlite" else "%s"
    changes: dict[str, datetime.timedelta] = {}
    if started is not None:
        changes.update(email_sent_at=started, interview_created_at=started)
    if fetched is not None:
        changes["fetched_at"] = fetched
    values = [now - ago for ago in changes.values()]
    backend.query(
        f"UPDATE hindsight_transcripts SET {', '.join(f'{name} = {mark}' for name in changes)} "
        f"WHERE interview_request_id = {mark}",
        (*[value.isoformat(sep=" ") if backend.backend == "sqlite" else value for value in values], interview_id),
    )


def moment(value: Any) -> datetime.datetime | None:
    """A time read from the table (ISO text on SQLite) as a naive UTC ``datetime``."""
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else value


HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def test_each_fetch_records_its_count_and_when_the_next_is_due(backend: Backend, emulator: HindsightEmulator) -> None:
    sql = ids_table(backend, [1, 2, 3, 4])
    assert land(ids_sql=sql).error is None
    landed = rows(backend)
    for interview_id in (1, 2, 3, 4):
        assert landed[interview_id]["polls"] == 1 and landed[interview_id]["polling_stopped_at"] is None
    assert landed[1]["next_poll_at"] is None  # completed: never again
    fetched, due = moment(landed[3]["fetched_at"]), moment(landed[3]["next_poll_at"])
    assert fetched is not None and due is not None
    assert abs(due - fetched - datetime.timedelta(seconds=900)) < datetime.timedelta(seconds=1)  # the shortest

    backdate(backend, 3, fetched=20 * datetime.timedelta(minutes=1))
    assert land(ids_sql=sql).error is None
    assert rows(backend)[3]["polls"] == 2 and rows(backend)[4]["polls"] == 1


def test_a_run_soon_after_another_fetches_nothing(backend: Backend, emulator: HindsightEmulator) -> None:
    sql = ids_table(backend, [1, 2, 3, 4])
    assert land(ids_sql=sql).error is None
    emulator.reset_requests()

    again = land(ids_sql=sql)

    assert again.error is None
    assert emulator.request_count == 0
    assert again.summary == {
        "total": 4,
        "already_completed": 2,
        "newly_completed": 0,
        "pending": 0,
        "not_due": 2,
        "stopped": 0,
        "failed": 0,
        "failures": [],
    }


def test_an_interview_is_due_again_after_a_share_of_its_age(backend: Backend, emulator: HindsightEmulator) -> None:
    sql = ids_table(backend, [3, 4])
    assert land(ids_sql=sql).error is None
    # Both two days old: due 4.8 hours after their last fetch (0.1 x 48 h).
    backdate(backend, 3, started=2 * DAY, fetched=4 * HOUR)
    backdate(backend, 4, started=2 * DAY, fetched=5 * HOUR)
    emulator.reset_requests()

    run = land(ids_sql=sql)

    assert gets(emulator) == [4]
    assert (run.summary["not_due"], run.summary["pending"]) == (1, 1)
    emulator.reset_requests()
    assert land(ids_sql=sql, poll_age_factor=0.05).summary["pending"] == 1  # 2.4 hours: 3 is due now
    assert gets(emulator) == [3]


def test_past_stop_polling_after_an_interview_is_not_fetched_again(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = ids_table(backend, [3, 4])
    assert land(ids_sql=sql).error is None
    backdate(backend, 3, started=31 * DAY, fetched=2 * DAY)
    backdate(backend, 4, started=29 * DAY, fetched=2 * DAY)
    emulator.reset_requests()

    run = land(ids_sql=sql)

    assert gets(emulator) == [4]
    assert (run.summary["stopped"], run.summary["pending"], run.summary["total"]) == (1, 1, 2)
    stopped = rows(backend)[3]
    assert stopped["status"] == "sent" and stopped["polls"] == 1  # its last status, kept
    stopped_at = moment(stopped["polling_stopped_at"])
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert stopped_at is not None and abs(now - stopped_at) < HOUR

    emulator.reset_requests()
    assert land(ids_sql=sql).summary["stopped"] == 1
    assert moment(rows(backend)[3]["polling_stopped_at"]) == stopped_at  # when it stopped, not each run
    assert land(ids_sql=sql, stop_polling_after=datetime.timedelta(days=60)).summary["pending"] == 1
    assert gets(emulator) == [3]
    assert rows(backend)[3]["polling_stopped_at"] is None and rows(backend)[3]["polls"] == 2


def test_poll_all_fetches_every_interview_not_completed_stopped_or_not(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = ids_table(backend, [1, 2, 3, 4])
    assert land(ids_sql=sql).error is None
    backdate(backend, 3, started=40 * DAY, fetched=10 * DAY)
    emulator.reset_requests()

    run = land(ids_sql=sql, poll_all="true")  # as a template renders it

    assert gets(emulator) == [3, 4]
    assert (run.summary["pending"], run.summary["already_completed"], run.summary["not_due"]) == (2, 2, 0)


def test_a_dry_run_counts_what_the_plan_would_fetch_and_writes_nothing(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = ids_table(backend, [1, 2, 3, 4])
    assert land(ids_sql=sql).error is None
    backdate(backend, 3, started=40 * DAY, fetched=10 * DAY)
    backdate(backend, 4, started=2 * DAY, fetched=5 * HOUR)
    before = rows(backend)
    emulator.reset_requests()

    run = land(ids_sql=sql, dry_run=True)

    assert emulator.request_count == 0 and rows(backend) == before  # 3 is not marked stopped either
    assert (run.summary["pending"], run.summary["stopped"], run.summary["already_completed"]) == (1, 1, 2)


def test_a_scheduled_landing_fetches_nothing_soon_after_and_catches_up_when_a_param_says_so(
    backend: Backend, emulator: HindsightEmulator, run_dag: Callable[..., Any]
) -> None:
    ids_table(backend, [1, 2, 3, 4])
    # Each run says catch_up: dag.test() keeps a run's conf in the DAG's params for the next one.
    assert task_states(run_dag("landing_scheduled", catch_up=False)) == {"land": "success"}
    emulator.reset_requests()

    again = run_dag("landing_scheduled", catch_up=False)

    assert task_states(again) == {"land": "success"} and emulator.request_count == 0
    assert xcom_value(again, "land", key="summary")["not_due"] == 2
    caught_up = run_dag("landing_scheduled", catch_up=True)  # the run's conf overrides the param
    assert xcom_value(caught_up, "land", key="summary")["pending"] == 2
    assert gets(emulator) == [3, 4]


def test_a_scheduled_landing_empties_next_poll_at_of_the_rows_it_stops(
    backend: Backend, emulator: HindsightEmulator, run_dag: Callable[..., Any]
) -> None:
    ids_table(backend, [3, 4])
    assert task_states(run_dag("landing_scheduled", catch_up=False)) == {"land": "success"}
    assert rows(backend)[3]["next_poll_at"] is not None  # pending: due again later
    backdate(backend, 3, started=31 * DAY, fetched=2 * DAY)  # past stop_polling_after (30 days)

    stopping = run_dag("landing_scheduled", catch_up=False)

    assert xcom_value(stopping, "land", key="summary")["stopped"] == 1
    stopped = rows(backend)[3]
    assert moment(stopped["polling_stopped_at"]) is not None
    assert stopped["next_poll_at"] is None  # never fetched again: no next time
    assert rows(backend)[4]["next_poll_at"] is not None


def test_max_requests_fetches_never_polled_first_then_the_most_overdue(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    for interview_id in range(5, 9):
        emulator.add_interview(interview_id, status="sent")
    sql = ids_table(backend, [3, 4, 5, 6, 7, 8])
    assert land(ids_sql="SELECT interview_request_id FROM deals WHERE interview_request_id < 7").error is None
    # Ten days old, each due 10 % of its age at its last fetch after it:
    backdate(backend, 3, started=10 * DAY, fetched=2 * DAY)  # due 28.8 hours ago
    backdate(backend, 4, started=10 * DAY, fetched=3 * DAY)  # due 55.2 hours ago: the most overdue
    backdate(backend, 5, started=10 * DAY, fetched=25 * HOUR)  # due 3.5 hours ago
    emulator.reset_requests()  # 6 was just fetched (not due); 7 and 8 never were

    run = land(ids_sql=sql, max_requests=4, max_workers=1)

    assert [int(r.path.rsplit("/", 1)[1]) for r in emulator.requests] == [7, 8, 4, 3]
    assert (run.summary["pending"], run.summary["not_due"], run.summary["total"]) == (4, 2, 6)  # 5 over the cap, 6
    emulator.reset_requests()
    assert land(ids_sql=sql, max_requests=4).summary["pending"] == 1
    assert gets(emulator) == [5]


def test_bad_plan_parameters_fail_before_any_request_naming_them(emulator: HindsightEmulator) -> None:
    for arguments, field in (
        ({"poll_age_factor": -0.1}, "poll_age_factor"),
        ({"min_poll_interval": 0}, "min_poll_interval"),
        ({"max_poll_interval": 60}, "max_poll_interval"),  # below the 900 s minimum
        ({"stop_polling_after": "30 days"}, "stop_polling_after"),
        ({"max_requests": 0}, "max_requests"),
    ):
        with pytest.raises(HindsightValidationError, match=field) as raised:
            HindsightInterviewsToSqlOperator(task_id="land", sql_conn_id=CONN_ID, ids_sql="SELECT 1", **arguments)
        assert raised.value.field == field
    run = land(ids_sql="SELECT 1", poll_all="sometimes")
    assert isinstance(run.error, HindsightValidationError) and "poll_all" in str(run.error)
    assert emulator.request_count == 0


def test_progress_lines_count_what_was_not_fetched(
    backend: Backend, emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    sql = ids_table(backend, [1, 2, 3, 4])
    assert land(ids_sql=sql).error is None

    assert land(ids_sql=sql, progress_interval=0).error is None

    lines = re.findall(r"(?:Finished: )?\d rows done in [^\n]*", task_logs())
    progress = [line for line in lines if ": 0 sent" in line]  # the second run's
    assert len(progress) >= 5  # at this interval one a row, and the last
    assert (
        progress[-1].startswith("Finished: 4 rows done") and "2 already_completed, 2 not_due, 0 failed" in progress[-1]
    )


def test_a_404_among_good_ids_is_a_failed_row_without_a_table_row(
    backend: Backend, emulator: HindsightEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sql = ids_table(backend, [1, 99, 3])
    run = land(ids_sql=sql)

    assert isinstance(run.error, HindsightPermanentError)
    assert run.summary["failed"] == 1 and run.summary["newly_completed"] == 1 and run.summary["pending"] == 1
    (failure,) = run.summary["failures"]
    assert (failure["interview_request_id"], failure["status_code"], failure["code"]) == (99, 404, "not_found")
    assert set(rows(backend)) == {1, 3}  # the good ids landed all the same
    assert land(ids_sql=sql, max_failures=1).error is None
    assert "SECRET-WORDS" not in caplog.text and "a1@x.io" not in caplog.text


def test_a_wrong_key_stops_the_run_early(
    backend: Backend, hindsight_emulator_factory: Callable[..., HindsightEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = hindsight_emulator_factory(api_key="the-right-key")
    wrong = json.loads(good.connection_env()[1])
    wrong["password"] = "a-wrong-key"
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(wrong))
    sql = ids_table(backend, list(range(1, 201)))

    run = land(ids_sql=sql, max_workers=2)

    assert isinstance(run.error, AirflowFailException)
    assert run.summary["stopped"]["code"] == "stopped_auth"
    assert run.summary["total"] == 200 and run.summary["failed"] == 200
    assert good.request_count <= 4


def test_a_killed_run_keeps_what_it_fetched_and_the_rerun_finishes(
    backend: Backend, hindsight_emulator_factory: Callable[..., HindsightEmulator]
) -> None:
    emulator = hindsight_emulator_factory(latency=0.01)
    ids = list(range(1, 61))
    for interview_id in ids:
        emulator.add_interview(interview_id, status="completed")
    sql = ids_table(backend, ids)
    operator = HindsightInterviewsToSqlOperator(
        task_id="land", sql_conn_id=CONN_ID, ids_sql=sql, batch_size=5, max_workers=2
    )

    def kill_when_busy() -> None:
        while emulator.request_count < 15:
            threading.Event().wait(0.005)
        operator.on_kill()

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    first = Executed(operator)
    killer.join()

    assert first.summary["stopped"]["code"] == "stopped_killed"
    fetched = first.summary["newly_completed"]
    assert 15 <= fetched < 60
    assert len(rows(backend)) == fetched  # every fetched row was kept, the last partial batch too
    emulator.reset_requests()

    rerun = land(ids_sql=sql)
    assert rerun.error is None
    assert (rerun.summary["already_completed"], rerun.summary["newly_completed"]) == (fetched, 60 - fetched)
    assert len(gets(emulator)) == 60 - fetched
    assert set(rows(backend)) == set(ids)


def test_by_default_the_created_rows_of_the_interview_ledger(backend: Backend, emulator: HindsightEmulator) -> None:
    backend.run(
        "CREATE TABLE hindsight_interviews (request_key VARCHAR(256) PRIMARY KEY, state VARCHAR(16), "
        "interview_request_id BIGINT)",
        "INSERT INTO hindsight_interviews VALUES ('D-1:C-1', 'created', 1), ('D-3:C-3', 'created', 3), "
        "('D-4:C-4', 'unknown', NULL), ('D-5:C-5', 'pending', NULL), ('D-6:C-6', 'rejected', NULL)",
    )
    run = land()
    assert run.error is None
    assert gets(emulator) == [1, 3]
    assert set(rows(backend)) == {1, 3}


def test_without_ids_sql_or_the_ledger_it_fails_before_any_request_naming_the_table(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    run = land(ledger_table="analytics_interviews")
    assert isinstance(run.error, HindsightConfigurationError)
    assert "'analytics_interviews' does not exist" in str(run.error)
    assert emulator.request_count == 0


def test_a_table_that_is_not_a_transcripts_table_is_refused(backend: Backend, emulator: HindsightEmulator) -> None:
    backend.run("CREATE TABLE hindsight_transcripts (id INTEGER)")
    run = land(ids_sql=ids_table(backend, [1]))
    assert isinstance(run.error, HindsightConfigurationError)
    assert "not a Hindsight transcripts table" in str(run.error) and "set table to another name" in str(run.error)
    assert emulator.request_count == 0


def test_lineage_reads_the_interviews_and_writes_the_table(backend: Backend, emulator: HindsightEmulator) -> None:
    operator = HindsightInterviewsToSqlOperator(task_id="land", sql_conn_id=CONN_ID, ids_sql="SELECT 1")
    lineage = operator.get_openlineage_facets_on_start()
    assert lineage is not None
    assert [(d.namespace, d.name) for d in lineage.inputs][:1] == [
        (f"hindsight://127.0.0.1:{emulator.port}", "interviews")
    ]
    if backend.backend == "postgres":
        assert [dataset.name.rsplit(".", 1)[1] for dataset in lineage.outputs] == ["hindsight_transcripts"]
