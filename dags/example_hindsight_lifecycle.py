"""The whole interview lifecycle: closed deals → create → enrich → wait → land transcripts → analyse.

1. ``load_closed_deals`` stands in for your warehouse load: a ``lifecycle_deals`` table in SQLite.
2. **create**: one interview request per closed deal, exactly once
   (``SqlToHindsightCreateInterviewsOperator`` and its interview ledger ``hindsight_interviews``).
3. **enrich**: push each contact's deal context (``SqlToHindsightOperator``), joined through the ledger.
4. **wait**: a deferrable ``HindsightInterviewSensor`` until every interview is completed, for at
   most a week; the task holds no worker slot while it waits. Most contacts never answer, so at the
   deadline it succeeds with the statuses it has (``succeed_on_timeout=True``) and the run goes on.
5. **land**: ``HindsightInterviewsToSqlOperator`` upserts statuses and transcripts of the ledger's
   ``created`` interviews into ``hindsight_transcripts`` (completed ones are never fetched again).
6. **analyse**: which competitors the transcripts name, joined with the deals.

``example_hindsight_landing`` (below) lands the same ledger's interviews every six hours, so that
answers that come after the sensor's deadline reach the warehouse too: the polling plan fetches only
the interviews that are due, so a run soon after another costs next to nothing.

On Airflow 3, ``example_hindsight_answers`` runs when answers land instead of on a clock: an asset
watcher (``HindsightAnswersTrigger``) lands the same ledger's interviews in the triggerer and
announces each batch of newly completed rows as an event of the asset ``hindsight_transcripts``; the
DAG logs the ids and reads their rows from the table. A batch may come twice after a crash, so it
reads the table (the truth) and writes nothing that a second run would double.

It imports the stand-in warehouse from ``example_warehouse.py``: copy that file beside it.

``make demo`` runs both against the emulator, which completes each interview a few seconds after it
is created (``complete_after``); ``HINDSIGHT_EXAMPLE_POKE_INTERVAL`` shortens the sensor's shortest
interval for that. By hand (the quick start's "The whole loop" has the connections)::

    python -m airflow_provider_hindsight.testing --requests-per-minute 300 --complete-after 10
    HINDSIGHT_EXAMPLE_POKE_INTERVAL=5 timeout -s INT 600 airflow dags test example_hindsight_lifecycle

Without ``--complete-after`` no interview completes and the sensor waits its whole week;
``airflow dags test`` stops on SIGINT, not on SIGTERM, hence ``timeout -s INT``. In production keep
the default interval (300 s: see the docs' table of what polling costs).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task
from example_warehouse import WAREHOUSE_CONN_ID, load_table

from airflow_provider_hindsight.sensors.interview import HindsightInterviewSensor
from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from airflow_provider_hindsight.transfers.sql_to_hindsight import (
    SqlToHindsightCreateInterviewsOperator,
    SqlToHindsightOperator,
)

SEQUENCE_ID = "seq_winloss_default"
"""The outreach sequence from your Hindsight dashboard: Hindsight e-mails each contact."""
POKE_INTERVAL = float(os.environ.get("HINDSIGHT_EXAMPLE_POKE_INTERVAL", "300"))
ANSWERS_POLL_INTERVAL = float(os.environ.get("HINDSIGHT_EXAMPLE_ANSWERS_POLL_INTERVAL", "300"))
"""The watcher's shortest interval between two fetches of one interview (the demo shortens it)."""
ANSWERS_BATCH_WINDOW = float(os.environ.get("HINDSIGHT_EXAMPLE_ANSWERS_BATCH_WINDOW", "60"))

CLOSED_DEALS = [
    # deal_id, contact_id, contact_email, contact_name, stage, competitor, amount
    ("D-7001", "C-11", "mia.chen@lifecycle.example.com", "Mia Chen", "Closed Lost", "Competitor X", 52000),
    ("D-7002", "C-12", "tom.okafor@lifecycle.example.com", "Tom Okafor", "Closed Won", "Competitor Y", 87000),
    ("D-7003", "C-13", "lena.fischer@lifecycle.example.com", "Lena Fischer", "Closed Lost", "Competitor Y", 23000),
    ("D-7004", "C-14", "diego.ruiz@lifecycle.example.com", "Diego Ruiz", "Closed Lost", "Competitor X", 120000),
]

CREATE_SQL = """
    SELECT deal_id || ':' || contact_id AS request_key, deal_id, contact_email, contact_name
    FROM lifecycle_deals
"""

INTERVIEWS_SQL = """
    SELECT l.interview_request_id, d.contact_name, d.stage, d.competitor, d.amount
    FROM hindsight_interviews AS l
    JOIN lifecycle_deals AS d ON l.request_key = d.deal_id || ':' || d.contact_id
    WHERE l.state = 'created'
"""
"""This DAG's created interviews, with their deals: from the interview ledger joined to the deals."""


