"""Imports point one way (the contract's architecture): the hooks know no bulk run, and the bulk package
has no import circle. Read from the source, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "airflow_provider_hindsight"


def imported_modules(path: Path) -> set[str]:
    """Every ``airflow_provider_hindsight`` module ``path`` imports, anywhere in the file."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return {module for module in modules if module.startswith("airflow_provider_hindsight")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "hooks").glob("*.py")), ids=lambda path: path.name)
def test_the_hooks_import_no_bulk_run_operator_or_ledger(path: Path) -> None:
    above = ("bulk", "ledgers", "operators", "transfers", "sensors", "triggers")
    wrong = {module for module in imported_modules(path) if module.split(".")[1:2] and module.split(".")[1] in above}
    assert wrong == set()


def test_the_bulk_package_has_no_import_circle() -> None:
    graph = {
        f"airflow_provider_hindsight.bulk.{path.stem}": {
            module for module in imported_modules(path) if module.startswith("airflow_provider_hindsight.bulk.")
        }
        for path in (PACKAGE / "bulk").glob("*.py")
    }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in graph.get(start, ()):
            if module == target or (module not in seen and reaches(module, target, seen | {module})):
                return True
        return False

    circles = sorted(module for module in graph if reaches(module, module, set()))
    assert circles == []
