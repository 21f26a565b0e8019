"""Draw ``docs/_static/lifecycle.png`` and write ``docs/_generated/polling-cost.md``.

    python scripts/docs/lifecycle.py

The picture (Graphviz's ``dot``; Debian: ``apt-get install graphviz``) is the interview lifecycle:
create, enrich, wait, land. The table is what polling costs against each plan's limit, computed from
the provider's own plan limits and its polling plan (with the sensor's default ``poke_interval`` as
the shortest interval). Both are written here so that they change in review like code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dot_diagram import EXTERNAL, STEP, STORE, Node, document, draw

from airflow_provider_hindsight.hooks.connection_form import PLAN_REQUESTS_PER_MINUTE
from airflow_provider_hindsight.pace import SAFETY_MARGIN
from airflow_provider_hindsight.polling import PollingPlan

DOCS = Path(__file__).resolve().parents[2] / "docs"
PICTURE = DOCS / "_static" / "lifecycle.png"
TABLE = DOCS / "_generated" / "polling-cost.md"

PENDING = (500, 5_000, 20_000)
AGES = ((3_600, "1 hour"), (2 * 86_400, "2 days"), (10 * 86_400, "10 days or more"))
POKE_INTERVAL = 300

STATUS = 'shape=ellipse, style=filled, fillcolor="#f3f7e9", color="#5b7f2a"'

NODES: dict[str, Node] = {
    "deals": (STORE, "Warehouse", ("closed deals", "(your load: dbt, Fivetran, ...)")),
    "create": (STEP, "1. Create", ("HindsightCreateInterviewsOperator", "POST /interviews, once per key")),
    "ledger": (STORE, "hindsight_interviews", ("the interview ledger:", "request_key, state, id")),
    "enrich": (STEP, "2. Enrich", ("SqlToHindsightOperator", "PATCH /interviews/{id}")),
    "wait": (STEP, "3. Wait", ("HindsightInterviewSensor", "deferred: no worker slot")),
    "trigger": (
        STEP,
        "Triggerer",
        ("HindsightInterviewTrigger", "GET each id once per poke_interval,", "one pace per connection"),
    ),
    "land": (
        STEP,
        "4. Land",
        ("HindsightInterviewsToSqlOperator", "GET the ids not yet completed,", "upsert per batch"),
    ),
    "transcripts": (STORE, "hindsight_transcripts", ("status, dates, transcript;", "completed rows never refetched")),
    "api": (EXTERNAL, "Hindsight API", ("one limit a minute for", "POST, PATCH and GET")),
    "created": (STATUS, "created", ()),
    "sent": (STATUS, "sent", ("e-mailed",)),
    "completed": (STATUS, "completed", ("transcript",)),
}

EDGES = """
  deals -> create;
  create -> ledger [style=dashed, color="#b7791f", label=" claims, records"];
  create -> enrich;
  enrich -> wait;
  wait -> trigger [style=dashed, label=" defers"];
  trigger -> wait [style=dashed, label=" one event:\\l ids and statuses\\l"];
  wait -> land;
  ledger -> land [style=dashed, color="#b7791f", label=" 'created' ids"];
  land -> transcripts [color="#b7791f", label=" upserts"];
  create -> api; enrich -> api; trigger -> api; land -> api;
  created -> sent [label=" Hindsight e-mails"];
  sent -> completed [label=" the contact answers"];
  {rank=same; create; ledger}
  {rank=same; wait; trigger}
  {rank=same; land; transcripts}
  {rank=same; created; sent; completed}
"""


def diagram() -> str:
    return document("lifecycle", NODES, EDGES, spacing=(0.4, 0.4), font_sizes=(13, 11, 11))


def polling_cost() -> str:
    """Requests a minute that waiting costs on the polling plan, against polling every id every 300 s."""
    plan = PollingPlan(min_poll_interval=POKE_INTERVAL)
    plans = list(PLAN_REQUESTS_PER_MINUTE.items())
    head = (
        "| Pending interviews | Their age | Interval on the plan | Requests a minute | "
        + " | ".join(f"Share of {name.capitalize()} ({limit:,}/min)" for name, limit in plans)
        + f" | Requests a minute polling every {POKE_INTERVAL} s |"
    )
    lines = [head, "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in plans) + " | ---: |"]
    for pending in PENDING:
        for age, age_text in AGES:
            interval = plan.interval(age)
            rate = pending * 60 / interval
            shares = " | ".join(share(rate, limit) for _, limit in plans)
            flat = pending * 60 / POKE_INTERVAL
            lines.append(f"| {pending:,} | {age_text} | {duration(interval)} | {rate:,.1f} | {shares} | {flat:,.0f} |")
    return "\n".join(lines) + "\n"


def share(rate: float, limit: int) -> str:
    """``rate`` as a share of the pace at ``limit``; **over** past it."""
    fraction = rate / (limit * SAFETY_MARGIN)
    return "**over**" if fraction > 1 else f"{fraction:.0%}" if fraction >= 0.01 else "< 1%"


def duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def main() -> int:
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(polling_cost())
    print(f"wrote {TABLE}")
    return draw(diagram(), PICTURE)


if __name__ == "__main__":
    sys.exit(main())
