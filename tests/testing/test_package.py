"""The emulator's package: the import paths users rely on, and its independence from the provider."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import airflow_provider_hindsight.testing.emulator as emulator_package
from airflow_provider_hindsight.testing import HindsightEmulator, RecordedRequest
from airflow_provider_hindsight.testing import emulator as emulator_module

PACKAGE_DIR = Path(emulator_package.__file__).parent
OWN_PREFIX = "airflow_provider_hindsight.testing.emulator"


def test_public_names_keep_their_import_paths() -> None:
    assert emulator_module.HindsightEmulator is HindsightEmulator
    assert emulator_module.RecordedRequest is RecordedRequest
    assert emulator_module.FIELDS == ("contact_context", "contact_name", "objective")
    assert emulator_module.API_PREFIX == "/api/v1"
    assert emulator_module.STATUSES == ("created", "sent", "completed")


def test_the_emulator_imports_only_the_standard_library_and_itself() -> None:
    """It is an independent model of the API: nothing of the hook, and nothing outside the stdlib."""
    foreign = []
    for module in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name == "__future__" or name.split(".")[0] in sys.stdlib_module_names:
                    continue
                if name == OWN_PREFIX or name.startswith(OWN_PREFIX + "."):
                    continue
                foreign.append(f"{module.name}: {name}")

    assert foreign == []
