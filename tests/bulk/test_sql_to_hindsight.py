"""SqlToHindsightOperator end to end: a real SQLite file through the Airflow SQLite provider, real HTTP."""

from __future__ import annotations

import datetime
import importlib
import sqlite3
import sys
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator
from tests.bulk.helpers import WAREHOUSE_CONN_ID
from tests.helpers import task_states, xcom_value

MODULE = "airflow_provider_hindsight.transfers.sql_to_hindsight"


def transfer(sql: str, **kwargs: Any) -> SqlToHindsightOperator:
    return SqlToHindsightOperator(task_id="transfer", sql_conn_id=WAREHOUSE_CONN_ID, sql=sql, **kwargs)


def bodies(emulator: HindsightEmulator) -> dict[int, Any]:
    """``{interview id: JSON body}`` of every request the emulator received."""
    return {int(request.path.rsplit("/", 1)[1]): request.json for request in emulator.requests}


def test_the_sqlite_connection_reads_the_file_the_test_wrote(warehouse: Any) -> None:
    from airflow.providers.common.compat.sdk import BaseHook

    path = warehouse("contacts", "interview_request_id INTEGER", [(1,), (2,)])

    hook = BaseHook.get_connection(WAREHOUSE_CONN_ID).get_hook()

    assert hook.get_uri() == f"sqlite:///{path}"
    assert hook.get_first("SELECT count(*) FROM contacts") == (2,)


def test_columns_named_like_the_api_fields_are_sent_as_they_are(
    execute: Any, warehouse: Any, hindsight_emulator: HindsightEmulator
) -> None:
    warehouse(
        "contacts",
        "id INTEGER, name TEXT, objective TEXT, notes TEXT, region TEXT",
        [
            (1, "Mia Chen", "Why Competitor X", "Met at the summit.", "emea"),
            (2, None, "Pricing", None, "emea"),
            (3, "Tom Okafor", None, '{"title": "CTO", "seats": 40}', "amer"),
            (4, None, None, "[1, 2]", "amer"),
            (5, None, None, "{not json", "amer"),
        ],
    )
    hindsight_emulator.add_interview(2, contact_name="Old Name", contact_context="Old notes")

    outcome = execute(
        transfer(
            "SELECT id AS INTERVIEW_REQUEST_ID, name AS Contact_Name, objective, notes AS contact_context, region "
            "FROM contacts"
        )
    )

    assert outcome.error is None
    assert outcome.result == {"total": 5, "succeeded": 5, "failed": 0, "failures": []}
    assert bodies(hindsight_emulator) == {
        1: {"contact_name": "Mia Chen", "objective": "Why Competitor X", "contact_context": "Met at the summit."},
        2: {"objective": "Pricing"},
        3: {"contact_name": "Tom Okafor", "contact_context": {"title": "CTO", "seats": 40}},
        4: {"contact_context": "[1, 2]"},
        5: {"contact_context": "{not json"},
    }
    assert hindsight_emulator.interview(2) == {
        "contact_context": "Old notes",
        "contact_name": "Old Name",
        "objective": "Pricing",
    }


@pytest.fixture
def typed_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite returning ``date``, ``datetime`` and ``Decimal`` for declared column types, as Postgres does."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setitem(sqlite3.converters, "DATE", lambda raw: datetime.date.fromisoformat(raw.decode()))
    monkeypatch.setitem(sqlite3.converters, "TIMESTAMP", lambda raw: datetime.datetime.fromisoformat(raw.decode()))
    monkeypatch.setitem(sqlite3.converters, "DECIMAL", lambda raw: Decimal(raw.decode()))
    monkeypatch.setattr(
        SqliteHook,
        "get_conn",
        lambda self: sqlite3.connect(self.get_uri().replace("sqlite:///", ""), detect_types=sqlite3.PARSE_DECLTYPES),
    )


