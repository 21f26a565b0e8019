"""OpenLineage: the SQL inputs a transfer reads (real SQLite and PostgreSQL) and the interviews every operator writes.

Datasets are compared with what Airflow's own ``SQLExecuteQueryOperator`` reports for the same query
and connection, and read through the OpenLineage provider's ``ExtractorManager``, the piece its
listener calls on task start, success and failure.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.openlineage.facet import Dataset
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.openlineage.extractors import ExtractorManager, OperatorLineage
from airflow.providers.openlineage.extractors.base import DefaultExtractor
from airflow.utils.state import TaskInstanceState

from airflow_provider_hindsight.lineage import (
    interviews_dataset_namespace,
)
from airflow_provider_hindsight.operators.hindsight import (
    HindsightBulkUpdateInterviewsOperator,
    HindsightUpdateInterviewOperator,
)
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator
from tests.support.postgres import PostgresDatabase, PostgresServer

SQLITE_CONN_ID = "lineage_sqlite"
POSTGRES_CONN_ID = "lineage_postgres"
ENRICHMENT_COLUMNS = ("interview_request_id", "contact_name", "title", "notes")
SQL = "SELECT interview_request_id, contact_name, title, notes FROM enrichment"


def sql_transfer(sql: str, sql_conn_id: str, *, sql_hook_params: dict[str, Any] | None = None) -> Any:
    return SqlToHindsightOperator(task_id="push", sql=sql, sql_conn_id=sql_conn_id, sql_hook_params=sql_hook_params)


def bulk_operator() -> Any:
    return HindsightBulkUpdateInterviewsOperator(
        task_id="push_all", updates=[{"interview_request_id": 1, "objective": "Pricing"}]
    )


def single_operator(hindsight_conn_id: str = "hindsight_default") -> Any:
    return HindsightUpdateInterviewOperator(
        task_id="push_one", interview_request_id=1, objective="Pricing", hindsight_conn_id=hindsight_conn_id
    )


def interviews_at(emulator: HindsightEmulator) -> Dataset:
    return Dataset(namespace=f"hindsight://127.0.0.1:{emulator.port}", name="interviews")


def airflow_sql_operator_inputs(sql: str, conn_id: str) -> list[Any]:
    """The inputs Airflow's own ``SQLExecuteQueryOperator`` reports for ``sql`` on ``conn_id``."""
    lineage = SQLExecuteQueryOperator(task_id="reference", conn_id=conn_id, sql=sql).get_openlineage_facets_on_start()
    assert lineage is not None
    return list(lineage.inputs)


def schema_fields(dataset: Any) -> list[str]:
    return [field.name for field in dataset.facets["schema"].fields]


# --- the namespace -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "namespace"),
    [
        ("https://app.usehindsight.com/api/v1", "hindsight://app.usehindsight.com"),
        ("http://127.0.0.1:9321/api/v1", "hindsight://127.0.0.1:9321"),
        ("https://hindsight.example.com:8443/api/v1", "hindsight://hindsight.example.com:8443"),
        ("https://App.UseHindsight.COM:443/api/v1/", "hindsight://app.usehindsight.com"),
        ("http://localhost:80/api/v1", "hindsight://localhost"),
        ("http://[::1]:9321/api/v1", "hindsight://[::1]:9321"),
        ("https://user:secret@app.usehindsight.com/api/v1", "hindsight://app.usehindsight.com"),
    ],
)
def test_the_namespace_is_the_api_host_and_any_port_that_is_not_the_schemes_default(
    base_url: str, namespace: str
) -> None:
    assert interviews_dataset_namespace(base_url) == namespace


