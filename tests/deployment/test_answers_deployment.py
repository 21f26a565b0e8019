"""On a real Airflow 3 deployment (api-server, scheduler, dag-processor, triggerer): an answer starts a DAG run.

The asset watcher of ``tests/dag_files/answers_dags.py`` watches interviews at the emulator; each run
of ``answers_on_asset`` appends its ``triggering_asset_events`` ids to a file. The triggerer is
killed with ``kill -9`` mid-watch and started again: every answer is announced, none lost.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.deployment import AirflowDeployment
from tests.helpers import ROOT, is_airflow_2

pytestmark = pytest.mark.skipif(is_airflow_2(), reason="asset watchers need Airflow 3")

WAIT_SECONDS = 120.0
IDS = (1, 2, 3, 4)


def wait_for(condition: Callable[[], bool], what: str, deployment: AirflowDeployment) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen; triggerer log:\n{deployment.log('triggerer')[-4000:]}")
        time.sleep(0.5)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[AirflowDeployment, HindsightEmulator, Path, Path]]:
    warehouse = tmp_path / "warehouse.db"
    with closing(sqlite3.connect(warehouse)) as database:
        database.execute("CREATE TABLE deals (interview_request_id BIGINT)")
        database.executemany("INSERT INTO deals VALUES (?)", [(key,) for key in IDS])
        database.commit()
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "tests" / "dag_files" / "answers_dags.py", dags)
    out = tmp_path / "announced.jsonl"
    with HindsightEmulator(api_key="deploy-key") as emulator:
        for key in IDS:
            emulator.add_interview(key, status="sent")
        name, value = emulator.connection_env("hindsight_default")
        env = {
            name: value,
            "AIRFLOW_CONN_ANSWERS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
            "HINDSIGHT_TEST_ANSWERS_OUT": str(out),
            "HINDSIGHT_TEST_ANSWERS_POLL_INTERVAL": "2",
            "HINDSIGHT_TEST_ANSWERS_BATCH_WINDOW": "1",
        }
        with AirflowDeployment(tmp_path / "home", dags, env=env) as airflow:
            airflow.migrate()
            airflow.start()
            yield airflow, emulator, out, warehouse


def announced_runs(out: Path) -> list[list[int]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def marked(warehouse: Path) -> set[int]:
    try:
        with closing(sqlite3.connect(warehouse)) as database:
            rows = database.execute(
                "SELECT interview_request_id FROM hindsight_transcripts WHERE announced_at IS NOT NULL"
            ).fetchall()
    except sqlite3.Error:
        return set()
    return {int(key) for (key,) in rows}


def test_an_answer_starts_a_dag_run_on_the_asset_and_a_killed_triggerer_loses_none(
    deployment: tuple[AirflowDeployment, HindsightEmulator, Path, Path],
) -> None:
    airflow, emulator, out, warehouse = deployment
    wait_for(lambda: emulator.request_count > 0, "the watcher's first fetch", airflow)

    emulator.complete(1)
    wait_for(lambda: [1] in announced_runs(out), "a DAG run with interview 1 in triggering_asset_events", airflow)
    wait_for(lambda: marked(warehouse) == {1}, "interview 1 marked announced", airflow)

    airflow.kill("triggerer")  # mid-watch: interviews 2 to 4 are pending
    emulator.complete(2)
    emulator.complete(3)
    airflow.start("triggerer")
    emulator.complete(4)

    def every_answer_announced() -> bool:
        return {key for ids in announced_runs(out) for key in ids} == set(IDS)

    wait_for(every_answer_announced, "every answer announced after the restart", airflow)
    wait_for(lambda: marked(warehouse) == set(IDS), "every answer marked announced", airflow)
    assert announced_runs(out)[0] == [1]
