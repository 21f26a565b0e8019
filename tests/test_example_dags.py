"""The example DAGs users copy: they import cleanly and run to success against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import ROOT, is_airflow_2, task_states, xcom_value

EXAMPLE_FILES = sorted(path.name for path in (ROOT / "dags").glob("*.py"))


def test_every_example_dag_imports_without_errors(dag_bag: Any) -> None:
    assert dag_bag.import_errors == {}
    example_dags = {dag_id for dag_id, dag in dag_bag.dags.items() if Path(dag.fileloc).name in EXAMPLE_FILES}
    assert example_dags == {
        "example_hindsight_single",
        "example_hindsight_mapped",
        "example_hindsight_bulk",
        "example_warehouse_load",
        "example_hindsight_warehouse_refresh",
        "example_hindsight_create",
        "example_hindsight_lifecycle",
        "example_hindsight_landing",
        "example_hindsight_history_alert",
        *(() if is_airflow_2() else ("example_hindsight_answers",)),  # an asset watcher: Airflow 3
    }


def test_single_example_sends_context_built_upstream(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    dag_run = run_dag("example_hindsight_single")

    assert set(task_states(dag_run).values()) == {"success"}
    built = xcom_value(dag_run, "build_contact_context")
    (request,) = hindsight_emulator.requests
    assert request.path == f"/api/v1/interviews/{built['interview_request_id']}"
    assert request.json == {
        "contact_context": built["contact_context"],
        "contact_name": built["contact_name"],
        "objective": f"Understand why we lost to {built['competitor']}.",
    }


def test_mapped_example_updates_one_interview_per_row(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    dag_run = run_dag("example_hindsight_mapped")

    rows = xcom_value(dag_run, "lost_deals")
    assert set(task_states(dag_run).values()) == {"success"}
    assert len(rows) == len(hindsight_emulator.requests)
    for row in rows:
        stored = hindsight_emulator.interview(row["interview_request_id"])
        assert stored == {key: row[key] for key in ("contact_context", "contact_name", "objective")}


def test_bulk_example_reports_every_row(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    dag_run = run_dag("example_hindsight_bulk")

    rows = xcom_value(dag_run, "contact_updates")
    summary = xcom_value(dag_run, "update_interviews")
    assert summary == {"total": len(rows), "succeeded": len(rows), "failed": 0, "failures": []}
    assert xcom_value(dag_run, "update_interviews", key="summary") == summary
    assert {row["interview_request_id"] for row in rows} == set(hindsight_emulator.interviews)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example warehouse connection, pointed at a SQLite file of this test."""
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_HINDSIGHT_EXAMPLE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    return path


def test_warehouse_refresh_pushes_every_deal(
    run_dag: Any, hindsight_emulator: HindsightEmulator, warehouse: Path
) -> None:
    from dags.example_hindsight_warehouse import DEALS

    load_run = run_dag("example_warehouse_load")
    assert task_states(load_run) == {"load_deals": "success"}
    assert warehouse.exists()

    refresh_run = run_dag("example_hindsight_warehouse_refresh")

    summary = xcom_value(refresh_run, "push_contact_context")
    assert summary == {"total": len(DEALS), "succeeded": len(DEALS), "failed": 0, "unchanged": 0, "failures": []}
    assert hindsight_emulator.request_count == len(DEALS)
    for interview_id, name, title, stage, competitor, amount, notes in DEALS:
        context = {"title": title, "stage": stage, "competitor": competitor, "amount": amount, "notes": notes}
        assert hindsight_emulator.interview(interview_id) == {
            "contact_name": name,
            "contact_context": {key: value for key, value in context.items() if value is not None},
            "objective": f"Understand the {stage.lower()} decision",
        }

    again = run_dag("example_hindsight_warehouse_refresh")  # nothing changed: no update, one check of the key
    assert xcom_value(again, "push_contact_context")["unchanged"] == len(DEALS)
    assert hindsight_emulator.request_count == len(DEALS) + 1
    assert hindsight_emulator.requests[-1].path == "/api/v1/interviews/0"

    forced = run_dag("example_hindsight_warehouse_refresh", full_refresh=True)
    assert xcom_value(forced, "push_contact_context")["succeeded"] == len(DEALS)
    assert hindsight_emulator.request_count == 2 * len(DEALS) + 1


