"""Draw ``docs/_static/create-states.png``: the states of one ``request_key`` in the interview ledger.

    python scripts/docs/create_states.py

Needs Graphviz's ``dot`` (Debian: ``apt-get install graphviz``). The diagram is written here in the DOT
language, so that it changes in review like code, and drawn the way ``row_path.py`` draws its picture.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "create-states.png"

STATE = 'shape=box, style="rounded,filled", fillcolor="#e8f0f8", color="#2f6f9f"'
DONE = 'shape=box, style="rounded,filled,bold", fillcolor="#e3f1e0", color="#3c7a32"'
DANGER = 'shape=box, style="rounded,filled,bold", fillcolor="#fdecea", color="#b03a2e"'
START = 'shape=box, style="rounded,dashed", color="#7b8794", fontcolor="#3e4c59"'

NODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
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


def label(title: str, lines: tuple[str, ...]) -> str:
    """An HTML-like Graphviz label: a bold title and smaller lines under it."""
    body = "".join(f'<BR/><FONT POINT-SIZE="12">{line}</FONT>' for line in lines)
    return f"<<B>{title}</B>{body}>"


def diagram() -> str:
    nodes = "\n".join(
        f"  {name} [{style}, label={label(title, lines)}];" for name, (style, title, lines) in NODES.items()
    )
    return (
        "digraph create_states {\n"
        '  graph [rankdir=TB, fontname="DejaVu Sans", nodesep=0.5, ranksep=0.6, pad=0.25, bgcolor=white];\n'
        '  node [fontname="DejaVu Sans", fontsize=14, margin="0.15,0.07"];\n'
        '  edge [fontname="DejaVu Sans", fontsize=11, color="#52606d", arrowsize=0.8];\n'
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
