"""The whole interview lifecycle: closed deals → create → enrich → wait → land transcripts → analyse.

1. ``load_closed_deals`` stands in for your warehouse load: a ``closed_deals`` table in SQLite.
2. **create**: one interview request per closed deal, exactly once (the create operator and its
   interview ledger ``hindsight_interviews``). Until the create operators ship in your version, the
   DAG starts from interviews Hindsight already holds: the deals table carries their
   ``interview_request_id`` (set ``CREATE_INTERVIEWS`` to choose).
3. **enrich**: push each contact's deal context (``SqlToHindsightOperator``).
4. **wait**: a deferrable ``HindsightInterviewSensor`` until every interview is completed; the task
   holds no worker slot while it waits.
5. **land**: ``HindsightInterviewsToSqlOperator`` upserts statuses and transcripts into
   ``hindsight_transcripts`` (completed ones are never fetched again).
6. **analyse**: which competitors the transcripts name, joined with the deals.

``make demo`` runs it against the emulator, which completes each interview a few seconds after it is
created (``complete_after``); ``HINDSIGHT_EXAMPLE_POKE_INTERVAL`` shortens the sensor's interval for
that. In production keep the default (300 s: see the docs' table of what polling costs).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_hindsight.sensors.interview import HindsightInterviewSensor
from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

try:  # the create operators (issue 16); without them the DAG starts from interviews that exist
    from airflow_provider_hindsight.transfers.sql_to_hindsight import (  # type: ignore[attr-defined]
        SqlToHindsightCreateInterviewsOperator,
    )
except ImportError:  # pragma: no cover - depends on the installed version
    SqlToHindsightCreateInterviewsOperator = None

WAREHOUSE_CONN_ID = "hindsight_example_warehouse"
CREATE_INTERVIEWS = SqlToHindsightCreateInterviewsOperator is not None
"""True: create an interview per deal (create-once). False: the deals name interviews Hindsight holds."""
SEQUENCE_ID = "seq_winloss_default"
"""The outreach sequence from your Hindsight dashboard: Hindsight e-mails each contact."""
POKE_INTERVAL = float(os.environ.get("HINDSIGHT_EXAMPLE_POKE_INTERVAL", "300"))

CLOSED_DEALS = [
    # deal_id, contact_id, contact_email, contact_name, stage, competitor, amount, interview_request_id
    ("D-7001", "C-11", "mia.chen@example.com", "Mia Chen", "Closed Lost", "Competitor X", 52000, 7001),
    ("D-7002", "C-12", "tom.okafor@example.com", "Tom Okafor", "Closed Won", "Competitor Y", 87000, 7002),
    ("D-7003", "C-13", "lena.fischer@example.com", "Lena Fischer", "Closed Lost", "Competitor Y", 23000, 7003),
    ("D-7004", "C-14", "diego.ruiz@example.com", "Diego Ruiz", "Closed Lost", "Competitor X", 120000, 7004),
]

# The interviews to wait for and to enrich: from the interview ledger when this DAG creates them.
INTERVIEWS_SQL = (
    """
    SELECT l.interview_request_id, d.contact_name, d.stage, d.competitor, d.amount
    FROM hindsight_interviews l JOIN closed_deals d ON l.request_key = d.deal_id || ':' || d.contact_id
    WHERE l.state = 'created'
    """
    if CREATE_INTERVIEWS
    else "SELECT interview_request_id, contact_name, stage, competitor, amount FROM closed_deals"
)


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
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        hook = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID)
        hook.run(
            [
                "DROP TABLE IF EXISTS closed_deals",
                "CREATE TABLE closed_deals (deal_id TEXT PRIMARY KEY, contact_id TEXT, contact_email TEXT, "
                "contact_name TEXT, stage TEXT, competitor TEXT, amount INTEGER, interview_request_id INTEGER)",
            ]
        )
        hook.insert_rows("closed_deals", CLOSED_DEALS)
        return len(CLOSED_DEALS)

    loaded = load_closed_deals()

    if CREATE_INTERVIEWS:
        created = SqlToHindsightCreateInterviewsOperator(
            task_id="create_interviews",
            sql_conn_id=WAREHOUSE_CONN_ID,
            sql="SELECT deal_id || ':' || contact_id AS request_key, contact_email, contact_name FROM closed_deals",
            sequence_id=SEQUENCE_ID,
            ledger_conn_id=WAREHOUSE_CONN_ID,  # the interview ledger lives beside the deals
        )
        loaded >> created
        upstream: Any = created
    else:
        upstream = loaded

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
        poke_interval=POKE_INTERVAL,
        timeout=7 * 24 * 3600,
    )

    land = HindsightInterviewsToSqlOperator(
        task_id="land_transcripts",
        sql_conn_id=WAREHOUSE_CONN_ID,
        table="hindsight_transcripts",
        # with the create operators, the default reads the 'created' rows of hindsight_interviews
        ids_sql=None if CREATE_INTERVIEWS else "SELECT interview_request_id FROM closed_deals",
    )

    @task
    def competitors_named() -> list[dict[str, Any]]:
        """Which competitors the transcripts name, with the deals and revenue behind them."""
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        rows = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID).get_records(
            f"""
            SELECT c.competitor, COUNT(t.interview_request_id) AS interviews, SUM(i.amount) AS amount
            FROM (SELECT DISTINCT competitor FROM closed_deals WHERE competitor IS NOT NULL) AS c
            JOIN hindsight_transcripts t ON t.status = 'completed' AND t.transcript LIKE '%' || c.competitor || '%'
            JOIN ({INTERVIEWS_SQL}) AS i ON i.interview_request_id = t.interview_request_id
            GROUP BY c.competitor ORDER BY interviews DESC, c.competitor
            """
        )
        return [{"competitor": name, "interviews": count, "amount": amount} for name, count, amount in rows]

    upstream >> enrich >> ids
    wait >> land >> competitors_named()


example_hindsight_lifecycle()