@dag(
    dag_id="example_hindsight_lifecycle",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hindsight", "example"],
)
def example_hindsight_lifecycle() -> None:
    @task
    def load_closed_deals() -> int:
        return load_table(
            "lifecycle_deals",
            "deal_id TEXT PRIMARY KEY, contact_id TEXT, contact_email TEXT, contact_name TEXT, stage TEXT, "
            "competitor TEXT, amount INTEGER",
            CLOSED_DEALS,
        )

    create = SqlToHindsightCreateInterviewsOperator(
        task_id="create_interviews",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql=CREATE_SQL,
        sequence_id=SEQUENCE_ID,
        ledger_conn_id=WAREHOUSE_CONN_ID,  # the interview ledger lives beside the deals
    )

    enrich = SqlToHindsightOperator(
        task_id="enrich",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql=f"""
            SELECT interview_request_id, contact_name, stage, competitor, amount,
                   'Understand the ' || lower(stage) || ' decision against ' || competitor AS objective
            FROM ({INTERVIEWS_SQL}) AS interviews
        """,
        context_columns=["stage", "competitor", "amount"],
    )

    @task
    def interview_ids() -> list[int]:
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        rows = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID).get_records(INTERVIEWS_SQL)
        return [int(row[0]) for row in rows]

    ids = interview_ids()
    wait = HindsightInterviewSensor(
        task_id="wait_for_interviews",
        interview_request_ids=ids,
        target_status="completed",
        deferrable=True,  # no worker slot while contacts take days to answer
        poke_interval=POKE_INTERVAL,  # a young interview's interval; older ones are polled less often
        timeout=7 * 24 * 3600,
        succeed_on_timeout=True,  # after a week, go on with the answers that came; the landing DAG catches later ones
    )

    land = HindsightInterviewsToSqlOperator(
        task_id="land_transcripts",
        sql_conn_id=WAREHOUSE_CONN_ID,
        table="hindsight_transcripts",
        # ids_sql=None: the 'created' rows of the interview ledger hindsight_interviews
    )

    @task
    def competitors_named() -> list[dict[str, Any]]:
        """Which competitors the transcripts name, with the deals and revenue behind them."""
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        rows = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID).get_records(
            f"""
            SELECT c.competitor, COUNT(t.interview_request_id) AS interviews, SUM(i.amount) AS amount
            FROM (SELECT DISTINCT competitor FROM lifecycle_deals WHERE competitor IS NOT NULL) AS c
            JOIN hindsight_transcripts t ON t.status = 'completed' AND t.transcript LIKE '%' || c.competitor || '%'
            JOIN ({INTERVIEWS_SQL}) AS i ON i.interview_request_id = t.interview_request_id
            GROUP BY c.competitor ORDER BY interviews DESC, c.competitor
            """
        )
        return [{"competitor": name, "interviews": count, "amount": amount} for name, count, amount in rows]

    load_closed_deals() >> create >> enrich >> ids
    wait >> land >> competitors_named()


example_hindsight_lifecycle()


@dag(
    dag_id="example_hindsight_landing",
    schedule="0 */6 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["hindsight", "example"],
)
def example_hindsight_landing() -> None:
    """Every six hours: land the interview ledger's interviews that are due on the polling plan."""
    HindsightInterviewsToSqlOperator(
        task_id="land_transcripts",
        sql_conn_id=WAREHOUSE_CONN_ID,
        table="hindsight_transcripts",
    )


example_hindsight_landing()


try:  # Airflow 3: asset watchers
    from airflow.sdk import Asset, AssetWatcher

    from airflow_provider_hindsight.triggers.answers import HindsightAnswersTrigger
except ImportError:  # Airflow 2: example_hindsight_landing lands answers on a schedule
    pass
else:
    answers = Asset(
        "hindsight_transcripts",
        watchers=[
            AssetWatcher(
                name="hindsight_answers",
                trigger=HindsightAnswersTrigger(
                    sql_conn_id=WAREHOUSE_CONN_ID,
                    table="hindsight_transcripts",  # the landing's table: the two may run together
                    min_poll_interval=ANSWERS_POLL_INTERVAL,
                    batch_window=ANSWERS_BATCH_WINDOW,
                ),
            )
        ],
    )

    @dag(
        dag_id="example_hindsight_answers",
        schedule=[answers],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["hindsight", "example"],
    )
    def example_hindsight_answers() -> None:
        """Runs minutes after contacts answer: reads the rows the event names (it may see a batch twice)."""

        @task
        def new_answers(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
            from airflow.providers.sqlite.hooks.sqlite import SqliteHook

            ids = sorted(
                {
                    i
                    for event in triggering_asset_events[answers]
                    for i in event.extra["payload"]["interview_request_ids"]
                }
            )
            print(f"Answers to interviews {ids}")
            if not ids:
                return []
            rows = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID).get_records(
                "SELECT interview_request_id, status, length(transcript) FROM hindsight_transcripts "
                f"WHERE interview_request_id IN ({', '.join('?' * len(ids))}) ORDER BY 1",
                parameters=ids,
            )
            return [{"interview_request_id": key, "status": status, "characters": size} for key, status, size in rows]

        new_answers()

    example_hindsight_answers()
