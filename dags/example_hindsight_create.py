"""Closed deals get an interview request, exactly once; then the warehouse enriches them.

The first step of the win-loss loop: a deal closes, lands in the warehouse, and its contact should
be invited once. ``SqlToHindsightCreateInterviewsOperator`` reads the closed deals and creates one
interview request per ``request_key`` (here ``<deal id>:<contact id>``: stable, and no personal
data, because keys are named in logs). The interview ledger ``hindsight_interviews`` lives in the
same warehouse: the claim is committed before each POST and the 201 recorded right after, so a
retry, a rerun or a second run at the same time never invites anyone twice. Each create sends its
``deal_id``, so Hindsight's interview (and the transcript landed from it) names its deal.

The ledger is a table like any other: the second task joins it to the deals and enriches each
created interview with ``SqlToHindsightOperator`` (change-only sync: a rerun sends nothing that did
not change). Run the DAG twice: the second run creates nothing and sends nothing. It imports the
stand-in warehouse from ``example_warehouse.py``: copy that file beside it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import dag, task
from example_warehouse import WAREHOUSE_CONN_ID, load_table

from airflow_provider_hindsight.transfers.sql_to_hindsight import (
    SqlToHindsightCreateInterviewsOperator,
    SqlToHindsightOperator,
)

INTERVIEW_TYPE_ID = "type_winloss_demo"
"""A link-only interview type (no e-mail from Hindsight); use a ``sequence_id`` to have Hindsight e-mail them."""

CLOSED_DEALS = [
    # deal_id, contact_id, contact_email, contact_name, title, stage, competitor, amount, notes
    ("D-1042", "C-7781", "mia.chen@example.com", "Mia Chen", "VP Sales", "Closed Lost", "Competitor X", 52000,
     "Chose X for its Salesforce sync."),
    ("D-1043", "C-7790", "tom.okafor@example.com", "Tom Okafor", "CTO", "Closed Won", None, 87000,
     "Security review took six weeks."),
    ("D-1044", "C-7802", "lena.fischer@example.com", "Lena Fischer", "Head of RevOps", "Closed Lost", "Competitor Y",
     23000, "Budget moved to 2027."),
    ("D-1045", "C-7815", "diego.ruiz@example.com", "Diego Ruiz", "CFO", "Closed Won", None, 120000,
     "Asked for annual billing."),
    ("D-1046", "C-7820", "ana.silva@example.com", "Ana Silva", "COO", "Negotiation", None, 64000,
     "Still open: not interviewed yet."),
]  # fmt: skip

CREATE_SQL = """
    SELECT deal_id || ':' || contact_id AS request_key,
           deal_id, contact_email, contact_name,
           'Understand the ' || lower(stage) || ' decision' AS objective,
           title, stage, competitor
    FROM closed_deals
    WHERE stage IN ('Closed Won', 'Closed Lost')
"""

ENRICH_SQL = """
    SELECT i.interview_request_id, d.title, d.stage, d.competitor, d.amount, d.notes
    FROM hindsight_interviews AS i
    JOIN closed_deals AS d ON i.request_key = d.deal_id || ':' || d.contact_id
    WHERE i.state = 'created'
"""


@dag(
    dag_id="example_hindsight_create",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"resend_unknown": False},
    tags=["hindsight", "example"],
)
def example_hindsight_create() -> None:
    @task
    def load_closed_deals() -> int:
        """Stands in for the warehouse load: the CRM's deals, with their stage."""
        return load_table(
            "closed_deals",
            "deal_id TEXT, contact_id TEXT, contact_email TEXT, contact_name TEXT, title TEXT, stage TEXT, "
            "competitor TEXT, amount INTEGER, notes TEXT, PRIMARY KEY (deal_id, contact_id)",
            CLOSED_DEALS,
        )

    create = SqlToHindsightCreateInterviewsOperator(
        task_id="create_interviews",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql=CREATE_SQL,
        context_columns=["title", "stage", "competitor"],
        interview_type_id=INTERVIEW_TYPE_ID,
        ledger_conn_id=WAREHOUSE_CONN_ID,  # the interview ledger lives beside the deals
        resend_unknown="{{ params.resend_unknown }}",
    )

    enrich = SqlToHindsightOperator(
        task_id="enrich_created",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql=ENRICH_SQL,
        context_columns=["title", "stage", "competitor", "amount", "notes"],
        ledger_conn_id=WAREHOUSE_CONN_ID,  # change-only sync on the created ids
    )

    load_closed_deals() >> create >> enrich


example_hindsight_create()
