"""Draw ``docs/_static/row-path.png``: the path of one row through a bulk run, from the SQL cursor to the summary.

    python scripts/docs/row_path.py

Needs Graphviz's ``dot`` (Debian: ``apt-get install graphviz``). The diagram is written here in the DOT
language, so that it changes in review like code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "row-path.png"

STEP = 'shape=box, style="rounded,filled", fillcolor="#e8f0f8", color="#2f6f9f"'
STORE = 'shape=cylinder, style=filled, fillcolor="#fdf3e1", color="#b7791f"'
OUTCOME = 'shape=box, style="rounded,dashed", color="#7b8794", fontcolor="#3e4c59"'
EXTERNAL = 'shape=box, style="filled,bold", fillcolor="#2f6f9f", fontcolor="white", color="#1f4f73"'
OPTIONAL = 'style="rounded,filled,dashed", fillcolor="#f3f7e9", color="#5b7f2a"'


NODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
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


def label(title: str, lines: tuple[str, ...]) -> str:
    """An HTML-like Graphviz label: a bold title and smaller lines under it."""
    body = "".join(f'<BR/><FONT POINT-SIZE="12">{line}</FONT>' for line in lines)
    return f"<<B>{title}</B>{body}>"


def diagram() -> str:
    nodes = "\n".join(
        f"  {name} [{style}, label={label(title, lines)}];" for name, (style, title, lines) in NODES.items()
    )
    return (
        "digraph row_path {\n"
        '  graph [rankdir=TB, fontname="DejaVu Sans", nodesep=0.35, ranksep=0.38, pad=0.25, bgcolor=white];\n'
        '  node [fontname="DejaVu Sans", fontsize=14, margin="0.15,0.07"];\n'
        '  edge [fontname="DejaVu Sans", fontsize=12, color="#52606d", arrowsize=0.8];\n'
        f"{nodes}\n{EDGES}}}\n"
    )


def main() -> int:
    dot = shutil.which("dot")
    if dot is None:
        print("Graphviz's dot is missing: apt-get install graphviz (or brew install graphviz)", file=sys.stderr)
        return 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([dot, "-Tpng", "-Gdpi=96", "-o", str(OUTPUT)], input=diagram(), text=True, check=True)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