@pytest.mark.parametrize("base_url", ["", "app.usehindsight.com/api/v1", "https:///api/v1", "http://127.0.0.1:99999/a"])
def test_a_base_url_without_a_usable_host_is_refused_naming_it(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        interviews_dataset_namespace(base_url)


# --- the output: every operator ------------------------------------------------------------------


def test_the_bulk_and_single_operators_report_the_interviews_as_their_only_dataset(
    hindsight_emulator: HindsightEmulator,
) -> None:
    for operator in (bulk_operator(), single_operator()):
        for lineage in (operator.get_openlineage_facets_on_start(), operator.get_openlineage_facets_on_complete(None)):
            assert lineage == OperatorLineage(outputs=[interviews_at(hindsight_emulator)])
    assert hindsight_emulator.request_count == 0


def test_a_connection_without_host_reports_the_hindsight_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps({"conn_type": "hindsight", "password": "lineage-test-key"})
    )

    lineage = single_operator().get_openlineage_facets_on_start()

    assert lineage.outputs == [Dataset(namespace="hindsight://app.usehindsight.com", name="interviews")]


@pytest.mark.parametrize(
    "connection",
    [None, {"conn_type": "hindsight", "password": "sk-lineage-secret", "host": "ftp://files.example.com"}],
    ids=["missing", "invalid-host"],
)
def test_a_connection_that_cannot_name_the_api_gives_no_output_and_does_not_fail(
    connection: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if connection is not None:
        monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_BROKEN", json.dumps(connection))
    caplog.set_level(logging.DEBUG, logger="airflow_provider_hindsight")

    lineage = single_operator("lineage_broken").get_openlineage_facets_on_start()

    assert lineage == OperatorLineage()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("no output dataset for connection 'lineage_broken'" in message for message in warnings), warnings
    assert "sk-lineage-secret" not in caplog.text


# --- the inputs: SqlToHindsightOperator ----------------------------------------------------------


@pytest.fixture
def sqlite_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite file with an ``enrichment`` table behind the ``lineage_sqlite`` connection."""
    path = tmp_path / "warehouse.db"
    with closing(sqlite3.connect(path)) as database, database:
        database.execute(f"CREATE TABLE enrichment ({', '.join(ENRICHMENT_COLUMNS)})")
        database.execute("INSERT INTO enrichment VALUES (1, 'Mia Chen', 'CTO', 'Met at the summit.')")
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return SQLITE_CONN_ID


def create_enrichment_table(database: PostgresDatabase, *extra_columns: str) -> None:
    import psycopg

    columns = ["interview_request_id integer", "contact_name text", "title text", "notes text", *extra_columns]
    with psycopg.connect(**database.params, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE enrichment ({', '.join(columns)})".encode())
        connection.execute(b"CREATE TABLE deals (interview_request_id integer, amount numeric)")


@pytest.fixture
def postgres_warehouse(postgres_database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> PostgresDatabase:
    """``enrichment`` and ``deals`` tables in this test's PostgreSQL database, behind ``lineage_postgres``."""
    create_enrichment_table(postgres_database)
    postgres_database.set_airflow_connection(monkeypatch, POSTGRES_CONN_ID)
    return postgres_database


def test_sqlite_has_no_openlineage_database_info_so_only_the_output_is_reported_as_airflow_does(
    sqlite_warehouse: str, hindsight_emulator: HindsightEmulator
) -> None:
    operator = sql_transfer(SQL, sqlite_warehouse)

    start = operator.get_openlineage_facets_on_start()
    complete = operator.get_openlineage_facets_on_complete(None)

    assert airflow_sql_operator_inputs(SQL, sqlite_warehouse) == []
    assert start == complete == OperatorLineage(outputs=[interviews_at(hindsight_emulator)])


def test_postgres_tables_are_the_inputs_named_by_the_hook_with_their_columns(
    postgres_warehouse: PostgresDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    lineage = sql_transfer(SQL, POSTGRES_CONN_ID).get_openlineage_facets_on_start()

    namespace = f"postgres://127.0.0.1:{postgres_warehouse.port}"
    assert [(dataset.namespace, dataset.name) for dataset in lineage.inputs] == [
        (namespace, f"{postgres_warehouse.name}.public.enrichment")
    ]
    assert schema_fields(lineage.inputs[0]) == list(ENRICHMENT_COLUMNS)
    assert lineage.inputs == airflow_sql_operator_inputs(SQL, POSTGRES_CONN_ID)
    assert lineage.outputs == [interviews_at(hindsight_emulator)]
    assert lineage.job_facets["sql"].query == SQL
    assert hindsight_emulator.request_count == 0


def test_every_table_a_join_reads_is_an_input(
    postgres_warehouse: PostgresDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    sql = (
        "SELECT e.interview_request_id, e.contact_name, d.amount FROM enrichment e "
        "JOIN deals d ON d.interview_request_id = e.interview_request_id"
    )

    lineage = sql_transfer(sql, POSTGRES_CONN_ID).get_openlineage_facets_on_complete(None)

    assert sorted(dataset.name for dataset in lineage.inputs) == [
        f"{postgres_warehouse.name}.public.deals",
        f"{postgres_warehouse.name}.public.enrichment",
    ]
    assert lineage.outputs == [interviews_at(hindsight_emulator)]


def test_sql_hook_params_reach_the_source_hook(
    postgres_warehouse: PostgresDatabase,
    postgres_server: PostgresServer,
    hindsight_emulator: HindsightEmulator,
) -> None:
    other = postgres_server.create_database("lineage_other_database")
    create_enrichment_table(other, "region text")

    lineage = sql_transfer(
        SQL, POSTGRES_CONN_ID, sql_hook_params={"database": other.name}
    ).get_openlineage_facets_on_start()

    assert [dataset.name for dataset in lineage.inputs] == [f"{other.name}.public.enrichment"]
    assert schema_fields(lineage.inputs[0]) == [*ENRICHMENT_COLUMNS, "region"]


def test_a_query_the_parser_cannot_read_still_reports_the_output_and_the_parse_error(
    postgres_warehouse: PostgresDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    sql = f"{SQL} WHERE title = %(title)s"

    lineage = sql_transfer(sql, POSTGRES_CONN_ID).get_openlineage_facets_on_start()

    assert lineage.inputs == []
    assert lineage.outputs == [interviews_at(hindsight_emulator)]
    assert lineage.run_facets["extractionError"].failedTasks == 1


def test_a_missing_source_connection_gives_the_output_only_and_a_warning(
    hindsight_emulator: HindsightEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="airflow_provider_hindsight")

    lineage = sql_transfer(SQL, "lineage_no_such_connection").get_openlineage_facets_on_start()

    assert lineage == OperatorLineage(outputs=[interviews_at(hindsight_emulator)])
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("no input datasets from connection 'lineage_no_such_connection'" in message for message in warnings)


# --- how Airflow's OpenLineage listener reads it -------------------------------------------------


@pytest.mark.parametrize(
    "state", [TaskInstanceState.RUNNING, TaskInstanceState.SUCCESS, TaskInstanceState.FAILED], ids=str
)
def test_the_listener_extracts_inputs_and_output_on_start_success_and_failure(
    state: TaskInstanceState, postgres_warehouse: PostgresDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    operator = sql_transfer(SQL, POSTGRES_CONN_ID)
    manager = ExtractorManager()

    lineage = manager.extract_metadata(
        dagrun=SimpleNamespace(run_id="manual__lineage"), task=operator, task_instance_state=state, task_instance=None
    )

    assert manager.get_extractor_class(operator) is DefaultExtractor
    assert [dataset.name for dataset in lineage.inputs] == [f"{postgres_warehouse.name}.public.enrichment"]
    assert lineage.outputs == [interviews_at(hindsight_emulator)]


# --- without the OpenLineage provider ------------------------------------------------------------


def test_without_the_openlineage_provider_every_operator_reports_nothing_and_nothing_fails(
    sqlite_warehouse: str, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    operators = [sql_transfer(SQL, sqlite_warehouse), bulk_operator(), single_operator()]
    for name in [name for name in sys.modules if name.startswith("airflow.providers.openlineage")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)
    with pytest.raises(ImportError):
        import airflow.providers.openlineage.extractors  # noqa: F401

    for operator in operators:
        assert operator.get_openlineage_facets_on_start() is None
        assert operator.get_openlineage_facets_on_complete(None) is None