@pytest.mark.usefixtures("typed_sqlite")
def test_context_columns_build_a_json_object_from_typed_values(
    execute: Any, warehouse: Any, hindsight_emulator: HindsightEmulator
) -> None:
    warehouse(
        "deals",
        "id INTEGER, closed DATE, updated TIMESTAMP, amount DECIMAL, share DECIMAL, competitor TEXT, memo BLOB, "
        "objective TEXT",
        [
            (1, "2026-03-01", "2026-03-02 10:30:00", "52000", "0.25", None, "café".encode(), "Why we lost"),
            (2, None, None, None, None, None, None, "Pricing"),
            (3, None, None, None, None, None, None, None),
        ],
    )

    outcome = execute(
        transfer(
            "SELECT id AS interview_request_id, closed, updated, amount, share, competitor, memo, objective "
            "FROM deals ORDER BY id",
            context_columns=["closed", "updated", "amount", "share", "competitor", "memo"],
            max_failures=1,
        )
    )

    assert outcome.error is None
    assert bodies(hindsight_emulator) == {
        1: {
            "contact_context": {
                "closed": "2026-03-01",
                "updated": "2026-03-02T10:30:00",
                "amount": 52000,
                "share": 0.25,
                "memo": "café",
            },
            "objective": "Why we lost",
        },
        2: {"objective": "Pricing"},
    }
    (failure,) = outcome.summary["failures"]
    assert failure["interview_request_id"] == 3
    assert "Nothing to update" in failure["message"]


