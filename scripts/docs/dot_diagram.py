"""What the docs' Graphviz diagrams share: node styles, labels, the DOT document, and drawing it with ``dot``.

The diagrams (``create_states.py``, ``row_path.py``, ``lifecycle.py``) are written in the DOT
language so that they change in review like code; each names its nodes and edges, this module does
the rest. Needs Graphviz's ``dot`` (Debian: ``apt-get install graphviz``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

STEP = 'shape=box, style="rounded,filled", fillcolor="#e8f0f8", color="#2f6f9f"'
STORE = 'shape=cylinder, style=filled, fillcolor="#fdf3e1", color="#b7791f"'
EXTERNAL = 'shape=box, style="filled,bold", fillcolor="#2f6f9f", fontcolor="white", color="#1f4f73"'
ASIDE = 'shape=box, style="rounded,dashed", color="#7b8794", fontcolor="#3e4c59"'
"""A node off the main path: an outcome, or a state before the first."""

Node = tuple[str, str, tuple[str, ...]]
"""(style, bold title, smaller lines under the title)."""


def label(title: str, lines: tuple[str, ...], line_size: int) -> str:
    """An HTML-like Graphviz label: a bold title and smaller lines under it."""
    body = "".join(f'<BR/><FONT POINT-SIZE="{line_size}">{line}</FONT>' for line in lines)
    return f"<<B>{title}</B>{body}>"


def document(
    name: str,
    nodes: dict[str, Node],
    edges: str,
    *,
    spacing: tuple[float, float],
    font_sizes: tuple[int, int, int] = (14, 12, 11),
) -> str:
    """The DOT source: top to bottom, ``spacing`` as (nodesep, ranksep), ``font_sizes`` as (title, line, edge)."""
    title_size, line_size, edge_size = font_sizes
    declared = "\n".join(
        f"  {node} [{style}, label={label(title, lines, line_size)}];" for node, (style, title, lines) in nodes.items()
    )
    return (
        f"digraph {name} {{\n"
        f'  graph [rankdir=TB, fontname="DejaVu Sans", nodesep={spacing[0]}, ranksep={spacing[1]}, pad=0.25, '
        "bgcolor=white];\n"
        f'  node [fontname="DejaVu Sans", fontsize={title_size}, margin="0.15,0.07"];\n'
        f'  edge [fontname="DejaVu Sans", fontsize={edge_size}, color="#52606d", arrowsize=0.8];\n'
        f"{declared}\n{edges}}}\n"
    )


def draw(source: str, output: Path) -> int:
    """Render ``source`` to the PNG ``output``; 0 when written, 1 (with a message) when ``dot`` is missing."""
    dot = shutil.which("dot")
    if dot is None:
        print("Graphviz's dot is missing: apt-get install graphviz (or brew install graphviz)", file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([dot, "-Tpng", "-Gdpi=96", "-o", str(output)], input=source, text=True, check=True)
    print(f"wrote {output}")
    return 0
