"""Create-once against the emulator, on SQLite and PostgreSQL: reruns, new rows, the states and the retry rule."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightUnknownOutcomeError, HindsightValidationError
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import FakeTaskInstance, free_port
from tests.support.ledger_db import LedgerDatabase
from tests.sync.helpers import run

from .helpers import TABLE, counts, created_ids, creator, email, key, point_hindsight, posts, rows, states


@pytest.fixture
def emulator(hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> HindsightEmulator:
    emulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, max_retries=2, timeout=1)
    return emulator


def test_a_rerun_sends_nothing_and_new_rows_only_are_created(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase
) -> None:
    first = run(creator(rows(range(1, 21)), ledger_db))

    assert first.error is None
    assert counts(first.summary) == (20, 20, 0, 0, 0)
    assert posts(emulator) == {email(n): 1 for n in range(1, 21)}
    assert states(ledger_db) == {key(n): "created" for n in range(1, 21)}
    ids = created_ids(ledger_db)
    assert sorted(ids.values()) == sorted(i["interview_request_id"] for i in emulator.created_interviews())
    survey = ledger_db.query(f"SELECT survey_url, survey_token, api_status FROM {TABLE} WHERE request_key = '{key(1)}'")
    assert survey[0][0].startswith("http") and survey[0][1] and survey[0][2] == "created"

    emulator.reset_requests()
    again = run(creator(rows(range(1, 26)), ledger_db))

    assert again.error is None
    assert counts(again.summary) == (25, 5, 20, 0, 0)
    assert posts(emulator) == {email(n): 1 for n in range(21, 26)}
    assert created_ids(ledger_db).items() >= ids.items()


def test_duplicate_keys_in_one_run_are_failed_and_the_first_is_created(
    emulator: HindsightEmulator, sqlite_db: LedgerDatabase
) -> None:
    interviews = [*rows([1, 2]), {**rows([1])[0], "contact_email": "other@example.com"}]

    outcome = run(creator(interviews, sqlite_db))

    assert counts(outcome.summary) == (3, 2, 0, 1, 0)
    (failure,) = outcome.summary["failures"]
    assert (failure["request_key"], failure["code"]) == (key(1), "duplicate_request_key")
    assert "other@example.com" not in failure["message"]
    assert posts(emulator) == {email(1): 1, email(2): 1}
    assert outcome.error is not None  # 1 failure > max_failures=0


def test_bad_rows_name_the_key_and_field_never_the_email_and_are_not_recorded(
    emulator: HindsightEmulator, sqlite_db: LedgerDatabase
) -> None:
    interviews = [
        {"request_key": "D-1:C-1", "contact_email": "not-an-address"},
        {"request_key": "D-2:C-2", "contact_email": email(2), "seats": 40},
        {"contact_email": email(3)},
        {"request_key": "x" * 257, "contact_email": email(4)},
        {"request_key": "D-5:C-5", "contact_email": email(5), "contact_context": {"notes": "secret plans"}},
    ]

    outcome = run(creator(interviews, sqlite_db, max_failures=10))

    assert outcome.error is None
    assert counts(outcome.summary) == (5, 1, 0, 4, 0)
    failures = {failure["row"]: failure for failure in outcome.summary["failures"]}
    assert failures[1]["request_key"] == "D-1:C-1" and "contact_email" in failures[1]["message"]
    assert "not-an-address" not in failures[1]["message"]
    assert "seats" in failures[2]["message"]
    assert "request_key" in failures[3]["message"] and "request_key" in failures[4]["message"]
    assert states(sqlite_db) == {"D-5:C-5": "created"}
    assert posts(emulator) == {email(5): 1}


def test_a_rejected_create_is_recorded_and_sent_again_next_run(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase
) -> None:
    emulator.inject_status(400, method="POST")

    first = run(creator(rows([1]), ledger_db))

    assert counts(first.summary) == (1, 0, 0, 1, 0)
    assert first.summary["failures"][0]["status_code"] == 400
    assert states(ledger_db) == {key(1): "rejected"}

    second = run(creator(rows([1]), ledger_db))

    assert second.error is None
    assert counts(second.summary) == (1, 1, 0, 0, 0)
    assert states(ledger_db) == {key(1): "created"}
    assert len(emulator.created_interviews()) == 1


@pytest.mark.parametrize(
    "fault",
    ["create_then_drop", "create_then_delay", "server_error", "invalid_json"],
)
def test_a_create_that_may_have_arrived_is_posted_once_and_left_unknown(
    fault: str, emulator: HindsightEmulator, ledger_db: LedgerDatabase, task_logs: Any
) -> None:
    """The retry rule, black-box: after a POST may have arrived, no retry, the key is ``unknown``."""
    if fault == "create_then_drop":
        emulator.inject_create_then_drop(contact_email=email(1))
    elif fault == "create_then_delay":
        emulator.inject_create_then_delay(3, contact_email=email(1))  # the client's timeout is 1 s
    elif fault == "server_error":
        emulator.inject_status(503, method="POST")
    else:
        emulator.inject_invalid_json(method="POST")

    first = run(creator(rows([1]), ledger_db))

    assert posts(emulator) == {email(1): 1}
    assert counts(first.summary) == (1, 0, 0, 0, 1)
    (failure,) = first.summary["failures"]
    assert (failure["request_key"], failure["code"]) == (key(1), "unknown_outcome")
    assert first.error is not None, "a newly unknown key counts against max_failures"
    assert states(ledger_db) == {key(1): "unknown"}

    emulator.reset_requests()
    task_logs()
    second = run(creator(rows([1, 2]), ledger_db))

    assert second.error is None, "unknown from an earlier run is a warning, not a failure"
    assert counts(second.summary) == (2, 1, 0, 0, 1)
    assert second.summary["failures"] == []
    assert posts(emulator) == {email(2): 1}
    warning = [line for line in task_logs().splitlines() if "request keys were not sent" in line]
    # One WARNING; Airflow 2 shows each task log line twice here (the task handler's stream and logging).
    assert len(warning) in (1, 2) and key(1) in warning[0] and "resend_unknown" in warning[0]

    emulator.reset_requests()
    third = run(creator(rows([1, 2]), ledger_db, resend_unknown="true"))

    assert third.error is None
    assert counts(third.summary) == (2, 1, 1, 0, 0)
    assert posts(emulator) == {email(1): 1}
    assert states(ledger_db) == {key(1): "created", key(2): "created"}


def test_a_create_that_never_reached_hindsight_keeps_no_claim(
    hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, sqlite_db: LedgerDatabase
) -> None:
    emulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, max_retries=1)
    emulator.inject_status(429, method="POST", retry_after=0, times=2)

    first = run(creator(rows([1]), sqlite_db, max_retry_wait=1))

    assert counts(first.summary) == (1, 0, 0, 1, 0)
    assert first.summary["failures"][0]["status_code"] == 429
    assert states(sqlite_db) == {}, "a 429 after the retries: nothing was created, no claim kept"
    assert emulator.created_interviews() == []

    second = run(creator(rows([1]), sqlite_db))
    assert counts(second.summary) == (1, 1, 0, 0, 0)


def test_a_refused_connection_keeps_no_claim(monkeypatch: pytest.MonkeyPatch, sqlite_db: LedgerDatabase) -> None:
    # A key longer than a letter: Airflow 2 masks every secret it is shown in every later log line.
    connection = {
        "conn_type": "hindsight",
        "host": f"http://127.0.0.1:{free_port()}/api/v1",
        "password": "refused-connection-key",
        "extra": {"requests_per_minute": 60000, "max_retries": 1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    outcome = run(creator(rows([1]), sqlite_db, max_retry_wait=0.1))

    assert counts(outcome.summary) == (1, 0, 0, 1, 0)
    assert states(sqlite_db) == {}


def test_pending_claims_are_not_sent_and_stale_ones_become_unknown(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase, task_logs: Any
) -> None:
    run(creator(rows([9]), ledger_db))  # creates the table
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    stamp = (lambda value: value.isoformat(sep=" ")) if ledger_db.backend == "sqlite" else (lambda value: value)
    placeholder = "?" if ledger_db.backend == "sqlite" else "%s"
    for number, attempted in ((1, now - datetime.timedelta(seconds=5)), (2, now - datetime.timedelta(hours=3))):
        ledger_db.query(
            f"INSERT INTO {TABLE} (request_key, state, attempted_at) VALUES ({placeholder}, 'pending', {placeholder})",
            (key(number), stamp(attempted)),
        )
    emulator.reset_requests()

    task_logs()
    outcome = run(creator(rows([1, 2, 3]), ledger_db))

    assert outcome.error is None
    assert counts(outcome.summary) == (3, 1, 0, 0, 2)
    assert posts(emulator) == {email(3): 1}
    assert states(ledger_db)[key(1)] == "pending", "a fresh claim may still have a live writer"
    assert states(ledger_db)[key(2)] == "unknown", "a claim hours old has none"
    text = task_logs()
    assert f"{key(1)} (pending under another run)" in text and key(2) in text
    first_due = (now - datetime.timedelta(seconds=5) + datetime.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert f"they turn unknown once older than pending_timeout (the first at {first_due} UTC)" in text

    emulator.reset_requests()
    resent = run(creator(rows([1, 2, 3]), ledger_db, resend_unknown=True))

    assert counts(resent.summary) == (3, 1, 1, 0, 1)
    assert posts(emulator) == {email(2): 1}, "resend_unknown resends the unknown key, never a fresh claim"


def test_a_dry_run_sends_and_writes_nothing(emulator: HindsightEmulator, ledger_db: LedgerDatabase) -> None:
    outcome = run(creator(rows(range(1, 6)), ledger_db, dry_run=True))

    assert outcome.error is None
    assert counts(outcome.summary) == (5, 5, 0, 0, 0)
    assert outcome.summary["dry_run"] is True
    assert emulator.requests == []
    assert not ledger_db.table_exists(TABLE)

    run(creator(rows([1, 2]), ledger_db))
    emulator.reset_requests()
    again = run(creator(rows(range(1, 6)), ledger_db, dry_run=True))
    assert counts(again.summary) == (5, 3, 2, 0, 0)
    assert emulator.requests == []
    assert len(states(ledger_db)) == 2


def test_ledger_errors_fail_before_any_request(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_hindsight.exceptions import HindsightValidationError
    from airflow_provider_hindsight.ledgers.faults import HindsightLedgerError

    missing = run(creator(rows([1]), None))
    assert isinstance(missing.error, HindsightValidationError) and "ledger_conn_id" in str(missing.error)

    unknown_conn = run(creator(rows([1]), None, ledger_conn_id="no_such_connection"))
    assert isinstance(unknown_conn.error, HindsightLedgerError) and "no_such_connection" in str(unknown_conn.error)

    ledger_db.run(f"CREATE TABLE {TABLE} (request_key VARCHAR(256) PRIMARY KEY, other INTEGER)")
    other_table = run(creator(rows([1]), ledger_db))
    assert isinstance(other_table.error, HindsightLedgerError) and TABLE in str(other_table.error)

    with pytest.raises(HindsightValidationError, match="ledger_table"):
        creator(rows([1]), ledger_db, ledger_table="x; DROP TABLE y")  # refused when the DAG is parsed

    assert emulator.requests == []


def test_a_wrong_key_stops_the_run_and_leaves_no_claim_behind(
    hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, sqlite_db: LedgerDatabase
) -> None:
    import json

    from airflow_provider_hindsight.exceptions import HindsightPermanentError

    emulator = hindsight_emulator_factory()
    wrong = {"conn_type": "hindsight", "host": emulator.base_url, "password": "wrong-key"}
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps({**wrong, "extra": {"requests_per_minute": 600}}))

    stopped = run(creator(rows(range(1, 201)), sqlite_db, max_workers=2))

    assert isinstance(stopped.error, HindsightPermanentError)
    assert stopped.summary["stopped"]["code"]
    assert counts(stopped.summary)[3] == 200
    assert emulator.request_count < 10, "stopped at the first 401, not after 200 of them"
    assert set(states(sqlite_db).values()) <= {"rejected"}, "no pending claim is left behind"

    point_hindsight(monkeypatch, emulator)
    again = run(creator(rows(range(1, 201)), sqlite_db))
    assert counts(again.summary) == (200, 200, 0, 0, 0)


def test_the_hook_runs_before_send_once_right_before_the_first_post(emulator: HindsightEmulator) -> None:
    from airflow_provider_hindsight.hooks.hindsight import HindsightHook
    from airflow_provider_hindsight.resources.interviews import build_interview_create

    hook = HindsightHook(max_retry_wait=1)
    create = build_interview_create(contact_email=email(1), interview_type_id="type_x")
    emulator.inject_status(429, method="POST", retry_after=0)
    seen: list[int] = []

    hook.send_create(create, subject="request_key k", before_send=lambda: seen.append(emulator.request_count))

    assert seen == [0], "once, before anything was sent; not again for the retry after the 429"
    assert emulator.request_count == 2

    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused

    with pytest.raises(Refused):
        hook.send_create(create, subject="request_key k", before_send=refuse)
    assert emulator.request_count == 2, "what before_send raises ends the request unsent"


def test_pending_timeout_sets_when_another_task_instance_s_claim_turns_unknown(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase
) -> None:
    run(creator(rows([9]), ledger_db))  # creates the table
    attempted = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    placeholder = "?" if ledger_db.backend == "sqlite" else "%s"
    ledger_db.query(
        f"INSERT INTO {TABLE} (request_key, state, attempted_at, claimed_by) "
        f"VALUES ({placeholder}, 'pending', {placeholder}, 'warehouse/create/scheduled__2026-12-01/-1')",
        (key(1), attempted.isoformat(sep=" ") if ledger_db.backend == "sqlite" else attempted),
    )
    emulator.reset_requests()

    waited = run(creator(rows([1]), ledger_db))  # ten minutes old, under the default hour: still pending
    assert waited.error is None and counts(waited.summary) == (1, 0, 0, 0, 1)
    assert states(ledger_db)[key(1)] == "pending"

    timed_out = run(creator(rows([1]), ledger_db, pending_timeout=datetime.timedelta(minutes=5)))
    assert timed_out.error is None and counts(timed_out.summary) == (1, 0, 0, 0, 1), "unknown from before"
    assert states(ledger_db)[key(1)] == "unknown"
    assert emulator.requests == []


@pytest.mark.parametrize("value", [0, -5, "1h", True, datetime.timedelta(0)])
def test_pending_timeout_is_checked_naming_it(value: Any) -> None:
    with pytest.raises(
        HindsightValidationError, match="pending_timeout must be a positive number of seconds"
    ) as caught:
        creator(rows([1]), None, ledger_conn_id="x", pending_timeout=value)
    assert caught.value.field == "pending_timeout"


def test_the_single_create_s_retry_fails_on_its_own_claim_left_pending(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase
) -> None:
    from airflow_provider_hindsight.operators.create import HindsightCreateInterviewOperator

    run(creator(rows([9]), ledger_db))  # creates the table
    operator = HindsightCreateInterviewOperator(
        task_id="create_one",
        request_key=key(1),
        contact_email=email(1),
        interview_type_id="type_demo",
        ledger_conn_id=ledger_db.conn_id,
    )
    placeholder = "?" if ledger_db.backend == "sqlite" else "%s"
    ledger_db.query(
        f"INSERT INTO {TABLE} (request_key, state, attempted_at, claimed_by) "
        f"VALUES ({placeholder}, 'pending', '2026-12-01 10:00:00', {placeholder})",
        (key(1), f"{operator.dag_id}/create_one/manual__1/-1"),
    )
    emulator.reset_requests()

    with pytest.raises(HindsightUnknownOutcomeError, match="claimed by an earlier try of this task") as caught:
        operator.execute({"ti": FakeTaskInstance(), "run_id": "manual__1"})  # type: ignore[arg-type]

    assert key(1) in str(caught.value) and "resend_unknown=True" in str(caught.value)
    assert states(ledger_db)[key(1)] == "unknown"
    assert emulator.requests == []