@pytest.mark.parametrize(
    ("where", "parameters"),
    [
        ("segment = :segment AND seats >= :seats", {"segment": "emea", "seats": 10}),
        ("segment = ? AND seats >= ?", ["emea", 10]),
    ],
)
def test_query_parameters_are_passed_to_the_driver(
    execute: Any, warehouse: Any, hindsight_emulator: HindsightEmulator, where: str, parameters: Any
) -> None:
    warehouse(
        "contacts",
        "interview_request_id INTEGER, segment TEXT, seats INTEGER, objective TEXT",
        [(1, "emea", 40, "a"), (2, "amer", 40, "b"), (3, "emea", 5, "c"), (4, "emea", 10, "d")],
    )

    outcome = execute(transfer(f"SELECT * FROM contacts WHERE {where}", parameters=parameters))

    assert outcome.summary["succeeded"] == 2
    assert bodies(hindsight_emulator) == {1: {"objective": "a"}, 4: {"objective": "d"}}


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"batch_size": 0}, "batch_size", "positive int"),
        ({"batch_size": True}, "batch_size", "positive int"),
        ({"context_columns": "title"}, "context_columns", "['title']"),
        ({"context_columns": ["title", "TITLE"]}, "context_columns", "twice"),
        ({"sql_hook_params": "schema=x"}, "sql_hook_params", "dict of keyword arguments"),
    ],
)
def test_untemplated_arguments_are_refused_when_the_dag_is_parsed(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(HindsightValidationError) as info:
        transfer("SELECT * FROM contacts", **kwargs)

    assert info.value.field == field
    assert words in info.value.message


@pytest.mark.parametrize(
    ("sql", "kwargs", "field", "words"),
    [
        ("SELECT * FROM contacts", {"parameters": "emea"}, "parameters", "mapping or a sequence"),
        ("  ", {}, "sql", "non-empty"),
        ("SELECT title, notes FROM contacts", {}, "sql", "no interview_request_id column"),
        ("SELECT interview_request_id, title FROM contacts", {}, "sql", "no row would have a field to send"),
        ("SELECT * FROM contacts", {"context_columns": ["title", "seats"]}, "context_columns", "['seats']"),
        (
            "SELECT interview_request_id, notes AS contact_context, title FROM contacts",
            {"context_columns": ["title"]},
            "context_columns",
            "two places",
        ),
    ],
)
def test_bad_arguments_and_result_shapes_fail_before_any_request(
    execute: Any,
    warehouse: Any,
    hindsight_emulator: HindsightEmulator,
    spy_connections: list[Any],
    sql: str,
    kwargs: dict[str, Any],
    field: str,
    words: str,
) -> None:
    warehouse("contacts", "interview_request_id INTEGER, title TEXT, notes TEXT", [(1, "CTO", "Met at the summit.")])

    outcome = execute(transfer(sql, **kwargs))

    assert isinstance(outcome.error, HindsightValidationError)
    assert outcome.error.field == field
    assert words in outcome.error.message
    assert hindsight_emulator.request_count == 0
    assert "summary" not in outcome.ti.xcom
    assert all(connection.closed and connection.cursors[0].closed for connection in spy_connections)


def test_rows_are_fetched_in_batches_while_requests_go_out(
    execute: Any, warehouse: Any, hindsight_emulator: HindsightEmulator, spy_connections: list[Any]
) -> None:
    warehouse("contacts", "interview_request_id INTEGER, objective TEXT", [(n, f"Goal {n}") for n in range(1, 41)])

    outcome = execute(transfer("SELECT interview_request_id, objective FROM contacts", batch_size=5, max_workers=2))

    assert outcome.summary["succeeded"] == 40
    (connection,) = spy_connections
    (cursor,) = connection.cursors
    assert [size for _, size in cursor.fetches] == [5] * 9  # 8 full batches, then the empty one
    first_request = min(request.time for request in hindsight_emulator.requests)
    last_fetch = cursor.fetches[-1][0]
    assert first_request < last_fetch, "requests should start before the whole result is read"
    assert connection.closed
    assert cursor.closed


def test_the_connection_is_closed_when_the_task_fails(
    execute: Any, warehouse: Any, hindsight_emulator_factory: Any, spy_connections: list[Any]
) -> None:
    hindsight_emulator_factory(interview_ids=[1])
    warehouse("contacts", "interview_request_id INTEGER, objective TEXT", [(1, "a"), (2, "b")])

    outcome = execute(transfer("SELECT * FROM contacts"))

    assert outcome.error is not None
    assert outcome.summary["failed"] == 1
    (connection,) = spy_connections
    assert connection.closed
    assert connection.cursors[0].closed


def test_dry_run_reads_every_row_and_sends_nothing(
    execute: Any, warehouse: Any, hindsight_emulator: HindsightEmulator
) -> None:
    warehouse("contacts", "interview_request_id INTEGER, objective TEXT", [(n, "Pricing") for n in range(1, 4)])

    outcome = execute(transfer("SELECT * FROM contacts", dry_run=True))

    assert outcome.summary == {"total": 3, "succeeded": 3, "failed": 0, "failures": [], "dry_run": True}
    assert hindsight_emulator.request_count == 0


def test_without_common_sql_the_import_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException

    monkeypatch.setitem(sys.modules, "airflow.providers.common.sql.hooks.sql", None)
    monkeypatch.delitem(sys.modules, MODULE)

    with pytest.raises(AirflowOptionalProviderFeatureException, match=r"airflow-provider-hindsight\[sql\]"):
        importlib.import_module(MODULE)


@pytest.mark.usefixtures("warehouse")
def test_dag_loads_the_warehouse_and_transfers_with_templated_sql(
    run_dag: Any, hindsight_emulator: HindsightEmulator
) -> None:
    contacts = [
        [1, "Mia Chen", "emea", "VP Sales", 40],
        [2, "Tom Okafor", "emea", "CTO", 3],
        [3, "Lena Fischer", "amer", "Head of RevOps", 25],
        [4, "Diego Ruiz", "emea", "CFO", 12],
        [5, "Ana Silva", "emea", None, 30],
    ]

    dag_run = run_dag("bulk_sql_to_hindsight", contacts=contacts, segment="emea", min_seats=10)

    assert task_states(dag_run) == {"load": "success", "transfer": "success"}
    assert xcom_value(dag_run, "transfer", key="summary") == {"total": 3, "succeeded": 3, "failed": 0, "failures": []}
    assert bodies(hindsight_emulator) == {
        1: {"contact_name": "Mia Chen", "contact_context": {"title": "VP Sales", "seats": 40}},
        4: {"contact_name": "Diego Ruiz", "contact_context": {"title": "CFO", "seats": 12}},
        5: {"contact_name": "Ana Silva", "contact_context": {"seats": 30}},
    }
