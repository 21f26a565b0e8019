"""The single create operator, the SQL create transfer, lineage and the provider's registration."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightUnknownOutcomeError
from airflow_provider_hindsight.operators.create import (
    HindsightCreateInterviewOperator,
    HindsightCreateInterviewsOperator,
)
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightCreateInterviewsOperator
from tests.support.ledger_db import LedgerDatabase, set_sqlite_connection
from tests.sync.helpers import run

from .helpers import INTERVIEW_TYPE, TABLE, counts, email, key, point_hindsight, posts, states


@pytest.fixture
def emulator(hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> HindsightEmulator:
    emulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, max_retries=2, timeout=1)
    return emulator


def single(**kwargs: Any) -> HindsightCreateInterviewOperator:
    arguments = {
        "task_id": "create_one",
        "request_key": key(1),
        "contact_email": email(1),
        "interview_type_id": INTERVIEW_TYPE,
        "contact_name": "Contact 1",
        "contact_context": {"title": "CTO"},
    }
    return HindsightCreateInterviewOperator(**{**arguments, **kwargs})


def execute(operator: Any) -> Any:
    return operator.execute({"ti": None})


def test_every_body_field_of_the_single_operator_is_templated() -> None:
    fields = set(HindsightCreateInterviewOperator.template_fields)
    assert fields >= {"request_key", "contact_email", "sequence_id", "interview_type_id", "contact_name"}
    assert fields >= {"contact_context", "deal_id", "objective", "resend_unknown"}
    assert set(HindsightCreateInterviewsOperator.template_fields) == {"interviews", "resend_unknown"}


def test_without_a_ledger_the_single_operator_sends_once_and_an_unknown_outcome_fails_for_good(
    emulator: HindsightEmulator,
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    answer = execute(single(request_key=None))
    assert answer["interview_request_id"] and answer["survey_url"] and answer["status"] == "created"

    emulator.inject_create_then_drop(contact_email=email(2))
    with pytest.raises(HindsightUnknownOutcomeError) as raised:
        execute(single(request_key=None, contact_email=email(2)))
    assert isinstance(raised.value, AirflowFailException)
    assert posts(emulator) == {email(1): 1, email(2): 1}


def test_with_a_ledger_a_rerun_returns_the_recorded_interview_and_an_unknown_key_fails_naming_it(
    emulator: HindsightEmulator, sqlite_db: LedgerDatabase
) -> None:
    first = execute(single(ledger_conn_id=sqlite_db.conn_id))
    again = execute(single(ledger_conn_id=sqlite_db.conn_id))

    assert again["interview_request_id"] == first["interview_request_id"]
    assert again["survey_url"] == first["survey_url"]
    assert posts(emulator) == {email(1): 1}

    emulator.inject_create_then_delay(3, contact_email=email(2))
    with pytest.raises(HindsightUnknownOutcomeError):
        execute(single(request_key=key(2), contact_email=email(2), ledger_conn_id=sqlite_db.conn_id))
    with pytest.raises(HindsightUnknownOutcomeError, match="resend_unknown") as raised:
        execute(single(request_key=key(2), contact_email=email(2), ledger_conn_id=sqlite_db.conn_id))
    assert key(2) in str(raised.value) and email(2) not in str(raised.value)
    assert posts(emulator) == {email(1): 1, email(2): 1}

    resent = execute(
        single(request_key=key(2), contact_email=email(2), ledger_conn_id=sqlite_db.conn_id, resend_unknown="True")
    )
    assert resent["interview_request_id"]
    assert states(sqlite_db) == {key(1): "created", key(2): "created"}


def test_the_sql_transfer_streams_rows_folds_context_columns_and_shares_the_file_with_its_ledger(
    emulator: HindsightEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "warehouse.db"
    set_sqlite_connection(monkeypatch, "warehouse", path)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE deals (deal INTEGER, email TEXT, name TEXT, title TEXT, seats INTEGER)")
        connection.executemany(
            "INSERT INTO deals VALUES (?, ?, ?, ?, ?)",
            [(n, email(n), f"Contact {n}", "CTO" if n % 2 else None, n * 10) for n in range(1, 1201)],
        )
    sql = "SELECT deal AS request_key, email AS contact_email, name AS contact_name, title, seats FROM deals"

    def transfer(**kwargs: Any) -> SqlToHindsightCreateInterviewsOperator:
        return SqlToHindsightCreateInterviewsOperator(
            task_id="create",
            sql=sql,
            sql_conn_id="warehouse",
            ledger_conn_id="warehouse",
            context_columns=["title", "seats"],
            interview_type_id=INTERVIEW_TYPE,
            batch_size=100,
            **kwargs,
        )

    first = run(transfer())

    assert first.error is None, first.error
    assert counts(first.summary) == (1200, 1200, 0, 0, 0)
    by_email = {interview["contact_email"]: interview for interview in emulator.created_interviews()}
    assert len(by_email) == 1200
    with sqlite3.connect(path) as connection:
        keys = {row[0] for row in connection.execute(f"SELECT request_key FROM {TABLE} WHERE state = 'created'")}
    assert keys == {str(n) for n in range(1, 1201)}, "integer keys are recorded as their text"
    post = next(r for r in emulator.requests if r.method == "POST" and r.json["contact_email"] == email(3))
    assert post.json["contact_context"] == {"title": "CTO", "seats": 30}

    emulator.reset_requests()
    again = run(transfer())
    assert counts(again.summary) == (1200, 0, 1200, 0, 0)
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("select", "defaults", "words"),
    [
        (
            "deal AS request_key, name AS contact_name",
            {"interview_type_id": INTERVIEW_TYPE},
            "no contact_email column (columns: request_key, contact_name), which every row needs",
        ),
        (
            "deal AS request_key, email AS contact_email",
            {},
            "none of the columns sequence_id and interview_type_id",
        ),
    ],
)
def test_the_sql_transfer_refuses_a_missing_column_once_before_any_request(
    emulator: HindsightEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    select: str,
    defaults: dict[str, Any],
    words: str,
) -> None:
    path = tmp_path / "warehouse.db"
    set_sqlite_connection(monkeypatch, "warehouse", path)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE deals (deal INTEGER, email TEXT, name TEXT)")
        connection.executemany("INSERT INTO deals VALUES (?, ?, ?)", [(n, email(n), f"C {n}") for n in range(50)])

    outcome = run(
        SqlToHindsightCreateInterviewsOperator(
            task_id="create",
            sql=f"SELECT {select} FROM deals",
            sql_conn_id="warehouse",
            ledger_conn_id="warehouse",
            **defaults,
        )
    )

    assert outcome.error is not None
    assert outcome.error.field == "sql"
    assert words in outcome.error.message
    assert "@" not in outcome.error.message  # column names, never an address
    assert emulator.request_count == 0


def test_the_create_operators_report_the_interviews_dataset_and_are_registered(emulator: HindsightEmulator) -> None:
    from airflow_provider_hindsight.get_provider_info import get_provider_info

    pytest.importorskip("airflow.providers.openlineage")
    lineage = HindsightCreateInterviewsOperator(
        task_id="create", interviews=[], ledger_conn_id="x"
    ).get_openlineage_facets_on_start()
    assert lineage is not None
    assert [dataset.name for dataset in lineage.outputs] == ["interviews"]
    modules = [module for entry in get_provider_info()["operators"] for module in entry["python-modules"]]
    assert "airflow_provider_hindsight.operators.create" in modules
