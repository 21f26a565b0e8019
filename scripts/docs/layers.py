"""The package's layers, read from its imports: the rule, the check, and ``docs/_static/layers.png``.

    python scripts/docs/layers.py          # print the layers and every import that breaks them
    python scripts/docs/layers.py --draw   # also draw docs/_static/layers.png (Graphviz's dot, dot_diagram.py)

``LAYERS`` is the architecture as a table, lowest first: a module may import modules of its own unit
(cycles aside) or of a lower layer, never of its own layer's other units nor of a higher one. The
test suite runs ``violations()`` (tests/unit/test_layers.py), so the picture and the rule cannot drift
from the code. Imports under ``if TYPE_CHECKING:`` count too: an annotation is a dependency of the reader.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_hindsight"
OUTPUT = ROOT / "docs" / "_static" / "layers.png"

# (layer title, units): a unit is a subpackage or a top-level module, named from the package root.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("the version and the errors", ("__init__", "exceptions")),
    ("times: parsed and formatted (pure)", ("times",)),
    ("the vendor's resources and pure rules", ("resources", "inputs", "polling", "pace")),
    ("SQL connections: the hook, the fault table, session bounds", ("sql_connection",)),
    ("the rate budget shared by processes", ("budget",)),
    ("transports and stores", ("hooks", "ledgers")),
    ("bulk runs", ("bulk", "lineage")),
    ("operators", ("operators",)),
    ("triggers", ("triggers",)),
    ("sensors and transfers", ("sensors", "transfers")),
    ("registration with Airflow", ("get_provider_info",)),
]
# The emulator is stdlib only and imports nothing of the provider: its own island.
ISLANDS = ("testing",)


def unit_of(module: str) -> str:
    """``airflow_provider_hindsight.hooks.pacing`` -> ``hooks``; the package itself (its version) -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def rank_of(unit: str) -> int | None:
    for rank, (_, units) in enumerate(LAYERS):
        if unit in units:
            return rank
    return None


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        yield ".".join(parts), path


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports: ``from x import name`` counts ``x.name`` where that is a
    module (a submodule taken from its package), else ``x``."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {target})
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def import_edges() -> list[tuple[str, str]]:
    every = dict(modules())
    return sorted((module, target) for module, path in every.items() for target in imports_of(module, path, set(every)))


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a circle (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations() -> list[str]:
    """Every import that points up or sideways, every import cycle, and every unit the table does not place."""
    edges = import_edges()
    problems = [f"import cycle: {' <-> '.join(group)}" for group in cycles(edges)]
    for module, target in edges:
        source_unit, target_unit = unit_of(module), unit_of(target)
        if source_unit == target_unit:
            continue
        if source_unit in ISLANDS or target_unit in ISLANDS:
            problems.append(f"{module} -> {target}: the emulator imports nothing of the provider, nor it the emulator")
            continue
        source_rank, target_rank = rank_of(source_unit), rank_of(target_unit)
        if source_rank is None or target_rank is None:
            unplaced = source_unit if source_rank is None else target_unit
            problems.append(f"{module} -> {target}: {unplaced!r} has no layer in scripts/docs/layers.py")
        elif target_rank >= source_rank:
            where = "its own layer" if target_rank == source_rank else "a higher layer"
            problems.append(f"{module} -> {target}: {source_unit} imports {target_unit}, {where}")
    return problems


def unit_edges() -> set[tuple[str, str]]:
    return {
        (unit_of(module), unit_of(target))
        for module, target in import_edges()
        if unit_of(module) != unit_of(target) and not {unit_of(module), unit_of(target)} & set(ISLANDS)
    }


def dot_source() -> str:
    """Top to bottom, highest layer first: one row per layer, its title on the left; arrows are imports.
    Arrows into the lowest layer (the errors and the version), which nearly every unit imports, are left out."""
    units_present = {unit_of(module) for module, _ in modules()}
    lowest = set(LAYERS[0][1])
    lines = [
        "digraph layers {",
        '  graph [rankdir=TB, nodesep=0.25, ranksep=0.55, fontname="DejaVu Sans", fontsize=12, pad=0.25,',
        '         labelloc=b, label="Every layer also imports the lowest one; arrows into it are left out."];',
        '  node [shape=box, style="rounded,filled", fillcolor="#e8f0f8", color="#2f6f9f", fontname="DejaVu Sans"];',
        '  edge [color="#7b8794", arrowsize=0.6];',
    ]
    titles = []
    for rank, (title, units) in reversed(list(enumerate(LAYERS))):
        present = [unit for unit in units if unit in units_present]
        titles.append(f"layer{rank}")
        members = " ".join(f'"{unit}";' for unit in present)
        lines.append(f'  layer{rank} [shape=plaintext, style="", fontcolor="#3e4c59", label="{title}"];')
        lines.append(f"  {{rank=same; layer{rank}; {members}}}")
    lines.append(f"  {' -> '.join(titles)} [style=invis];")
    lines.extend(f'  "{source}" -> "{target}";' for source, target in sorted(unit_edges()) if target not in lowest)
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draw", action="store_true", help=f"draw {OUTPUT.relative_to(ROOT)} with Graphviz")
    args = parser.parse_args()
    for title, units in reversed(LAYERS):
        print(f"{title:>40}: {', '.join(units)}")
    problems = violations()
    print(*(problems or ["every import points down"]), sep="\n")
    if problems:
        return 1
    if args.draw:
        from dot_diagram import draw  # beside this script: run it as python scripts/docs/layers.py

        return draw(dot_source(), OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
