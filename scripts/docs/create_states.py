"""Draw ``docs/_static/create-states.png``: the states of one ``request_key`` in the interview ledger.

    python scripts/docs/create_states.py

Needs Graphviz's ``dot`` (Debian: ``apt-get install graphviz``); drawn with ``dot_diagram.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dot_diagram import ASIDE, STEP, Node, document, draw

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "create-states.png"

STATE = STEP
DONE = 'shape=box, style="rounded,filled,bold", fillcolor="#e3f1e0", color="#3c7a32"'
DANGER = 'shape=box, style="rounded,filled,bold", fillcolor="#fdecea", color="#b03a2e"'
START = ASIDE

NODES: dict[str, Node] = {
    "absent": (START, "no row", ("a key never sent,", "or a claim given back")),
    "pending": (STATE, "pending", ("the claim: INSERTed and", "committed before the POST")),
    "created": (DONE, "created", ("201: id, contact, survey link;", "counted existing, never sent again")),
    "rejected": (STATE, "rejected", ("a 4xx (not 429): nothing was", "created; sent again next run")),
    "unknown": (DANGER, "unknown", ("it may have been created:", "never sent again, named in", "every run's log")),
}

EDGES = """
  absent -> pending [label="  claim (an INSERT that loses\\l  quietly to an existing key)\\l"];
  pending -> created [label="  201, recorded at once  ", penwidth=1.6];
  pending -> rejected [label="  400, 401, 403, 404, ...  "];
  pending -> unknown [label="  read timeout, dropped connection,\\l  5xx, an answer that is not JSON;\\l"
                     + "  the killed task's retry, at once;\\l"
                     + "  other runs, past pending_timeout\\l"];
  pending -> absent [style=dashed, label="  429 or refused connection after the\\l"
                     + "  retries, run stopped: the claim is deleted\\l"];
  rejected -> pending [label="  next run: claim\\l  (UPDATE ... WHERE state = 'rejected')\\l"];
  unknown -> pending [style=dashed, label="  resend_unknown=True\\l  (you checked it was not created)\\l"];
  unknown -> created [style=dotted, label="  you record it by hand\\l  (it was created after all)\\l"];
  {rank=same; rejected; created; unknown}
"""


def diagram() -> str:
    return document("create_states", NODES, EDGES, spacing=(0.5, 0.6))


def main() -> int:
    return draw(diagram(), OUTPUT)


if __name__ == "__main__":
    sys.exit(main())