def test_lifecycle_example_waits_lands_the_transcripts_and_names_the_competitors(
    run_dag: Any, hindsight_emulator_factory: Any, warehouse: Path
) -> None:
    from dags.example_hindsight_lifecycle import CLOSED_DEALS

    emulator = hindsight_emulator_factory(complete_after=0)  # each contact answers at once
    dag_run = run_dag("example_hindsight_lifecycle")

    assert set(task_states(dag_run).values()) == {"success"}
    statuses = xcom_value(dag_run, "wait_for_interviews")
    assert list(statuses.values()) == ["completed"] * len(CLOSED_DEALS)
    landed = xcom_value(dag_run, "land_transcripts")
    assert (landed["total"], landed["newly_completed"], landed["failed"]) == (len(CLOSED_DEALS), len(CLOSED_DEALS), 0)
    assert xcom_value(dag_run, "competitors_named") == [
        {"competitor": "Competitor X", "interviews": 2, "amount": 172000},
        {"competitor": "Competitor Y", "interviews": 2, "amount": 110000},
    ]
    assert sorted(record["deal_id"] for record in emulator.created_interviews()) == sorted(
        deal[0] for deal in CLOSED_DEALS
    )

    again = run_dag("example_hindsight_lifecycle")  # nothing new: no create, no fetch of a completed one
    assert set(task_states(again).values()) == {"success"}
    assert xcom_value(again, "land_transcripts")["already_completed"] == len(CLOSED_DEALS)
    assert len(emulator.created_interviews()) == len(CLOSED_DEALS)

    landing = run_dag("example_hindsight_landing")  # the scheduled landing: nothing left to fetch
    assert task_states(landing) == {"land_transcripts": "success"}
    assert xcom_value(landing, "land_transcripts")["already_completed"] == len(CLOSED_DEALS)


def test_create_example_invites_each_closed_deal_once_and_enriches_it(
    run_dag: Any, hindsight_emulator: HindsightEmulator, warehouse: Path
) -> None:
    from dags.example_hindsight_create import CLOSED_DEALS

    closed = [deal for deal in CLOSED_DEALS if deal[5].startswith("Closed")]
    first = run_dag("example_hindsight_create")

    assert set(task_states(first).values()) == {"success"}
    summary = xcom_value(first, "create_interviews", key="summary")
    assert (summary["total"], summary["created"], summary["existing"]) == (len(closed), len(closed), 0)
    created = hindsight_emulator.created_interviews()
    assert sorted(record["contact_email"] for record in created) == sorted(deal[2] for deal in closed)
    for record in created:
        deal = next(deal for deal in closed if deal[2] == record["contact_email"])
        assert record["contact_context"]["notes"] == deal[8], "enriched from the ledger join"
        assert record["deal_id"] == deal[0], "the create names its deal: transcripts join to deals directly"
    enriched = xcom_value(first, "enrich_created", key="summary")
    assert enriched["succeeded"] == len(closed)

    hindsight_emulator.reset_requests()
    second = run_dag("example_hindsight_create")

    assert set(task_states(second).values()) == {"success"}
    assert xcom_value(second, "create_interviews", key="summary")["existing"] == len(closed)
    # a rerun creates nothing and updates nothing: the change-only enrich step, owing nothing, checks the key once
    assert [(r.method, r.path, r.body) for r in hindsight_emulator.requests] == [
        ("PATCH", "/api/v1/interviews/0", b"{}")
    ]
    assert len(hindsight_emulator.created_interviews()) == len(closed)


def test_history_alert_checks_the_failed_rows_each_run_left(
    run_dag: Any, hindsight_emulator: HindsightEmulator, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = hindsight_emulator.connection()
    del connection["conn_id"]
    connection["extra"]["history_conn_id"] = "hindsight_example_warehouse"
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    within = run_dag("example_hindsight_history_alert")
    past = run_dag("example_hindsight_history_alert", max_failed_rows=3)  # 2 + 2 rows since a day ago

    assert set(task_states(within).values()) == {"success"}
    assert task_states(past)["update_interviews"] == "success"
    assert task_states(past)["alert_on_failed_rows"] == "failed"
