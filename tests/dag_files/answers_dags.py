"""Test DAG on the answers watcher's asset (Airflow 3): each run appends the ids it was triggered with to a file.

The deployment test sets ``HINDSIGHT_TEST_ANSWERS_OUT`` (where the ids go) and shortens the plan's intervals.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

WAREHOUSE_CONN_ID = "answers_warehouse"

try:  # asset watchers: Airflow 3
    from airflow.sdk import Asset, AssetWatcher

    from airflow_provider_hindsight.triggers.answers import HindsightAnswersTrigger
except ImportError:
    pass
else:
    answers = Asset(
        "answers_test_transcripts",
        watchers=[
            AssetWatcher(
                name="answers_test_watcher",
                trigger=HindsightAnswersTrigger(
                    sql_conn_id=WAREHOUSE_CONN_ID,
                    ids_sql="SELECT interview_request_id FROM deals",
                    min_poll_interval=float(os.environ.get("HINDSIGHT_TEST_ANSWERS_POLL_INTERVAL", "300")),
                    batch_window=float(os.environ.get("HINDSIGHT_TEST_ANSWERS_BATCH_WINDOW", "60")),
                    refresh_interval=30,
                ),
            )
        ],
    )

    @dag(dag_id="answers_on_asset", schedule=[answers], start_date=datetime(2026, 1, 1), catchup=False)
    def answers_on_asset() -> None:
        @task
        def record(triggering_asset_events: Any = None) -> list[int]:
            ids = [
                i for event in triggering_asset_events[answers] for i in event.extra["payload"]["interview_request_ids"]
            ]
            with open(os.environ["HINDSIGHT_TEST_ANSWERS_OUT"], "a") as out:
                out.write(json.dumps(ids) + "\n")
            return ids

        record()

    answers_on_asset()
