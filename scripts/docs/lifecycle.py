"""Draw ``docs/_static/lifecycle.png`` and write ``docs/_generated/polling-cost.md``.

    python scripts/docs/lifecycle.py

The picture (Graphviz's ``dot``; Debian: ``apt-get install graphviz``) is the interview lifecycle:
create, enrich, wait, land. The table is what polling costs against each plan's limit, computed from
the provider's own plan limits and its polling plan (with the sensor's default ``poke_interval`` as
the shortest interval). Both are written here so that they change in review like code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from airflow_provider_hindsight.hooks.connection_form import PLAN_REQUESTS_PER_MINUTE
from airflow_provider_hindsight.hooks.pacing import SAFETY_MARGIN
from airflow_provider_hindsight.polling import PollingPlan

DOCS = Path(__file__).resolve().parents[2] / "docs"
PICTURE = DOCS / "_static" / "lifecycle.png"
TABLE = DOCS / "_generated" / "polling-cost.md"

PENDING = (500, 5_000, 20_000)
AGES = ((3_600, "1 hour"), (2 * 86_400, "2 days"), (10 * 86_400, "10 days or more"))
POKE_INTERVAL = 300

STEP = 'shape=box, style="rounded,filled", fillcolor="#e8f0f8", color="#2f6f9f"'
STORE = 'shape=cylinder, style=filled, fillcolor="#fdf3e1", color="#b7791f"'
EXTERNAL = 'shape=box, style="filled,bold", fillcolor="#2f6f9f", fontcolor="white", color="#1f4f73"'
STATUS = 'shape=ellipse, style=filled, fillcolor="#f3f7e9", color="#5b7f2a"'

NODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
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


def label(title: str, lines: tuple[str, ...]) -> str:
    body = "".join(f'<BR/><FONT POINT-SIZE="11">{line}</FONT>' for line in lines)
    return f"<<B>{title}</B>{body}>"


def diagram() -> str:
    nodes = "\n".join(f"  {name} [{style}, label={label(t, lines)}];" for name, (style, t, lines) in NODES.items())
    return (
        "digraph lifecycle {\n"
        '  graph [rankdir=TB, fontname="DejaVu Sans", nodesep=0.4, ranksep=0.4, pad=0.25, bgcolor=white];\n'
        '  node [fontname="DejaVu Sans", fontsize=13, margin="0.15,0.07"];\n'
        '  edge [fontname="DejaVu Sans", fontsize=11, color="#52606d", arrowsize=0.8];\n'
        f"{nodes}\n{EDGES}}}\n"
    )


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
    dot = shutil.which("dot")
    if dot is None:
        print("Graphviz's dot is missing: apt-get install graphviz (or brew install graphviz)", file=sys.stderr)
        return 1
    subprocess.run([dot, "-Tpng", "-Gdpi=96", "-o", str(PICTURE)], input=diagram(), text=True, check=True)
    print(f"wrote {PICTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
