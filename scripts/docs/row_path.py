"""Draw ``docs/_static/row-path.png``: the path of one row through a bulk run, from the SQL cursor to the summary.

    python scripts/docs/row_path.py

Needs Graphviz's ``dot`` (Debian: ``apt-get install graphviz``); drawn with ``dot_diagram.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dot_diagram import ASIDE, EXTERNAL, STEP, STORE, Node, document, draw

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "row-path.png"

OUTCOME = ASIDE
OPTIONAL = 'style="rounded,filled,dashed", fillcolor="#f3f7e9", color="#5b7f2a"'


NODES: dict[str, Node] = {
    # name: (style, title, smaller lines under the title)
    "warehouse": (STORE, "SQL query", ("SqlToHindsightOperator", "sql_conn_id: any DbApiHook")),
    "updates": (STEP, "updates", ("HindsightBulkUpdate-", "InterviewsOperator: a list", "or an XComArg")),
    "cursor": (STEP, "Cursor batches", ("server-side cursor,", "else fetchmany(batch_size)")),
    "validate": (STEP, "Validation", ("id, fields, types, size,", "duplicate ids")),
    "invalid": (OUTCOME, "failed", ("not sent: invalid_input,", "duplicate_id")),
    "lookup": (
        f"{STEP} {OPTIONAL}",
        "Ledger look-up",
        ("with ledger_conn_id: one query", "per batch; skips a row whose", "body was accepted before"),
    ),
    "unchanged": (OUTCOME, "unchanged", ("not sent",)),
    "ledger": (STORE, "Ledger table", ("sync_id,", "interview_request_id,", "body_sha256, synced_at")),
    "workers": (
        STEP,
        "Paced workers",
        ("max_workers threads, one pacer:", "starts evenly spaced at 0.97", "of the limit; a 429 pauses all"),
    ),
    "api": (EXTERNAL, "Hindsight API", ("PATCH /interviews/{id}",)),
    "results": (STEP, "Results", ("one per row: succeeded,", "or failed with a code")),
    "checkpoint": (
        f"{STEP} {OPTIONAL}",
        "Checkpoint write",
        ("with ledger_conn_id: rows", "answered 2xx, every 200 rows", "or 5 s, at the end, on kill"),
    ),
    "summary": (
        STEP,
        "Summary",
        ("XCom return_value and key", "summary: total, succeeded,", "failed, unchanged, failures"),
    ),
    "log": (STEP, "Task log", ("progress lines, one", "WARNING per failed row")),
}

EDGES = """
  warehouse -> cursor;
  updates -> validate;
  cursor -> validate;
  validate -> lookup [label="  valid rows"];
  validate -> invalid [style=dashed];
  lookup -> workers [label="  new or changed rows"];
  lookup -> unchanged [style=dashed];
  ledger -> lookup [style=dashed, color="#b7791f", label="reads  "];
  workers -> api [penwidth=1.6];
  api -> workers [style=dashed, label="  429, 5xx, network:\\l  retry after Retry-After\\l  or a backoff\\l"];
  api -> results [label="  2xx, or the last error"];
  results -> checkpoint;
  checkpoint -> ledger [style=dashed, color="#b7791f", label=" writes"];
  results -> summary;
  results -> log;
  invalid -> results [style=dotted, arrowhead=none];
  unchanged -> results [style=dotted, arrowhead=none];
  {rank=same; warehouse; updates}
  {rank=same; validate; invalid}
  {rank=same; lookup; unchanged}
  {rank=same; workers; ledger}
  {rank=same; results; checkpoint}
  {rank=same; summary; log}
"""


def diagram() -> str:
    return document("row_path", NODES, EDGES, spacing=(0.35, 0.38), font_sizes=(14, 12, 12))


def main() -> int:
    return draw(diagram(), OUTPUT)


if __name__ == "__main__":
    sys.exit(main())
